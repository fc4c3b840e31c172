#!/usr/bin/env bash
# The whole test suite: the Rust tests (cargo test --workspace) on the
# io_uring backend and again on the epoll backend (RINGPIPE_BACKEND=epoll:
# what runs where io_uring is refused; tests of io_uring itself say NOT ON
# EPOLL there), then the Python package built and installed into a fresh virtual environment
# (maturin, pytest and pytest-timeout from the package index; uvloop too
# where it installs) and its pytest suite, against real FIFOs, processes
# and io_uring.
#
#   python/run-tests.sh                 # both
#   python/run-tests.sh --python-only   # the Python part alone
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ "${1:-}" != "--python-only" ]; then
    cargo test --workspace
    RINGPIPE_BACKEND=epoll cargo test --workspace
fi

python="${PYTHON:-python3}"
venv="$root/target/python-venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# As if activated: the build backend runs the venv's maturin by name.
export PATH="$venv/bin:$PATH"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "maturin>=1.9.4,<2" pytest pytest-timeout
# uvloop runs the asyncio tests a second time; optional.
"$venv/bin/python" -m pip install --quiet uvloop 2>/dev/null || echo "uvloop not installed: asyncio tests run on asyncio's loop only"
# The package as a user installs it, built against this checkout.
"$venv/bin/python" -m pip install --quiet --no-build-isolation --force-reinstall --no-deps ./python
# From python/ with the pytest script (not `python -m`), so `import
# ringpipe` finds the installed package, not the source tree.
cd "$root/python"
"$venv/bin/pytest" -q tests
