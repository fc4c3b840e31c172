"""The writer's promises: bounded memory under each policy, flush, an
exact close report, errors as Python exceptions, Ctrl-C, and exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import ringpipe
from conftest import ENV, Peer, drain_now, interrupted, read_until_eof


def test_block_policy_waits_then_refuses_with_would_block(fifo):
    w = ringpipe.Writer(fifo, max_buffer=1000)  # no reader: nothing leaves
    w.write(b"x" * 600)
    with pytest.raises(ringpipe.WouldBlock) as e:
        w.write(b"y" * 600, timeout=0.2)
    assert e.value.data == b"y" * 600 and e.value.queued == 600 and e.value.limit == 1000
    report = w.close(timeout=0)
    assert report.unsent == b"x" * 600 and report.written == 0 and not report.delivered


def test_raise_policy_refuses_at_once(fifo):
    w = ringpipe.Writer(fifo, max_buffer=1000, when_full="raise")
    w.write(b"a" * 1000)
    with pytest.raises(ringpipe.WouldBlock):
        w.write(b"b")
    assert w.close(timeout=0).unsent == b"a" * 1000


def test_drop_oldest_policy_drops_whole_writes_and_counts_them(fifo):
    w = ringpipe.Writer(fifo, max_buffer=100, when_full="drop_oldest", framing="lines")
    for i in range(50):
        w.write(f"{i:09d}")  # 10 bytes a line: 10 fit
    assert w.dropped_writes == 40 and w.dropped_bytes == 400
    report = w.close(timeout=0)
    assert report.unsent == b"".join(f"{i:09d}\n".encode() for i in range(40, 50))
    assert report.dropped_writes == 40 and not report.complete


def test_a_write_larger_than_the_buffer_goes_in_alone(fifo):
    w = ringpipe.Writer(fifo, max_buffer=10)
    w.write(b"z" * 1000)  # the buffer was empty
    assert w.buffered == 1000
    w.close(timeout=0)


def test_close_reports_exactly_what_was_never_written(fifo, peers):
    """A reader takes 1000 bytes and leaves; the rest never reaches it:
    written + unsent is every byte, and unsent is exactly the tail."""
    reader = Peer(
        "import os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "got = b''\n"
        "while len(got) < 1000:\n"
        "    got += os.read(fd, 1000 - len(got))\n"
        "print(len(got), flush=True)\n",
        fifo,
    )
    peers.append(reader)
    data = bytes(range(256)) * 2000  # 512 000 bytes: far more than a pipe holds
    w = ringpipe.Writer(fifo)
    w.write(data)
    reader.expect("1000")
    assert reader.wait() == 0
    assert not w.flush(timeout=0.3)  # the pipe is full and nobody reads
    report = w.close(timeout=0.2)
    assert report.reason == "timeout" and not report.delivered
    assert report.written + len(report.unsent) == len(data)
    assert report.unsent == data[report.written :]
    assert 1000 <= report.written < len(data)


def test_flush_and_delivered_close_with_a_reader(fifo):
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        w = ringpipe.Writer(fifo, framing="length")
        for i in range(1000):
            w.write(i.to_bytes(4, "little") * 4)
        assert w.flush(timeout=30)
        assert w.pending == 0
        got = drain_now(reader)
        report = w.close(timeout=30)
        assert report.delivered and report.complete and report.reason == "flushed"
        got += read_until_eof(reader)
    finally:
        os.close(reader)
    frames, at = [], 0
    while at < len(got):
        n = int.from_bytes(got[at : at + 4], "little")
        frames.append(got[at + 4 : at + 4 + n])
        at += 4 + n
    assert frames == [i.to_bytes(4, "little") * 4 for i in range(1000)]


def test_writes_after_close_raise_closed(fifo):
    w = ringpipe.Writer(fifo)
    first = w.close(timeout=0)
    assert first.complete and first.written == 0  # nothing was written: nothing lost
    with pytest.raises(ringpipe.Closed):
        w.write(b"late")
    assert w.close().reason == first.reason  # closing twice reports again


def test_a_line_with_a_newline_is_a_frame_error(fifo):
    w = ringpipe.Writer(fifo, framing="lines")
    with pytest.raises(ringpipe.FrameError):
        w.write(b"two\nlines")
    with pytest.raises(ValueError):  # FrameError is a ValueError
        w.write(b"a\n")
    w.close(timeout=0)


def test_errors_are_the_oserrors_python_programs_catch(tmp_path):
    missing = tmp_path / "no" / "such.fifo"
    with pytest.raises(FileNotFoundError) as e:
        ringpipe.Writer(str(missing))
    assert isinstance(e.value, ringpipe.NotFound) and isinstance(e.value, ringpipe.Error)
    assert e.value.filename == str(missing) and e.value.errno == 2
    assert "no such directory" in str(e.value)
    regular = tmp_path / "file"
    regular.write_text("not a fifo")
    with pytest.raises(ringpipe.NotAFifo) as e:
        ringpipe.Reader(str(regular))
    assert e.value.filename == str(regular) and "regular file" in str(e.value)
    with pytest.raises(FileNotFoundError):
        ringpipe.Reader(str(tmp_path / "absent"), create=False)
    with pytest.raises(ValueError):
        ringpipe.Writer(str(tmp_path / "x"), when_full="sometimes")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_permission_denied_is_a_permission_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    os.mkfifo(locked / "f")
    os.chmod(tmp_path, 0o755)
    code = (
        "import ringpipe, sys\n"
        "try:\n"
        "    ringpipe.Reader(sys.argv[1])\n"
        "except PermissionError as e:\n"
        "    assert isinstance(e, ringpipe.PermissionDenied), type(e)\n"
        "    print('denied', e.errno, e.filename)\n"
    )
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    probe = subprocess.run(nobody + ["-c", "import ringpipe"], capture_output=True, env=ENV, timeout=60)
    if probe.returncode != 0:
        pytest.skip("this interpreter or package is not readable by an unprivileged user")
    out = subprocess.run(nobody + ["-c", code, str(locked / "f")],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert out.stdout.startswith("denied 13 "), out.stderr


def test_ctrl_c_interrupts_a_blocked_write(fifo):
    """SIGINT reaches a thread waiting in write(): KeyboardInterrupt."""
    code = (
        "import ringpipe, sys\n"
        "ringpipe.EXIT_TIMEOUT = 0\n"
        "w = ringpipe.Writer(sys.argv[1], max_buffer=10)\n"
        "w.write(b'x' * 10)\n"
        "print('blocking', flush=True)\n"
        "try:\n"
        "    w.write(b'y' * 10)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    assert interrupted(code, fifo, ready="blocking") == "interrupted"


def test_exit_with_an_unread_writer_and_a_blocked_reader_thread_does_not_hang(fifo, tmp_path):
    """Interpreter exit: an open writer with no reader is given up after
    EXIT_TIMEOUT, a daemon thread blocked in read() does not hold exit."""
    other = str(tmp_path / "other.fifo")
    code = (
        "import ringpipe, sys, threading\n"
        "ringpipe.EXIT_TIMEOUT = 0.5\n"
        "w = ringpipe.Writer(sys.argv[1])\n"
        "w.write(b'never read')\n"
        "r = ringpipe.Reader(sys.argv[2])\n"
        "threading.Thread(target=r.read, daemon=True).start()\n"
        "print('exiting', flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, fifo, other], capture_output=True,
                         text=True, env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "exiting"
