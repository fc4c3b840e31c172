"""CLI programs as functions: programs that take file names get FIFOs
(nothing on disk), in any opening order, without deadlock.

    python examples/programs.py

The "assembler" and "linker" here are shell one-liners standing in for
rgbasm and rgblink: the linker opens its three outputs in reverse order,
which deadlocks a script that opens FIFOs with plain open().
"""

import ringpipe

source = "".join(f"ld a, {i}\n" for i in range(10000))

# One program, in memory: like subprocess.run, with {in:...}/{out:...}.
out = ringpipe.run(
    ["sh", "-c", 'exec 3>"$1"; exec tr a-z A-Z < "$0" >&3', "{in:A.asm}", "{out:A.o}"],
    inputs={"A.asm": source}, outputs=["A.o"], timeout=60,
)
print("run:", out.returncode, len(out.outputs["A.o"]), "bytes;", out.inputs["A.asm"])

# Two programs, the first's output FIFO relayed into the second's input.
result = ringpipe.pipeline(
    [
        ringpipe.Command(["sh", "-c", 'tr a-z A-Z < "$0" > "$1"', "{in:A.asm}", "{out:A.o}"],
                         inputs={"A.asm": source}, outputs=["A.o"]),
        ringpipe.Command(
            ["sh", "-c", 'exec 5>"$3" 4>"$2" 3>"$1"; tee /dev/fd/4 < "$0" >&3; echo syms >&5',
             "{in:A.o}", "{out:A.gb}", "{out:A.map}", "{out:A.sym}"],
            piped=["A.o"], outputs=["A.gb", "A.map", "A.sym"],
        ),
    ],
    timeout=60,
)
print("pipeline:", result.returncodes, {k: len(v) for k, v in result.outputs.items()},
      "link A.o:", result.links["A.o"])

# Streaming: write to a running program and read its answers as they come.
with ringpipe.start(["sh", "-c", 'exec sed -u s/ping/pong/ < "$0" > "$1"', "{in:q}", "{out:a}"],
                    inputs=["q"], outputs=["a"], framing="lines") as p:
    for i in range(3):
        p.inputs["q"].write(f"ping {i}")
        print("start:", p.outputs["a"].read(timeout=10).decode())
    p.inputs["q"].close(timeout=10)
    print("start: exit", p.wait(timeout=10))
