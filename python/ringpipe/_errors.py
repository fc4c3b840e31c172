"""ringpipe's exceptions.

Every exception the package raises on its own is a :class:`ringpipe.Error`.
Those about a path are also the ``OSError`` a Python program already
catches: ``except FileNotFoundError`` catches :class:`NotFound`, with
``.filename`` and ``.errno`` set.
"""

from __future__ import annotations

import subprocess as _subprocess

__all__ = [
    "Error",
    "NotFound",
    "PermissionDenied",
    "NotAFifo",
    "TransportError",
    "Timeout",
    "Closed",
    "WouldBlock",
    "Unsupported",
    "FrameError",
    "ProcessError",
    "RunTimeout",
]


class Error(Exception):
    """Base of every ringpipe error; ``filename`` names the FIFO, if any."""

    # No class attribute `filename`: it would hide OSError's own.

    def __str__(self) -> str:
        # OSError subclasses carry the message as strerror; show it alone.
        message = getattr(self, "strerror", None)
        return message if isinstance(message, str) else super().__str__()


class NotFound(Error, FileNotFoundError):
    """The FIFO (or a directory on its path) does not exist."""


class PermissionDenied(Error, PermissionError):
    """Opening or creating the FIFO was refused."""


class NotAFifo(Error, OSError):
    """The path exists but is not a FIFO (or is a symbolic link)."""


class TransportError(Error, OSError):
    """Any other OS failure of a FIFO end; ``errno`` says which."""


class Timeout(Error, TimeoutError):
    """A wait ran out: no reader came, nothing to read, no room."""


class Closed(Error):
    """The stream is closed: the operation cannot run."""


class WouldBlock(Error):
    """A writer's buffer is full and its policy refused the write.

    ``data`` is what was refused, ``queued`` the bytes in the buffer and
    ``limit`` its bound.
    """

    data: "bytes | None" = None
    queued: int = 0
    limit: int = 0


class Unsupported(Error):
    """io_uring cannot be used here (kernel, sysctl or seccomp)."""


class FrameError(Error, ValueError):
    """A frame its framing cannot carry (a newline inside a line...)."""


class ProcessError(Error):
    """Running a program over FIFOs failed (not a non-zero exit)."""


class RunTimeout(ProcessError, _subprocess.TimeoutExpired):
    """A run took longer than its timeout; its programs were killed.

    ``partial`` holds what was collected until then (a ``CompletedRun``
    or ``PipelineResult``).
    """

    def __init__(self, cmd, timeout, partial=None):  # type: ignore[no-untyped-def]
        _subprocess.TimeoutExpired.__init__(self, cmd, timeout)
        self.partial = partial

    def __str__(self) -> str:
        return _subprocess.TimeoutExpired.__str__(self) + "; killed"
