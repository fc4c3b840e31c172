"""The asyncio story: FIFOs used through asyncio's pipe transports fail
in the ways users report: a reader's transport dies at the first EOF, a
writer's bytes vanish once its reader left (``ConnectionResetError``,
then silence), writes after close are dropped without a word, and a stream
touched from another loop raises ``RuntimeError``. ringpipe's streams
keep going across peers and raise a ``ringpipe`` exception at the call.

ringpipe's tests run under asyncio's default loop and, when installed,
uvloop; the naive versions under asyncio's loop, whose transports they show.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys

import pytest

import ringpipe
from conftest import ENV, read_until_eof

LOOPS = ["asyncio"]
try:
    import uvloop  # noqa: F401

    LOOPS.append("uvloop")
except ImportError:
    pass


@pytest.fixture(params=LOOPS)
def run(request):
    """Runs a coroutine to completion on a fresh loop of the given kind."""

    def runner(coro):
        if request.param == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, 60))
        finally:
            loop.close()

    return runner


@pytest.fixture
def naive_run():
    """asyncio's own loop: the naive versions show asyncio's transports."""
    return lambda coro: asyncio.run(asyncio.wait_for(coro, 60))


def write_and_leave(path: str, data: bytes, flags: int = 0) -> str:
    """A peer process: opens the FIFO for writing, writes, exits; returns
    "ok", or the error of its open."""
    code = (
        "import os, sys\n"
        "try:\n"
        "    fd = os.open(sys.argv[1], os.O_WRONLY | int(sys.argv[3]))\n"
        "except OSError as e:\n"
        "    sys.exit(print(e.strerror))\n"
        "os.write(fd, sys.argv[2].encode())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, path, data.decode(), str(flags)],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


async def naive_reader(path: str):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def naive_writer(path: str) -> asyncio.StreamWriter:
    """asyncio's own pipe writer on a FIFO that has a reader."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, open(path, "wb", buffering=0)
    )
    return asyncio.StreamWriter(transport, protocol, None, loop)


def test_naive_read_pipe_dies_at_the_first_writers_eof(fifo, naive_run):
    async def main():
        reader, transport = await naive_reader(fifo)
        await asyncio.get_running_loop().run_in_executor(None, write_and_leave, fifo, b"first\n")
        assert await reader.readline() == b"first\n"
        assert await reader.read() == b""  # EOF: the transport closes its end
        while not transport.get_extra_info("pipe").closed:
            await asyncio.sleep(0.01)
        # A second writer finds no reader (a blocking one would wait forever).
        return await asyncio.get_running_loop().run_in_executor(
            None, write_and_leave, fifo, b"second\n", os.O_NONBLOCK
        )

    assert naive_run(main()) == "No such device or address"  # ENXIO


def test_ringpipe_reader_reads_writer_after_writer(fifo, run):
    async def main():
        reader = await ringpipe.open_reader(fifo)
        loop = asyncio.get_running_loop()
        got = []
        for i in range(3):
            await loop.run_in_executor(None, write_and_leave, fifo, b"writer %d\n" % i)
            got.append(await reader.readline())
            while reader.state != "peer_gone":  # it saw this writer leave
                await asyncio.sleep(0.005)
        await reader.aclose()
        return got, reader.reconnects

    got, reconnects = run(main())
    assert got == [b"writer 0\n", b"writer 1\n", b"writer 2\n"] and reconnects == 2


N = 200_000


def test_naive_write_pipe_loses_what_it_wrote_while_the_reader_was_away(fifo, naive_run):
    async def main():
        first = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        writer = await naive_writer(fifo)
        os.close(first)  # the reader leaves
        writer.write(b"A" * N)
        with pytest.raises(ConnectionResetError):
            await writer.drain()
        second = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # back
        writer.write(b"B" * 10)  # silently dropped: the transport is gone
        writer.close()
        try:
            return read_until_eof(second)
        finally:
            os.close(second)

    assert len(naive_run(main())) < N


def test_ringpipe_writer_keeps_every_byte_until_the_reader_is_back(fifo, run):
    async def main():
        first = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        writer = await ringpipe.open_writer(fifo)
        os.close(first)  # the reader leaves
        writer.write(b"A" * N)  # no BrokenPipeError, ever
        await writer.drain()
        second = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        writer.write(b"B" * 10)
        loop = asyncio.get_running_loop()
        try:
            drained = loop.run_in_executor(None, read_until_eof, second)
            report = await writer.aclose(timeout=30)
            return await drained, report
        finally:
            os.close(second)

    got, report = run(main())
    assert got == b"A" * N + b"B" * 10
    assert report.delivered and report.complete


def test_naive_write_after_close_is_dropped_without_a_word(fifo, naive_run):
    async def main():
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        writer = await naive_writer(fifo)
        writer.close()
        writer.write(b"after close")  # no exception...
        await asyncio.sleep(0.05)
        try:
            return read_until_eof(reader)
        finally:
            os.close(reader)

    assert naive_run(main()) == b""  # ... and nothing written


def test_ringpipe_write_after_close_raises_closed(fifo, run):
    async def main():
        writer = await ringpipe.open_writer(fifo)
        await writer.aclose(timeout=0)
        with pytest.raises(ringpipe.Closed):
            writer.write(b"after close")
        reader = await ringpipe.open_reader(fifo)
        await reader.aclose()
        with pytest.raises(ringpipe.Closed):
            await reader.read()

    run(main())


def test_naive_stream_from_a_finished_loop_raises_runtime_error(fifo):
    reader, _ = asyncio.run(naive_reader(fifo))
    with pytest.raises(RuntimeError):
        asyncio.run(reader.read())


def test_ringpipe_stream_from_a_finished_loop_raises_closed(fifo):
    async def make():
        return await ringpipe.open_reader(fifo), await ringpipe.open_writer(fifo)

    reader, writer = asyncio.run(make())
    with pytest.raises(ringpipe.Closed):
        asyncio.run(reader.read())
    with pytest.raises(ringpipe.Closed):
        asyncio.run(writer.drain())
    with pytest.raises(ringpipe.Closed):
        writer.write(b"late")


def test_streams_left_open_when_the_loop_closes_are_quiet_at_collection(fifo):
    """No RuntimeError and no 'Exception ignored' from __del__ after the
    loop is gone, even with -W error."""
    code = (
        "import asyncio, gc, sys, ringpipe\n"
        "async def main():\n"
        "    r = await ringpipe.open_reader(sys.argv[1])\n"
        "    w = await ringpipe.open_writer(sys.argv[1])\n"
        "    w.write(b'pending')\n"
        "    return r, w\n"
        "r, w = asyncio.run(main())\n"
        "del r, w\n"
        "gc.collect()\n"
        "print('ok', flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-W", "error", "-X", "dev", "-c", code, fifo],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
    assert "Exception ignored" not in out.stderr and "Error" not in out.stderr, out.stderr


def test_ten_megabytes_in_one_write_arrive_whole(fifo, run):
    """The pipe holds 64 KiB; a 10 MB message flows through it."""
    data = os.urandom(10 << 20)

    async def main():
        reader = await ringpipe.open_reader(fifo, persistent=False)
        writer = await ringpipe.open_writer(fifo)
        writer.write(data)
        got = bytearray()
        while len(got) < len(data):
            got += await reader.read()
        report = await writer.aclose(timeout=30)
        return bytes(got), report

    got, report = run(main())
    assert got == data and report.complete


def test_frames_and_lines_through_async_iteration(fifo, run):
    async def main():
        reader = await ringpipe.open_reader(fifo, framing="lines", persistent=False)
        writer = await ringpipe.open_writer(fifo, framing="lines")
        for i in range(1000):
            writer.write(f"line {i}")
        await writer.aclose(timeout=30)
        return [line async for line in reader]

    assert run(main()) == [f"line {i}".encode() for i in range(1000)]


def test_readexactly_and_incomplete_read_at_eof(fifo, run):
    async def main():
        reader = await ringpipe.open_reader(fifo, persistent=False)
        writer = await ringpipe.open_writer(fifo)
        writer.write(b"abc")
        await writer.aclose(timeout=30)
        assert await reader.readexactly(2) == b"ab"
        with pytest.raises(asyncio.IncompleteReadError) as e:
            await reader.readexactly(5)
        assert e.value.partial == b"c" and reader.at_eof()

    run(main())


def test_naive_writer_cannot_open_before_its_reader(fifo):
    """Before a reader exists a non-blocking open fails (ENXIO) and a
    blocking one would stall the whole event loop."""
    with pytest.raises(OSError) as e:
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    assert e.value.errno == 6  # ENXIO


def test_ringpipe_writer_opens_before_its_reader_and_keeps_what_it_wrote(fifo, run):
    async def main():
        writer = await ringpipe.open_writer(fifo)  # at once, no reader yet
        assert writer.state == "opening"
        writer.write(b"written before anyone reads\n")
        loop = asyncio.get_running_loop()
        code = "import sys\nprint(open(sys.argv[1], 'rb').read().decode(), end='')\n"
        reader = loop.run_in_executor(None, lambda: subprocess.run(
            [sys.executable, "-c", code, fifo], capture_output=True, text=True, timeout=60))
        report = await writer.aclose(timeout=30)
        return (await reader).stdout, report

    out, report = run(main())
    assert out == "written before anyone reads\n" and report.delivered
