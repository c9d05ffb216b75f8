"""The tracked files speak about the software and its measurements, never about how the work on it
was organised: no numbered work rounds or tickets, no words about who ran what. Machine conditions
are described by what they were (load average, CPU, other processes)."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".ipynb", ".txt", ".cfg"}
FORBIDDEN = [
    (re.compile(r"\b[Ss]tops? #?\d"), "a numbered work round"),
    (re.compile(r"\b[Ss]top-\d+\s"), "a numbered work round"),
    (re.compile(r"\b[Tt]his stop\b"), "a work round"),
    (re.compile(r"\b[Ii]ssues? #?\d"), "a ticket number"),
    (re.compile(r"\b[Ss]essions?\b"), "a word about how the work was organised"),
    (re.compile(r"\b[Hh]elpers?'s\b|\b[Hh]elpers? (sessions?|runs?|ran|engineers?)\b"
                r"|\b(a|another|other) helpers?\b(?!\s*(function|module|class|script))"), "a word about who ran what"),
    (re.compile(r"\b[Ee]ngineers?\b"), "a word about who ran what"),
    (re.compile(r"\bthe lead\b|\blead's\b"), "a word about who ran what"),
]
THIS = Path(__file__).resolve()


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing tracked to scan")
    return [ROOT / p for p in out.splitlines() if Path(p).suffix in SUFFIXES and (ROOT / p).is_file()]


def offences(text: str) -> list[tuple[int, str, str]]:
    """``(line number, matched text, why)`` for every forbidden phrase in ``text``."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        for pattern, why in FORBIDDEN:
            for m in pattern.finditer(line):
                found.append((n, m.group(0), why))
    return found


def test_the_patterns_catch_what_they_are_for():
    bad = "measured at stop 19 (issue 14) and this stop; a helper's run while another engineer's session was busy"
    found = " | ".join(w for _, w, _ in offences(bad))
    assert all(word in found for word in ("stop 1", "issue 1", "this stop", "helper", "engineer", "session")), found
    good = ("rows start .. stop-1; tests/helpers_train.py; def helper(z): the helper function; "
            "load average 3-5 from 4 other processes")
    assert offences(good) == []


def test_no_tracked_file_talks_about_how_the_work_was_organised():
    files = tracked_files()
    assert any(p.name == "README.md" for p in files)
    problems = []
    for path in files:
        if path == THIS:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        problems += [f"{path.relative_to(ROOT)}:{n}: {word!r} ({why})" for n, word, why in offences(text)]
    assert not problems, "\n".join(problems[:60])
