"""The logger story: a Python program writes logs to a FIFO whose reader
disconnects and reconnects. How many bytes does the reader get?

With plain file objects, a write while the reader is away raises
``BrokenPipeError`` and the bytes are gone (the text layer drops its
buffer); with ringpipe, every byte reaches the next reader exactly once.
"""

from __future__ import annotations

import os

from conftest import Peer, read_until_eof

TOTAL = 5200
N = 100_000  # far beyond the 4 KiB that Python's buffers happen to keep

NAIVE_WRITER = """
import sys
f = open(sys.argv[1], "w")            # blocks until a reader opens
print("opened", flush=True)
sys.stdin.readline()                  # the reader connects and leaves
try:
    f.write("A" * int(sys.argv[2]))
    f.flush()
    print("written", flush=True)
except BrokenPipeError:
    print("epipe", flush=True)
sys.stdin.readline()                  # the reader is back
try:
    f.close()
except BrokenPipeError:
    pass
print("closed", flush=True)
"""

RINGPIPE_WRITER = """
import sys, ringpipe
w = ringpipe.Writer(sys.argv[1])      # never blocks, reader or not
print("opened", flush=True)
sys.stdin.readline()
w.write(b"A" * int(sys.argv[2]))      # never raises BrokenPipeError
print("written", flush=True)
sys.stdin.readline()
report = w.close(timeout=30)
print("closed", report.written, len(report.unsent), report.delivered, flush=True)
"""


def reconnect_story(fifo: str, code: str, peers) -> tuple[bytes, str]:
    """The blog's sequence: connect, reader leaves, write N, reader back,
    close. Returns what the second reader got and the writer's verdict."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    writer = Peer(code, fifo, str(N))
    peers.append(writer)
    writer.expect("opened")
    os.close(reader)  # 2. the reader disconnects
    writer.send()  # 3. the writer writes N bytes
    verdict = writer.expect("")
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # 4. back
    try:
        writer.send()  # 5. the writer closes
        got = read_until_eof(reader)  # 6. the reader reads until EOF
    finally:
        os.close(reader)
    writer.expect("closed")
    assert writer.wait() == 0, writer.stderr()
    return got, verdict


def test_naive_file_writer_loses_bytes_written_while_the_reader_is_away(fifo, peers):
    got, verdict = reconnect_story(fifo, NAIVE_WRITER, peers)
    assert verdict == "epipe"  # BrokenPipeError, and nothing says how much got through
    assert len(got) < N  # ... because none of it did


def test_ringpipe_writer_delivers_every_byte_once_after_the_reader_returns(fifo, peers):
    got, verdict = reconnect_story(fifo, RINGPIPE_WRITER, peers)
    assert verdict == "written"
    assert got == b"A" * N


LOG_WRITER = """
import logging, sys, ringpipe
handler = HANDLER
logging.raiseExceptions = False       # a production logger stays quiet
log = logging.getLogger("app"); log.addHandler(handler); log.setLevel(logging.INFO)
print("ready", flush=True)
for line in sys.stdin:
    a, b = map(int, line.split())
    for i in range(a, b):
        log.info("record %06d", i)
    print("logged", flush=True)
"""
LOG_WRITER_NAIVE = LOG_WRITER.replace("HANDLER", 'logging.StreamHandler(open(sys.argv[1], "w"))')
LOG_WRITER_RINGPIPE = LOG_WRITER.replace("HANDLER", "ringpipe.FifoHandler(sys.argv[1])")

# Reads exactly K lines, a byte at a time (so it takes nothing more out of
# the pipe), prints them and leaves; K=0: reads to EOF.
LINE_READER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print("open", flush=True)
want, lines, cur = int(sys.argv[2]), [], b""
while want == 0 or len(lines) < want:
    b = os.read(fd, 1 if want else 65536)
    if not b:
        break
    cur += b
    *done, cur = cur.split(b"\\n")
    lines += done
print("\\n".join(l.decode() for l in lines), flush=True)
"""


def logging_story(fifo: str, writer_code: str, peers) -> list[str]:
    """TOTAL records; the first reader reads 50 and leaves after 100 were
    logged; 5000 more (90 KB, more than Python's buffers hold) are logged
    with no reader; a second reader reads to EOF while the last 100 are
    logged and the writer exits."""
    first = Peer(LINE_READER, fifo, "50")
    writer = Peer(writer_code, fifo)
    peers += [first, writer]
    writer.expect("ready")
    first.expect("open")
    writer.send("0 100")
    writer.expect("logged")
    status, out1, err = first.finish()
    assert status == 0, err
    writer.send("100 5100")  # nobody reads these for a while
    writer.expect("logged")
    second = Peer(LINE_READER, fifo, "0")
    peers.append(second)
    second.expect("open")
    writer.send("5100 5200")
    writer.expect("logged")
    writer.close_stdin()  # the writer exits; logging.shutdown closes the handler
    status, _, err = writer.finish()
    assert status == 0, err
    status, out2, err = second.finish()
    assert status == 0, err
    return (out1 + out2).splitlines()


def records(lines: list[str]) -> list[int]:
    return [int(line.split()[-1]) for line in lines if line.startswith("record ")]


def test_naive_logging_handler_loses_records_while_the_reader_is_away(fifo, peers):
    got = records(logging_story(fifo, LOG_WRITER_NAIVE, peers))
    assert len(got) < TOTAL
    assert not set(range(100, 5100)) <= set(got)  # some logged while away are gone


def test_fifo_handler_delivers_every_record_once_in_order(fifo, peers):
    got = records(logging_story(fifo, LOG_WRITER_RINGPIPE, peers))
    assert got == list(range(TOTAL))
