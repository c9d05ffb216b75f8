#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian/Ubuntu machine, then run it.
#   system packages (as root, via apt-get): FFCV's build deps, Chromium for the report test
#   .venv with modeldiff and its dev, ffcv and ray extras
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k store
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends g++ python3-dev pkg-config libopencv-dev libturbojpeg0-dev chromium chromium-driver >/dev/null
else
  echo "note: not root or no apt-get: install pkg-config libopencv-dev libturbojpeg0-dev chromium yourself for the FFCV and browser tests" >&2
fi

# the shared CIFAR-10 copy beside the checkout, when there is one
if [ -z "${MODELDIFF_CIFAR10_DIR:-}" ] && [ -d ../shared/datasets/cifar10-jpeg ]; then
  export MODELDIFF_CIFAR10_DIR="$(cd ../shared/datasets/cifar10-jpeg && pwd)"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev,ffcv,ray]'
# lint first (rules in pyproject.toml [tool.ruff]): a style or pyflakes error fails the run
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
