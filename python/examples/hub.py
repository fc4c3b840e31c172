"""Publish/subscribe over FIFOs from Python threads: several producer
threads publish; three subscriber FIFOs each get every frame, in order,
once; one of them has no reader and only drops its own oldest frames.

    python examples/hub.py
"""

import os
import subprocess
import tempfile
import threading

import ringpipe

d = tempfile.mkdtemp()
subs = [os.path.join(d, name) for name in ("a", "b", "nobody")]
hub = ringpipe.Hub(framing="lines", queue_bytes=256 * 1024, when_full="drop_oldest")
for path in subs:
    hub.subscribe(path)
readers = [subprocess.Popen(["wc", "-l", path], stdout=subprocess.PIPE, text=True) for path in subs[:2]]


def produce(t: int) -> None:
    for i in range(20000):
        hub.publish(f"producer {t} tick {i}")


threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
stats = hub.stats()
print("everything delivered:", hub.close(timeout=2))  # False: "nobody" never read
for r in readers:
    print("reader:", r.communicate(timeout=30)[0].strip())
print("nobody dropped", stats[subs[2]]["dropped_frames"], "of its oldest frames")
