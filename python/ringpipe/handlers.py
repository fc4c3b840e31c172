"""A ``logging.Handler`` that writes to a FIFO without ever blocking the
application or losing a record silently."""

from __future__ import annotations

import logging
import sys
from typing import Optional

from ._native import PIPE_BUF, WriteReport, Writer

__all__ = ["FifoHandler"]


class FifoHandler(logging.Handler):
    """Writes each log record to the FIFO at ``path`` as one frame.

    - One record, one atomic write: a record of up to ``PIPE_BUF`` bytes
      (4096, newline included) never interleaves with other processes
      writing the same FIFO. Longer records are written whole, but only a
      lone writer keeps them apart.
    - ``emit`` never blocks: it copies the record into the writer's
      buffer and returns. While no reader is there, records wait in the
      buffer (``max_buffer`` bytes); each byte reaches the next reader
      exactly once. When the buffer is full the oldest records are
      dropped and counted (``when_full="drop_oldest"``, ``dropped``).
    - ``framing="lines"`` (the default): a record's own newlines are
      written as the two characters ``\\n``, so every line is one record.
      ``framing="length"`` keeps the text exact, each record prefixed by
      its length (a little-endian ``u32``).
    - ``close()`` (called by ``logging.shutdown`` at exit) waits up to
      ``close_timeout`` seconds for the reader to read everything, then
      reports on stderr what was never written; ``report`` keeps it.
    """

    def __init__(
        self,
        path: str,
        level: int = logging.NOTSET,
        *,
        framing: str = "lines",
        max_buffer: int = 4 << 20,
        when_full: str = "drop_oldest",
        close_timeout: Optional[float] = 5.0,
        create: bool = True,
        mode: int = 0o600,
        encoding: str = "utf-8",
    ) -> None:
        super().__init__(level)
        if framing not in ("lines", "length"):
            raise ValueError("framing must be 'lines' or 'length'")
        self.writer = Writer(
            path,
            framing=framing,
            create=create,
            mode=mode,
            max_buffer=max_buffer,
            when_full=when_full,
            close_timeout=close_timeout,
        )
        self.path = path
        self.encoding = encoding
        self._escape = framing == "lines"
        self.report: Optional[WriteReport] = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if self._escape and "\n" in text:
                text = text.replace("\n", "\\n")
            self.writer.write(text.encode(self.encoding, "backslashreplace"))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Returns at once: the writer sends on its own thread."""

    @property
    def dropped(self) -> int:
        """Records dropped because the buffer was full."""
        return self.writer.dropped_writes

    def close(self) -> None:
        try:
            if self.report is None:
                self.report = self.writer.close()
                lost = len(self.report.unsent)
                if lost or self.report.dropped_writes:
                    print(
                        f"ringpipe.FifoHandler({self.path!r}): {lost} bytes of records "
                        f"never written, {self.report.dropped_writes} records dropped "
                        f"({self.report.reason})",
                        file=sys.stderr,
                    )
        finally:
            super().close()


# Records up to this size (newline included) are written atomically.
ATOMIC_RECORD = PIPE_BUF
