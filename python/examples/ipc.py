"""Named-pipe IPC between two Python processes: a server and a client
talk over two FIFOs, each opening its ends in its own order. With
os.open that deadlocks; with ringpipe every end opens at once, and the
server serves one client after another.

    python examples/ipc.py server /tmp/ipc    # creates /tmp/ipc/pipe.{in,out}
    python examples/ipc.py client /tmp/ipc    # in another shell, any number of times
    python examples/ipc.py                    # both, as a demonstration
"""

import os
import subprocess
import sys
import tempfile

import ringpipe


def server(d: str) -> None:
    requests = ringpipe.Reader(os.path.join(d, "pipe.in"), framing="lines")
    replies = ringpipe.Writer(os.path.join(d, "pipe.out"), framing="lines")
    for msg in requests:  # outlives each client; ends at "exit"
        if msg == b"exit":
            break
        replies.write(b"echo " + msg)
    replies.close(timeout=5)


def client(d: str, last: bool = False) -> None:
    # The opposite order to the server's: it does not matter.
    replies = ringpipe.Reader(os.path.join(d, "pipe.out"), framing="lines")
    requests = ringpipe.Writer(os.path.join(d, "pipe.in"), framing="lines")
    for i in range(1, 4):
        requests.write(f"msg {i}")
        print("client got", replies.read(timeout=10).decode())
    if last:
        requests.write("exit")
    requests.close(timeout=10)


def main() -> None:
    if len(sys.argv) >= 3:
        os.makedirs(sys.argv[2], exist_ok=True)
        return server(sys.argv[2]) if sys.argv[1] == "server" else client(sys.argv[2])
    d = tempfile.mkdtemp()
    srv = subprocess.Popen([sys.executable, __file__, "server", d])
    client(d)
    client(d, last=True)
    print("server exit status", srv.wait(timeout=30))


if __name__ == "__main__":
    main()
