"""CLI programs as functions: a program that takes file names gets FIFOs
for them (no disk), as the "named pipes to turn CLI programs into Python
functions" story does with an assembler and a linker.

Opening FIFOs with plain ``open`` deadlocks as soon as the program opens
its files in another order than the script; ``ringpipe.run`` and
``ringpipe.pipeline`` work in every order, with inputs and outputs far
larger than a pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import ringpipe
from conftest import Peer, asleep_in_fifo_open, interrupted

# A program that opens its OUTPUT first, then its input.
OUT_FIRST = ["sh", "-c", 'exec 3>"$1"; exec tr a-z A-Z < "$0" >&3']

NAIVE_SCRIPT = """
import os, subprocess, sys
d = sys.argv[1]
os.mkfifo(d + "/in"); os.mkfifo(d + "/out")
p = subprocess.Popen(sys.argv[2:] + [d + "/in", d + "/out"])
print(p.pid, flush=True)
with open(d + "/in", "wb") as wf, open(d + "/out", "rb") as rf:  # input first
    wf.write(b"hello")
    wf.close()
    print(rf.read(), flush=True)
"""


def test_naive_fifo_script_deadlocks_with_a_program_opening_in_another_order(tmp_path, peers):
    script = Peer(NAIVE_SCRIPT, str(tmp_path), *OUT_FIRST)
    peers.append(script)
    child = int(script.expect(""))
    try:
        # The script waits in open(in) for a reader; the program waits in
        # open(out) for a reader: each for the other, for good.
        blocked = asleep_in_fifo_open
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (blocked(script.proc.pid) and blocked(child)):
            time.sleep(0.05)
        assert blocked(script.proc.pid) and blocked(child)
        assert script.proc.poll() is None
    finally:
        os.kill(child, signal.SIGKILL)


def test_run_feeds_and_drains_in_any_opening_order():
    data = os.urandom(3 << 20).hex().encode()  # 6 MB of a-f0-9: far beyond a pipe
    out = ringpipe.run(OUT_FIRST + ["{in:in}", "{out:out}"], inputs={"in": data}, outputs=["out"],
                       timeout=120)
    assert out.returncode == 0
    assert out.outputs["out"] == data.upper()
    assert out.inputs["in"].complete and out.inputs["in"].unsent == 0


def test_pipeline_assembler_then_linker():
    """asm A.asm -o A.o, then link A.o -o A.gb -m A.map -n A.sym: A.o never
    touches the disk, and the linker opens its outputs in reverse order."""
    source = "".join(f"ld a, {i}\n" for i in range(20000))
    asm = ringpipe.Command(["sh", "-c", 'tr a-z A-Z < "$0" > "$1"', "{in:A.asm}", "{out:A.o}"],
                           inputs={"A.asm": source}, outputs=["A.o"])
    link = ringpipe.Command(
        ["sh", "-c", 'exec 5>"$3" 4>"$2" 3>"$1"; tee /dev/fd/4 < "$0" >&3; echo symbols >&5',
         "{in:A.o}", "{out:A.gb}", "{out:A.map}", "{out:A.sym}"],
        piped=["A.o"], outputs=["A.gb", "A.map", "A.sym"],
    )
    out = ringpipe.pipeline([asm, link], timeout=120)
    assert out.success and out.returncodes == [0, 0]
    assert out.outputs["A.gb"] == source.upper().encode() == out.outputs["A.map"]
    assert out.outputs["A.sym"] == b"symbols\n"
    assert out.links["A.o"].complete and out.links["A.o"].relayed == len(source)


def test_start_streams_while_the_program_runs():
    # sed -u answers each line at once (tr would hold its output until EOF).
    streaming = ["sh", "-c", 'exec 3>"$1"; exec sed -u s/chunk/CHUNK/ < "$0" >&3']
    with ringpipe.start(streaming + ["{in:in}", "{out:out}"], inputs=["in"], outputs=["out"]) as p:
        got = b""
        for i in range(100):
            p.inputs["in"].write(b"chunk %d\n" % i)
            if i % 10 == 0:  # read some while it runs
                got += p.outputs["out"].read(timeout=60)
        assert p.inputs["in"].close(timeout=60).complete
        while True:
            chunk = p.outputs["out"].read(timeout=60)
            if not chunk:
                break
            got += chunk
        assert p.wait(timeout=60) == 0
    assert got == b"".join(b"CHUNK %d\n" % i for i in range(100))


def test_run_reports_exit_codes_timeouts_and_mistakes(tmp_path):
    assert ringpipe.run(["sh", "-c", "exit 3"]).returncode == 3
    with pytest.raises(subprocess.CalledProcessError):
        ringpipe.run(["false"], check=True)
    with pytest.raises(ringpipe.RunTimeout) as e:
        ringpipe.run(["sleep", "30"], timeout=0.3)
    assert isinstance(e.value, subprocess.TimeoutExpired)
    assert e.value.partial.returncode == -signal.SIGKILL
    with pytest.raises(ringpipe.ProcessError, match="names no declared FIFO"):
        ringpipe.run(["cat", "{in:nothing}"])
    with pytest.raises(ringpipe.ProcessError, match="cannot run"):
        ringpipe.run([str(tmp_path / "no-such-program")])


def test_ctrl_c_interrupts_a_run(tmp_path):
    pidfile = tmp_path / "pid"
    code = (
        "import ringpipe, sys\n"
        "print('running', flush=True)\n"
        "try:\n"
        "    ringpipe.run(['sh', '-c', 'echo $$ > \"$0\"; exec sleep 60 >/dev/null 2>&1', sys.argv[1]])\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    def started() -> None:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)

    try:
        assert interrupted(code, str(pidfile), ready="running", before=started) == "interrupted"
    finally:
        if pidfile.exists() and pidfile.read_text().strip():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
