"""ringpipe: FIFO I/O for Python that loses nothing and never deadlocks.

Built on ringpipe's io_uring proactor (Linux >= 6.1):

- :class:`Writer`: ``write()`` never raises ``BrokenPipeError``; while no
  reader is there the bytes wait in a bounded buffer and reach the next
  reader exactly once; ``close()`` reports what was never written.
- :class:`FifoHandler`: a ``logging.Handler`` on a Writer: one record, one
  atomic frame; ``emit`` never blocks.
- :class:`Reader`: opens at once whatever the writers do, survives writers
  coming and going, and hands out bytes, lines or frames.
- :func:`open_reader`, :func:`open_writer`: the same as asyncio streams,
  on a proactor on the event loop's own thread.
- :func:`run`, :func:`pipeline`: programs whose inputs and outputs are
  FIFOs, in any opening order, without deadlock.
- :class:`Hub`: frames published from Python to many FIFO subscribers,
  each with its own bounded queue.
"""

from __future__ import annotations

import atexit as _atexit
import sys as _sys
import sysconfig as _sysconfig

if not _sys.platform.startswith("linux"):
    raise ImportError("ringpipe needs Linux: it is built on io_uring")
if _sysconfig.get_config_var("Py_GIL_DISABLED"):
    raise ImportError(
        "ringpipe does not support free-threaded CPython (a 't' build such as "
        "python3.13t) yet: install it into a standard CPython >= 3.9"
    )

from . import _errors  # noqa: E402
from ._errors import *  # noqa: E402,F401,F403
from . import _native  # noqa: E402
from ._native import PIPE_BUF, Reader, WriteReport, Writer  # noqa: E402
from .aio import AsyncReader, AsyncWriter, open_reader, open_writer  # noqa: E402
from .handlers import FifoHandler  # noqa: E402
from .hub import Hub  # noqa: E402
from . import process as _process  # noqa: E402
from .process import *  # noqa: E402,F401,F403

__all__ = [
    "Writer",
    "Reader",
    "WriteReport",
    "FifoHandler",
    "Hub",
    "open_reader",
    "open_writer",
    "AsyncReader",
    "AsyncWriter",
    "PIPE_BUF",
    "EXIT_TIMEOUT",
] + _process.__all__ + _errors.__all__

#: At interpreter exit, how long each open writer may wait for its reader
#: to read everything before it is closed with what was never written.
EXIT_TIMEOUT = 5.0


def _at_exit() -> None:
    _native.shutdown(EXIT_TIMEOUT)


_atexit.register(_at_exit)
