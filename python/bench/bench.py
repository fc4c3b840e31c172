"""ringpipe for Python, measured beside the ways Python programs write and
read FIFOs without it.

    python python/bench/bench.py            # both scenarios, 3 runs each
    python python/bench/bench.py --quick    # smaller, 1 run

writer: one Python process writes 64-byte lines into a FIFO that `cat`
drains to /dev/null; per line through ringpipe.Writer.write, os.write,
and asyncio's connect_write_pipe (StreamWriter.write, then drain every
line, as documented) and ringpipe's open_writer (write, drain every line).

fan-in: one asyncio process reads 64-byte lines from 256 FIFOs that one
writer process fills (4 KiB writes, round robin): connect_read_pipe with
a StreamReader and a task per FIFO reading line by line, against
ringpipe.open_reader with a task per FIFO taking every line there is per
await (read_frames), and line by line (async for).

Each variant runs in a fresh process; figures are messages per second
(wall time from the first line until the last is read) and CPU per
message (user + system time of the measured process over the same span,
its threads included; start-up excluded). Medians of the runs,
with min-max.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

LINE = b"x" * 63 + b"\n"

WRITER = {
    "ringpipe.Writer.write": """
        import ringpipe
        w = ringpipe.Writer(PATH)
        start()
        for _ in range(N):
            w.write(LINE)
        assert w.close().complete
    """,
    "os.write": """
        import os
        fd = os.open(PATH, os.O_WRONLY | os.O_CLOEXEC)
        start()
        for _ in range(N):
            os.write(fd, LINE)
        os.close(fd)
    """,
    "asyncio connect_write_pipe": """
        import asyncio
        async def main():
            loop = asyncio.get_running_loop()
            f = open(PATH, "wb", buffering=0)
            t, p = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, f)
            w = asyncio.StreamWriter(t, p, None, loop)
            start()
            for _ in range(N):
                w.write(LINE)
                await w.drain()
            w.close()
        asyncio.run(main())
    """,
    "ringpipe open_writer": """
        import asyncio, ringpipe
        async def main():
            w = await ringpipe.open_writer(PATH)
            start()
            for _ in range(N):
                w.write(LINE)
                await w.drain()
            assert (await w.aclose()).complete
        asyncio.run(main())
    """,
}

FANIN = {
    "asyncio connect_read_pipe": """
        import asyncio, os
        async def one(path):
            loop = asyncio.get_running_loop()
            r = asyncio.StreamReader()
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(r),
                                         os.fdopen(fd, "rb", buffering=0))
            await opened.wait()
            n = 0
            async for _ in r:
                n += 1
            return n
        async def main():
            global opened
            opened = asyncio.Event()
            tasks = [asyncio.ensure_future(one(p)) for p in PATHS]
            await asyncio.sleep(0.2)
            start(); opened.set()
            return sum(await asyncio.gather(*tasks))
        COUNT = asyncio.run(main())
    """,
    "ringpipe open_reader, read_frames": """
        import asyncio, ringpipe
        async def one(r):
            n = 0
            while True:
                frames = await r.read_frames()
                if not frames:
                    return n
                n += len(frames)
        async def main():
            readers = [await ringpipe.open_reader(p, framing="lines", persistent=False) for p in PATHS]
            start()
            return sum(await asyncio.gather(*(one(r) for r in readers)))
        COUNT = asyncio.run(main())
    """,
    "ringpipe open_reader, async for": """
        import asyncio, ringpipe
        async def one(r):
            n = 0
            async for _ in r:
                n += 1
            return n
        async def main():
            readers = [await ringpipe.open_reader(p, framing="lines", persistent=False) for p in PATHS]
            start()
            return sum(await asyncio.gather(*(one(r) for r in readers)))
        COUNT = asyncio.run(main())
    """,
}

# The fan-in writer: every FIFO gets PER lines, 64 lines per write.
FANIN_WRITER = """
import os, sys
paths = sys.argv[2:]
per = int(sys.argv[1])
chunk = (b"x" * 63 + b"\\n") * 64
fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in paths]
for _ in range(per // 64):
    for fd in fds:
        os.write(fd, chunk)
"""

PRELUDE = """
import json, os, resource, sys, time
PATH = {path!r}
PATHS = {paths!r}
N = {n}
LINE = {line!r}
T = {{}}
def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime
def start():
    T["c0"] = cpu()
    T["t0"] = time.perf_counter()
"""

EPILOGUE = """
{done}
T["t1"] = time.perf_counter()
print(json.dumps({{"wall": T["t1"] - T["t0"], "cpu": cpu() - T["c0"]}}))
"""


def run_writer(code: str, n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        os.mkfifo(path)
        cat = subprocess.Popen(["sh", "-c", 'exec cat "$0" > /dev/null', path])
        src = PRELUDE.format(path=path, paths=[], n=n, line=LINE) + textwrap.dedent(code)
        # The writer is done when cat has read everything (close() waits
        # for that; os.write's last line is in the pipe: wait for cat).
        src += EPILOGUE.format(done="")
        out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=600)
        cat.wait(timeout=600)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        return json.loads(out.stdout)


def run_fanin(code: str, fifos: int, per: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, f"f{i}") for i in range(fifos)]
        for p in paths:
            os.mkfifo(p)
        src = PRELUDE.format(path="", paths=paths, n=fifos * per, line=LINE)
        src += "import subprocess\n"
        src += "_start = start\n"
        src += "def start():\n"
        src += "    global WRITER\n"
        src += f"    WRITER = subprocess.Popen([sys.executable, '-c', {FANIN_WRITER!r}, str({per})] + PATHS)\n"
        src += "    _start()\n"
        src += textwrap.dedent(code)
        src += EPILOGUE.format(done="assert COUNT == N, (COUNT, N); WRITER.wait()")
        out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        return json.loads(out.stdout)


def summary(name: str, runs: list, n: int) -> dict:
    rates = sorted(n / r["wall"] for r in runs)
    cpus = sorted(r["cpu"] / n * 1e9 for r in runs)
    return {
        "name": name,
        "msgs_per_s": statistics.median(rates),
        "range": (rates[0], rates[-1]),
        "cpu_ns_per_msg": statistics.median(cpus),
        "cpu_range": (cpus[0], cpus[-1]),
    }


def table(title: str, rows: list, base: str) -> None:
    print(f"\n{title}")
    print(f"{'variant':40} {'msgs/s (median [min-max])':>34} {'CPU ns/msg':>24} {'x base':>7}")
    ref = next(r for r in rows if r["name"] == base)
    for r in rows:
        lo, hi = r["range"]
        clo, chi = r["cpu_range"]
        print(
            f"{r['name']:40} {r['msgs_per_s']:>12,.0f} [{lo:,.0f}-{hi:,.0f}]"
            f" {r['cpu_ns_per_msg']:>8,.0f} [{clo:,.0f}-{chi:,.0f}]"
            f" {r['msgs_per_s'] / ref['msgs_per_s']:>6.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs, once each")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--only", choices=["writer", "fanin"], default=None)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    n = 200_000 if args.quick else 1_000_000
    fifos, per = 256, (1024 if args.quick else 4096)
    results = {}
    if args.only in (None, "writer"):
        rows = [summary(k, [run_writer(v, n) for _ in range(runs)], n) for k, v in WRITER.items()]
        table(f"writer: {n:,} lines of 64 bytes into one FIFO (cat reads)", rows, "os.write")
        results["writer"] = rows
    if args.only in (None, "fanin"):
        total = fifos * per
        rows = [summary(k, [run_fanin(v, fifos, per) for _ in range(runs)], total) for k, v in FANIN.items()]
        table(f"fan-in: {fifos} FIFOs x {per:,} lines of 64 bytes, one asyncio reader", rows,
              "asyncio connect_read_pipe")
        results["fanin"] = rows
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
