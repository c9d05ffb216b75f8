"""What opening a store costs, and what checking every weights file's CRC-32 on open would cost.

    python benchmarks/store_open.py STORE [STORE ...]

Per store: ``Store.open`` (arrays' headers, shapes and row checksums; weights files' presence and
size only: the CRC-32 of a weights file is checked when it is loaded or selected, and by
``modeldiff verify`` and training) beside reading every weights file and computing its CRC-32 (what
an eager check on each open would add). Drops the page cache first where allowed (root), so the
reads come from disk.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodels.store.store import Store  # noqa: E402


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main(argv=None) -> int:
    stores = (argv if argv is not None else sys.argv[1:]) or sys.exit(__doc__)
    for path in stores:
        cold = drop_caches()
        t = time.perf_counter()
        Store.open(path)
        t_open = time.perf_counter() - t
        files = sorted(Path(path, "weights").glob("*.pt"))
        size = sum(f.stat().st_size for f in files)
        drop_caches()
        t = time.perf_counter()
        for f in files:
            zlib.crc32(f.read_bytes())
        t_crc = time.perf_counter() - t
        print(f"{path}: {len(files)} weights files, {size / 2**20:.1f} MiB; Store.open {t_open:.3f} s; "
              f"CRC-32 of every weights file {t_crc:.3f} s ({size / 2**20 / max(t_crc, 1e-9):.0f} MiB/s"
              f"{', cold cache' if cold else ', page cache not dropped'})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
