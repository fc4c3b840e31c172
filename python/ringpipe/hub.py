"""Publish/subscribe over FIFOs: frames published from Python reach every
subscriber FIFO, each with its own bounded queue."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from . import _native

__all__ = ["Hub"]

Data = Union[bytes, bytearray, memoryview, str]


class Hub:
    """Fans frames out to FIFO subscribers (ringpipe's ``hub::Hub``).

    ``publish(frame)`` copies the frame into the publisher's bounded buffer
    (``publish_buffer`` bytes; a full one makes ``publish`` wait, up to its
    ``timeout``) and returns. Each subscriber gets every frame published
    after it subscribed, in order, exactly once, from its own queue of at
    most ``queue_bytes``; when a subscriber's queue is full:

    - ``"drop_oldest"``: its oldest frames are dropped and counted (the
      others are not slowed);
    - ``"pause"``: publishing waits for the slowest subscriber (nothing is
      dropped);
    - ``"detach"``: that subscriber is let go (see :meth:`gone`).

    A subscriber whose reader leaves keeps its queue and resumes at the
    exact byte when a reader comes back. Runs on the engine thread: safe
    to use from any thread.
    """

    def __init__(
        self,
        *,
        framing: str = "lines",
        queue_bytes: int = 1 << 20,
        when_full: str = "drop_oldest",
        max_frame: Optional[int] = None,
        publish_buffer: int = 4 << 20,
    ) -> None:
        self._hub = _native.HubHandle(
            framing=framing, queue_bytes=queue_bytes, when_full=when_full,
            max_frame=max_frame, publish_buffer=publish_buffer,
        )
        self._publisher = self._hub.publisher

    def subscribe(self, path: str) -> bool:
        """Adds the FIFO at ``path`` (created if missing); False if it
        already is a subscriber. Opens at once, reader or not."""
        return self._hub.subscribe(path)

    def unsubscribe(self, path: str) -> Optional[Dict[str, int]]:
        """Stops feeding ``path``; returns its counters (or None)."""
        return self._hub.unsubscribe(path)

    def publish(self, frame: Data, timeout: Optional[float] = None) -> None:
        """Publishes one frame (a line without its newline, or any bytes
        with ``framing="length"``)."""
        self._publisher.write(frame, timeout)

    def publish_many(self, frames: Iterable[Data], timeout: Optional[float] = None) -> None:
        for frame in frames:
            self._publisher.write(frame, timeout)

    def stats(self) -> Dict[str, Dict[str, int]]:
        """Each subscriber's counters: frames and bytes queued, dropped and
        handed to its FIFO."""
        return self._hub.stats()

    def gone(self) -> List[Tuple[str, Dict[str, int], str]]:
        """Subscribers let go: (path, counters, "closed" / "detached" / an
        error)."""
        return self._hub.gone()

    def close(self, timeout: Optional[float] = None) -> bool:
        """Ends the hub once every subscriber's reader has every frame, or
        after ``timeout`` seconds; True if every one did."""
        return self._hub.close(timeout)

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
