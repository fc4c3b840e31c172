"""asyncio streams over FIFOs: a reader that outlives its writers and a
writer whose reader leaves mid-stream; no BrokenPipeError, no RuntimeError
from closed pipes, every byte delivered once.

    python examples/asyncio_streams.py
"""

import asyncio
import os
import tempfile

import ringpipe


async def main() -> None:
    d = tempfile.mkdtemp()
    path = os.path.join(d, "events.fifo")
    reader = await ringpipe.open_reader(path, framing="lines")  # persistent
    for session in range(3):  # three writers, one after another
        async with await ringpipe.open_writer(path, framing="lines") as writer:
            for i in range(5):
                writer.write(f"writer {session} event {i}")
                await writer.drain()
    got = []
    while len(got) < 15:
        got += await reader.read_frames()
    print(f"{len(got)} events from 3 writers, one reader:", got[0], "...", got[-1])
    await reader.aclose()
    try:
        await reader.read()
    except ringpipe.Closed as e:  # a clear error at the call, not RuntimeError
        print("after aclose:", type(e).__name__, e)

    # The writer's reader leaves mid-stream and comes back: nothing lost.
    out = os.path.join(d, "out.fifo")
    writer = await ringpipe.open_writer(out)
    first = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    writer.write(b"a" * 100_000)
    os.close(first)  # gone, with whatever it had not read
    writer.write(b"b" * 100_000)  # no error: kept until a reader is back
    second = await ringpipe.open_reader(out, persistent=False)
    report_task = asyncio.ensure_future(writer.aclose(timeout=10))
    total = 0
    while chunk := await second.read():
        total += len(chunk)
    report = await report_task
    print(f"second reader got {total} bytes; written {report.written}, "
          f"unsent {len(report.unsent)}, delivered {report.delivered}")


if __name__ == "__main__":
    asyncio.run(main())
