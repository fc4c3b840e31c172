"""Threads and the hub: any thread may write, the GIL is released while a
call waits, and frames published from Python reach every FIFO subscriber
in order, exactly once, each at its own pace."""

from __future__ import annotations

import os
import threading
import time

import ringpipe
from conftest import Peer

CAT = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
out = bytearray()
while True:
    b = os.read(fd, 65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())
"""


def test_threads_share_a_writer_and_no_frame_is_torn(tmp_path, peers):
    path = str(tmp_path / "f")
    w = ringpipe.Writer(path, framing="lines")
    reader = Peer(CAT, path)
    peers.append(reader)

    def produce(t: int) -> None:
        for i in range(5000):
            w.write(f"thread {t} line {i:05d} " + "x" * (t * 10))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert w.close(timeout=60).delivered
    status, out, err = reader.finish(timeout=60)
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 20000
    for t in range(4):  # each thread's lines whole and in its order
        mine = [line for line in lines if line.startswith(f"thread {t} ")]
        assert mine == [f"thread {t} line {i:05d} " + "x" * (t * 10) for i in range(5000)]


def test_a_waiting_call_releases_the_gil(tmp_path):
    """While one thread waits in read(), another runs Python code."""
    r = ringpipe.Reader(str(tmp_path / "f"))
    counter = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal counter
        while not done.is_set():
            counter += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        try:
            r.read(timeout=0.5)
        except ringpipe.Timeout:
            pass
    finally:
        done.set()
        t.join()
        r.close()
    assert counter > 10_000


def test_hub_publishes_to_every_subscriber_once_in_order(tmp_path, peers):
    paths = [str(tmp_path / f"sub{i}") for i in range(3)]
    hub = ringpipe.Hub(framing="lines", queue_bytes=8 << 20)
    for p in paths:
        assert hub.subscribe(p)
    assert not hub.subscribe(paths[0])
    readers = [Peer(CAT, p) for p in paths]
    peers += readers
    frames = [f"event {i:06d}" for i in range(20000)]
    hub.publish_many(frames)
    assert hub.close(timeout=60)
    for r in readers:
        status, out, err = r.finish(timeout=60)
        assert status == 0, err
        assert out.splitlines() == frames


def test_hub_drops_oldest_for_a_subscriber_without_reader_only(tmp_path, peers):
    fast, absent = str(tmp_path / "fast"), str(tmp_path / "absent")
    hub = ringpipe.Hub(framing="lines", queue_bytes=64 * 1024, when_full="drop_oldest")
    hub.subscribe(fast)
    hub.subscribe(absent)  # nobody ever reads it
    reader = Peer(CAT, fast)
    peers.append(reader)
    frames = [f"tick {i:07d}" for i in range(50000)]  # 650 KB
    for i in range(0, len(frames), 1000):
        hub.publish_many(frames[i : i + 1000])
        time.sleep(0.001)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = hub.stats()
        if s[fast]["handed_frames"] == len(frames):
            break
        time.sleep(0.01)
    s = hub.stats()
    assert s[fast]["handed_frames"] == len(frames) and s[fast]["dropped_frames"] == 0
    assert s[absent]["dropped_frames"] > 0
    assert s[absent]["queued_bytes"] <= 64 * 1024
    assert not hub.close(timeout=0.5)  # the absent one never read its share
    status, out, err = reader.finish(timeout=60)
    assert status == 0 and out.splitlines() == frames, err


def test_hub_pause_holds_the_publisher_back_and_drops_nothing(tmp_path, peers):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    hub = ringpipe.Hub(framing="lines", queue_bytes=16 * 1024, when_full="pause",
                       publish_buffer=16 * 1024)
    hub.subscribe(a)
    hub.subscribe(b)
    readers = [Peer(CAT, a)]
    peers.extend(readers)
    frames = [f"frame {i:06d}" for i in range(50000)]
    sent = 0
    try:
        for frame in frames:  # b is not read: the hub pauses, publishing waits
            hub.publish(frame, timeout=0.5)
            sent += 1
    except ringpipe.WouldBlock as e:
        assert e.data == frames[sent]
    assert 0 < sent < len(frames)
    assert hub.stats()[b]["dropped_frames"] == 0
    readers.append(Peer(CAT, b))
    peers.append(readers[-1])
    hub.publish_many(frames[sent:], timeout=60)
    assert hub.close(timeout=60)
    for r in readers:
        status, out, err = r.finish(timeout=60)
        assert status == 0 and out.splitlines() == frames, err
