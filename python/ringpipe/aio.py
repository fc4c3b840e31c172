"""asyncio streams over FIFOs, on a proactor that runs on the event loop's
own thread: the loop watches the ring's fd with ``add_reader`` (no extra
thread), so it works under any loop that has ``add_reader``, uvloop
included.

Each stream raises a ``ringpipe`` exception at the call that cannot run
(``Closed`` after ``aclose()`` or once its event loop is closed); nothing
is raised from ``__del__``.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Dict, List, Optional, Union

from . import _native
from ._errors import Closed
from ._native import WriteReport

__all__ = ["open_reader", "open_writer", "AsyncReader", "AsyncWriter"]

Data = Union[bytes, bytearray, memoryview, str]


class _Driver:
    """One loop's proactor and the streams waiting on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.engine = _native.LoopEngine()
        self.streams: "weakref.WeakValueDictionary[int, _Stream]" = weakref.WeakValueDictionary()
        self.scheduled = False
        loop.add_reader(self.engine.fileno(), self.run)

    def schedule(self) -> None:
        """Runs the proactor soon, once however many streams ask."""
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.run)

    def run(self) -> None:
        self.scheduled = False
        for sid in self.engine.run():
            stream = self.streams.get(sid)
            if stream is not None:
                stream._wake()

    def check(self) -> None:
        """Raises Closed when this driver's loop cannot run it any more."""
        if self.loop.is_closed():
            raise Closed("the event loop of this stream is closed")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            raise Closed("this stream belongs to another event loop")


_drivers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Driver]" = weakref.WeakKeyDictionary()


def _driver() -> _Driver:
    loop = asyncio.get_running_loop()
    driver = _drivers.get(loop)
    if driver is None:
        driver = _drivers[loop] = _Driver(loop)
    return driver


class _Stream:
    def __init__(self, driver: _Driver, native: Any) -> None:
        self._d = driver
        self._n = native
        self._waiter: Optional[asyncio.Future] = None
        driver.streams[native.id] = self

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._d.check()
        self._waiter = self._d.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _after(self) -> None:
        if self._d.engine.has_work():
            self._d.schedule()

    @property
    def path(self) -> str:
        return self._n.path

    @property
    def state(self) -> str:
        return self._n.state


class AsyncReader(_Stream):
    """Reads a FIFO like ``asyncio.StreamReader``: ``read``, ``readline``,
    ``readexactly``, ``async for`` (lines, or frames when framed), plus
    ``read_frames`` for every frame there is at once."""

    async def read(self, n: int = -1) -> bytes:
        """What there is, up to ``n`` bytes (framed: the next frame);
        ``b""`` once nothing more can come."""
        while True:
            got = self._n.try_read(n)
            if got is not None:
                self._after()
                return got
            await self._wait()

    async def readline(self) -> bytes:
        """The next line, newline included (framed: the next frame)."""
        while True:
            got = self._n.try_readline()
            if got is not None:
                self._after()
                return got
            await self._wait()

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` at EOF first."""
        buf = bytearray()
        while len(buf) < n:
            chunk = await self.read(n - len(buf))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(buf), n)
            buf += chunk
        return bytes(buf)

    async def read_frames(self, max: int = 1_000_000) -> List[bytes]:
        """Every frame there is (at least one), up to ``max``; ``[]`` at EOF."""
        while True:
            got = self._n.try_read_frames(max)
            if got is not None:
                self._after()
                return got
            await self._wait()

    def __aiter__(self) -> "AsyncReader":
        return self

    async def __anext__(self) -> bytes:
        if self._n.closed:
            raise StopAsyncIteration
        item = await self.readline()
        if not item and self._n.finished:
            raise StopAsyncIteration
        return item

    @property
    def reconnects(self) -> int:
        return self._n.reconnects

    def at_eof(self) -> bool:
        return self._n.finished and self._n.buffered == 0

    async def aclose(self) -> None:
        """Stops reading; bytes read and not yet taken are dropped."""
        self._n.close()
        if not self._d.loop.is_closed():
            self._d.schedule()

    async def __aenter__(self) -> "AsyncReader":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class AsyncWriter(_Stream):
    """Writes a FIFO like ``asyncio.StreamWriter``: ``write`` then
    ``await drain()``; never ``BrokenPipeError``: while no reader is there
    the bytes wait (bounded by ``max_buffer``) and reach the next reader
    exactly once. ``await aclose()`` reports what was never written."""

    def write(self, data: Data) -> None:
        """Queues ``data`` (one frame when framed). Never waits: ``drain()``
        does. Raises ``Closed`` after ``close()`` or once the loop is
        closed."""
        if self._d.loop.is_closed():
            raise Closed("the event loop of this stream is closed")
        if self._n.write_nowait(data):
            self._d.schedule()

    def writelines(self, lines: List[Data]) -> None:
        for line in lines:
            self.write(line)

    async def drain(self) -> None:
        """Waits until the bytes not yet in the pipe are within the
        writer's ``max_buffer``."""
        self._d.check()
        while self._n.pending > self._n.max_buffer:
            self._n.check()
            await self._wait()
        self._n.check()

    async def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until every byte is in the pipe; False after ``timeout``."""

        async def until_flushed() -> bool:
            while self._n.pending:
                self._n.check()
                if self._n.report() is not None:
                    return False
                await self._wait()
            return True

        try:
            return await asyncio.wait_for(until_flushed(), timeout)
        except asyncio.TimeoutError:
            return False

    def close(self, timeout: Optional[float] = None) -> None:
        """Starts closing (as ``aclose``) without waiting."""
        self._n.start_close(timeout)
        if not self._d.loop.is_closed():
            self._d.schedule()

    def is_closing(self) -> bool:
        return self._n.closed

    async def wait_closed(self) -> WriteReport:
        while True:
            report = self._n.report()
            if report is not None:
                return report
            await self._wait()

    async def aclose(self, timeout: Optional[float] = None) -> WriteReport:
        """Closes once the reader has read everything, or after ``timeout``
        seconds (default: the writer's ``close_timeout``); reports what
        was never written."""
        self.close(timeout)
        return await self.wait_closed()

    @property
    def pending(self) -> int:
        return self._n.pending

    @property
    def written(self) -> int:
        return self._n.written

    @property
    def dropped_writes(self) -> int:
        return self._n.dropped_writes

    async def __aenter__(self) -> "AsyncWriter":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


async def open_reader(
    path: str,
    *,
    framing: Optional[str] = None,
    persistent: bool = True,
    create: bool = True,
    mode: int = 0o600,
    max_buffer: int = 4 << 20,
    max_frame: int = 1 << 20,
    pipe_size: Optional[int] = None,
) -> AsyncReader:
    """Opens the read end of the FIFO at ``path`` (creating it if missing)
    at once, whether a writer is there or not. Persistent by default: it
    outlives its writers and reads the next one (``persistent=False``
    ends at the first EOF)."""
    driver = _driver()
    native = driver.engine.open_reader(
        path, framing=framing, persistent=persistent, create=create, mode=mode,
        max_buffer=max_buffer, max_frame=max_frame, pipe_size=pipe_size,
    )
    driver.schedule()
    return AsyncReader(driver, native)


async def open_writer(
    path: str,
    *,
    framing: Optional[str] = None,
    create: bool = True,
    mode: int = 0o600,
    max_buffer: int = 4 << 20,
    when_full: str = "block",
    open_timeout: Optional[float] = None,
    close_timeout: Optional[float] = None,
    pipe_size: Optional[int] = None,
) -> AsyncWriter:
    """Opens the write end of the FIFO at ``path`` (creating it if missing)
    at once, reader or not: bytes written before a reader comes wait for
    it."""
    driver = _driver()
    native = driver.engine.open_writer(
        path, framing=framing, create=create, mode=mode, max_buffer=max_buffer,
        when_full=when_full, open_timeout=open_timeout, close_timeout=close_timeout,
        pipe_size=pipe_size,
    )
    driver.schedule()
    return AsyncWriter(driver, native)


def _streams_of(loop: asyncio.AbstractEventLoop) -> Dict[int, Any]:
    """The live streams of a loop's proactor (for tests and debugging)."""
    driver = _drivers.get(loop)
    return dict(driver.streams) if driver else {}
