"""The logger story: log to a FIFO whose reader comes and goes, losing
nothing and never blocking the application.

    python examples/logger.py /tmp/app.fifo    # logs a record every 10 ms
    cat /tmp/app.fifo                          # in another shell; stop it
                                               # and start it again: every
                                               # record arrives, once

Without a path it runs a demonstration: a reader process reads some
records and leaves, records are logged with no reader, a second reader
reads the rest; every record arrives exactly once, in order.
"""

import logging
import os
import subprocess
import sys
import tempfile
import time

import ringpipe


def logger_for(path: str) -> logging.Logger:
    log = logging.getLogger("app")
    log.setLevel(logging.INFO)
    # One record, one atomic line; emit() never blocks, never raises
    # BrokenPipeError. Records wait (4 MiB at most, then the oldest are
    # dropped and counted) while no reader is there.
    log.addHandler(ringpipe.FifoHandler(path))
    return log


def demo() -> None:
    path = os.path.join(tempfile.mkdtemp(), "app.fifo")
    log = logger_for(path)
    # A reader that takes exactly n lines out of the FIFO (sh's read
    # takes a byte at a time from a pipe), prints them and leaves.
    script = 'i=0; while [ $i -lt "$1" ] && IFS= read -r l; do echo "$l"; i=$((i+1)); done < "$0"'
    read = lambda n: subprocess.Popen(  # noqa: E731
        ["sh", "-c", script, path, str(n)], stdout=subprocess.PIPE, text=True
    )
    first = read(100)
    for i in range(1000):
        log.info("record %d", i)
    got = first.communicate(timeout=30)[0].splitlines()  # read 100, left
    for i in range(1000, 5000):
        log.info("record %d", i)  # nobody reads: they wait
    second = read(4900)
    got += second.communicate(timeout=30)[0].splitlines()
    numbers = [int(line.split()[-1]) for line in got]
    print(f"{len(numbers)} records read by two readers; in order, each once: "
          f"{numbers == list(range(5000))}")


def main() -> None:
    if len(sys.argv) < 2:
        return demo()
    log = logger_for(sys.argv[1])
    i = 0
    while True:
        log.info("record %d at %.3f", i, time.time())
        i += 1
        time.sleep(0.01)


if __name__ == "__main__":
    main()
