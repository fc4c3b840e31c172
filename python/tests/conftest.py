"""Helpers shared by the tests: FIFOs in a private directory, peer
processes that are always reaped, and reads with a deadline.

Every test also has pytest-timeout's watchdog (pyproject.toml): a bug
fails the test instead of hanging the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Iterator, List

import pytest

import ringpipe

# Peer processes must import the very ringpipe this process imported (the
# installed one, or an in-tree build), before any source tree on the path.
ENV = dict(os.environ)
ENV["PYTHONPATH"] = os.pathsep.join(
    [os.path.dirname(os.path.dirname(os.path.abspath(ringpipe.__file__)))]
    + [p for p in sys.path if p]
)


@pytest.fixture(autouse=True)
def _neutral_cwd(tmp_path, monkeypatch):
    """Peers run `python -c`, which puts the working directory first on
    their path: a source checkout there would shadow the installed
    package."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "test.fifo"
    os.mkfifo(path)
    return str(path)


class Peer:
    """A Python peer process running `code`, line-driven over stdin/stdout."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )

    def close_stdin(self) -> None:
        """EOF on the peer's stdin."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
            self.proc.stdin = None

    def send(self, line: str = "") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, want: str, timeout: float = 30.0) -> str:
        """Reads the peer's next stdout line, which must start with `want`."""
        assert self.proc.stdout is not None
        line = _readline(self.proc, timeout)
        assert line.startswith(want), f"wanted {want!r}, got {line!r}; stderr: {self.stderr()}"
        return line

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"peer still running after {timeout}s; stderr: {self.stderr()}")

    def finish(self, timeout: float = 30.0) -> tuple:
        """Waits for the peer's exit, reading its output meanwhile (a full
        stdout pipe would stall it): returns (status, stdout, stderr)."""
        if self.proc.stdin is not None and self.proc.stdin.closed:
            self.proc.stdin = None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"peer still running after {timeout}s")
        return self.proc.returncode, out, err

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            raise AssertionError(f"no line from the peer within {timeout}s")
    return proc.stdout.readline().strip()


@pytest.fixture
def peers() -> Iterator[List[Peer]]:
    """Peers started by a test; killed and reaped whatever happens."""
    started: List[Peer] = []
    yield started
    for p in started:
        p.kill()
        for f in (p.proc.stdin, p.proc.stdout, p.proc.stderr):
            if f is not None:
                f.close()


def read_until_eof(fd: int, timeout: float = 30.0) -> bytes:
    """Drains a non-blocking read end until EOF (every writer gone)."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if not chunk:
            return bytes(got)
        got += chunk
    raise AssertionError(f"no EOF within {timeout}s ({len(got)} bytes read)")


def drain_now(fd: int) -> bytes:
    """Whatever a non-blocking read end holds right now."""
    got = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return bytes(got)
        if not chunk:
            return bytes(got)
        got += chunk


def wchan(pid: int) -> str:
    """Where in the kernel a process sleeps ("wait_for_partner", inside
    fifo_open, while blocked in open(2) of a FIFO)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip()
    except OSError:
        return ""


# openat(2) and open(2) by machine, for kernels that hide wchan.
_OPEN_CALLS = {"x86_64": {257, 2}, "aarch64": {56}}


def asleep_in_fifo_open(pid: int) -> bool:
    """Whether the process sleeps in open(2) of a FIFO, waiting for the
    other end: by wchan, or by the system call it sleeps in."""
    where = wchan(pid)
    if "partner" in where or "fifo" in where:
        return True
    import platform

    try:
        with open(f"/proc/{pid}/syscall") as f:
            call = int(f.read().split()[0])
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state == "S" and call in _OPEN_CALLS.get(platform.machine(), set())


def interrupted(code: str, *args: str, ready: str = "ready", before=None) -> str:
    """Runs a Python peer, sends it SIGINT once it prints `ready` (and
    `before()` returns), and returns what it printed after. The peer
    raises KeyboardInterrupt on SIGINT even where this suite was started
    with SIGINT ignored (a background job of a shell without job control):
    Python installs its handler only over the default disposition."""
    import signal

    code = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n" + code
    p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                         text=True, env=ENV)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == ready
        if before is not None:
            before()
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
        return out.strip()
    finally:
        p.kill()
        p.wait()
