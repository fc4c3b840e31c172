"""The named-pipe IPC story: a server and a client talk over two FIFOs,
``pipe.in`` (client to server) and ``pipe.out`` (server to client), each
opening its ends in the order its author found natural.

With blocking ``os.open``, opposite orders deadlock for good: each process
waits in ``open(2)`` for a partner that is itself waiting. ringpipe opens
every end at once, so any order works, and a reader outlives its writers.
"""

from __future__ import annotations

import os
import time

import ringpipe
from conftest import Peer, asleep_in_fifo_open

NAIVE_SERVER = """
import os, sys
d = sys.argv[1]
rf = os.open(d + "/pipe.in", os.O_RDONLY)     # waits for the client's writer
wf = os.open(d + "/pipe.out", os.O_WRONLY)
print("server open", flush=True)
"""

NAIVE_CLIENT = """
import os, sys
d = sys.argv[1]
rf = os.open(d + "/pipe.out", os.O_RDONLY)    # waits for the server's writer
wf = os.open(d + "/pipe.in", os.O_WRONLY)
print("client open", flush=True)
"""

RINGPIPE_SERVER = """
import sys, ringpipe
d = sys.argv[1]
requests = ringpipe.Reader(d + "/pipe.in", framing="lines")
replies = ringpipe.Writer(d + "/pipe.out", framing="lines")
print("server open", flush=True)
for msg in requests:                           # across clients, until "exit"
    if msg == b"exit":
        break
    replies.write(b"echo " + msg)
print("server done", replies.close(timeout=30).complete, flush=True)
"""

RINGPIPE_CLIENT = """
import sys, ringpipe
d = sys.argv[1]
replies = ringpipe.Reader(d + "/pipe.out", framing="lines")
requests = ringpipe.Writer(d + "/pipe.in", framing="lines")
print("client open", flush=True)
for i in range(1, 11):
    requests.write(f"msg {i}")
    print(replies.read(timeout=30).decode(), flush=True)
if sys.argv[2] == "last":
    requests.write("exit")
requests.close(timeout=30)
"""


def make_pipes(d) -> None:
    os.mkfifo(d / "pipe.in")
    os.mkfifo(d / "pipe.out")


def test_naive_opens_in_opposite_orders_deadlock(tmp_path, peers):
    make_pipes(tmp_path)
    server = Peer(NAIVE_SERVER, str(tmp_path))
    client = Peer(NAIVE_CLIENT, str(tmp_path))
    peers += [server, client]
    # Both end up asleep in open(2), each waiting for the other: for good.
    deadline = time.monotonic() + 20
    blocked = lambda p: asleep_in_fifo_open(p.proc.pid)  # noqa: E731
    while time.monotonic() < deadline and not (blocked(server) and blocked(client)):
        time.sleep(0.05)
    assert server.proc.poll() is None and client.proc.poll() is None
    assert blocked(server) and blocked(client)


def test_ringpipe_opens_in_opposite_orders_and_serves_clients_in_turn(tmp_path, peers):
    make_pipes(tmp_path)
    server = Peer(RINGPIPE_SERVER, str(tmp_path))
    peers.append(server)
    server.expect("server open")
    for turn in ("first", "last"):  # the server's reader outlives the first client
        client = Peer(RINGPIPE_CLIENT, str(tmp_path), turn)
        peers.append(client)
        status, out, err = client.finish(timeout=60)
        assert status == 0, err
        assert out.splitlines() == ["client open"] + [f"echo msg {i}" for i in range(1, 11)]
    status, out, err = server.finish(timeout=60)
    assert status == 0, err
    assert out.splitlines()[-1] == "server done True"


def test_reader_iterates_lines_and_frames_across_writers(tmp_path):
    path = str(tmp_path / "f")
    with ringpipe.Reader(path, framing="length") as r:
        for session in range(3):  # each writer leaves; the reader stays
            w = ringpipe.Writer(path, framing="length")
            for i in range(100):
                w.write(b"%d:%d" % (session, i) if i % 10 else b"")  # empty frames too
            assert w.close(timeout=30).delivered
            deadline = time.monotonic() + 30  # the reader sees this writer leave
            while r.state != "peer_gone" and time.monotonic() < deadline:
                time.sleep(0.005)
        got = []
        while len(got) < 300:
            got += r.read_frames(timeout=30)
        assert got == [b"%d:%d" % (s, i) if i % 10 else b"" for s in range(3) for i in range(100)]
        assert r.reconnects == 2


def test_one_shot_reader_ends_at_eof_and_readline_keeps_newlines(tmp_path):
    path = str(tmp_path / "f")
    r = ringpipe.Reader(path, persistent=False)
    w = ringpipe.Writer(path)
    w.write(b"one\ntwo\nthree")
    w.close(timeout=30)
    assert r.readline(timeout=30) == b"one\n"
    assert r.readline(timeout=30) == b"two\n"
    assert r.readline(timeout=30) == b"three"  # the rest, at EOF
    assert r.readline(timeout=30) == b""
    assert list(r) == []
    assert r.finished


def test_reader_close_ends_iteration_in_another_thread(tmp_path):
    import threading

    r = ringpipe.Reader(str(tmp_path / "f"), framing="lines")
    got = []
    t = threading.Thread(target=lambda: got.extend(r))
    t.start()
    time.sleep(0.1)
    r.close()
    t.join(timeout=30)
    assert not t.is_alive() and got == []
    try:
        r.read()
    except ringpipe.Closed:
        pass
    else:
        raise AssertionError("read after close must raise Closed")


def test_a_full_reader_pauses_the_pipe_and_loses_nothing(tmp_path):
    path = str(tmp_path / "f")
    r = ringpipe.Reader(path, max_buffer=64 * 1024)
    w = ringpipe.Writer(path)
    data = os.urandom(4 << 20)
    w.write(data)
    time.sleep(0.2)
    assert r.buffered <= 64 * 1024 + 256 * 1024  # paused near its bound
    got = bytearray()
    while len(got) < len(data):
        got += r.read(timeout=30)
    assert bytes(got) == data
    assert w.close(timeout=30).delivered
