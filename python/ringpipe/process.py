"""Programs whose inputs and outputs are FIFOs ("CLI programs as
functions"), in any opening order, without deadlock.

In arguments and environment values, ``{in:NAME}`` and ``{out:NAME}``
stand for the path of the FIFO called NAME, created in a private
directory for the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _native
from ._errors import ProcessError, RunTimeout
from ._native import Reader, Writer

__all__ = [
    "run",
    "pipeline",
    "start",
    "Command",
    "CompletedRun",
    "PipelineResult",
    "InputReport",
    "LinkReport",
    "Process",
]

Data = Union[bytes, bytearray, str]


@dataclass(frozen=True)
class InputReport:
    """How much of one input reached its program."""

    length: int
    #: Bytes the kernel accepted into the pipe: always a prefix of the input.
    accepted: int

    @property
    def unsent(self) -> int:
        """Bytes that never reached the pipe (the input's last ones)."""
        return self.length - self.accepted

    @property
    def complete(self) -> bool:
        return self.accepted == self.length


@dataclass(frozen=True)
class LinkReport:
    """How much of a pipeline link's stream reached its reader."""

    relayed: int
    #: The writer's EOF came after every byte was read: the reader got it all.
    complete: bool


@dataclass
class CompletedRun:
    """What :func:`run` returns, like ``subprocess.CompletedProcess``."""

    args: List[str]
    returncode: int
    outputs: Dict[str, bytes] = field(default_factory=dict)
    inputs: Dict[str, InputReport] = field(default_factory=dict)

    def check_returncode(self) -> None:
        if self.returncode:
            raise subprocess.CalledProcessError(self.returncode, self.args)


@dataclass
class Command:
    """One program of a :func:`pipeline`.

    ``outputs`` named in another command's ``piped`` are links: relayed
    from one program's FIFO into the other's in the kernel.
    """

    args: Sequence[str]
    inputs: Mapping[str, Data] = field(default_factory=dict)
    outputs: Iterable[str] = ()
    piped: Iterable[str] = ()
    env: Optional[Mapping[str, str]] = None
    cwd: Optional[str] = None


@dataclass
class PipelineResult:
    """What :func:`pipeline` returns."""

    args: List[List[str]]
    returncodes: List[int]
    outputs: Dict[str, bytes]
    inputs: Dict[str, InputReport]
    links: Dict[str, LinkReport]

    @property
    def success(self) -> bool:
        return all(code == 0 for code in self.returncodes)


def _bytes(data: Data) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def _spec(c: Command) -> Dict[str, Any]:
    return {
        "args": [os.fspath(a) for a in c.args],
        "inputs": {name: _bytes(d) for name, d in c.inputs.items()},
        "outputs": list(c.outputs),
        "piped": list(c.piped),
        "env": dict(c.env) if c.env is not None else None,
        "cwd": c.cwd,
    }


def _run(commands: List[Command], timeout: Optional[float]) -> Dict[str, Any]:
    return _native.run_programs([_spec(c) for c in commands], timeout)


def run(
    args: Sequence[str],
    *,
    inputs: Optional[Mapping[str, Data]] = None,
    outputs: Iterable[str] = (),
    timeout: Optional[float] = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    check: bool = False,
) -> CompletedRun:
    """Runs ``args`` with a FIFO per input and output, like
    ``subprocess.run``: feeds every input (any size), collects every
    output, and returns when the program has exited and every output is
    at EOF. The program may open its FIFOs in any order, blocking or not.

    ``env`` adds variables to the program's environment (placeholders
    work there too). A non-zero exit is no error unless ``check``
    (``subprocess.CalledProcessError``); past ``timeout`` seconds the
    program is killed and :class:`RunTimeout` raised, with what was
    collected in ``partial``.

    >>> run(["sh", "-c", 'tr a-z A-Z < "$0" > "$1"', "{in:text}", "{out:upper}"],
    ...     inputs={"text": b"hello"}, outputs=["upper"]).outputs["upper"]
    b'HELLO'
    """
    cmd = Command(args, inputs or {}, list(outputs), (), env, cwd)
    out = _run([cmd], timeout)
    codes = out["returncodes"]
    result = CompletedRun(
        list(map(os.fspath, args)),
        codes[0] if codes else -1,
        dict(out["outputs"]),
        {n: InputReport(*r) for n, r in out["inputs"].items()},
    )
    if out["timed_out"]:
        raise RunTimeout(result.args, timeout, result)
    if check:
        result.check_returncode()
    return result


def pipeline(
    commands: Sequence[Command], *, timeout: Optional[float] = None, check: bool = False
) -> PipelineResult:
    """Runs several programs together, one's output FIFO feeding another's
    input FIFO (the ``asm in -o mid``, then ``link mid -o out`` case):
    every open order is safe, the links are relayed in the kernel, and
    each program's exit code and each link's delivery are reported."""
    out = _run(list(commands), timeout)
    result = PipelineResult(
        [list(map(os.fspath, c.args)) for c in commands],
        list(out["returncodes"]),
        dict(out["outputs"]),
        {n: InputReport(*r) for n, r in out["inputs"].items()},
        {n: LinkReport(*r) for n, r in out["links"].items()},
    )
    if out["timed_out"]:
        raise RunTimeout(result.args, timeout, result)
    if check:
        for code, args in zip(result.returncodes, result.args):
            if code:
                raise subprocess.CalledProcessError(code, args)
    return result


_PLACEHOLDER = re.compile(r"\{(in|out):([^}]*)\}")


class Process:
    """A program started by :func:`start`: stream into its inputs
    (``inputs[name]``, a :class:`Writer`) and out of its outputs
    (``outputs[name]``, a :class:`Reader` that ends at the program's EOF)
    while it runs."""

    def __init__(
        self,
        args: Sequence[str],
        inputs: Iterable[str],
        outputs: Iterable[str],
        env: Optional[Mapping[str, str]],
        cwd: Optional[str],
        framing: Optional[str],
    ) -> None:
        self.dir = tempfile.mkdtemp(prefix="ringpipe-")
        self.inputs: Dict[str, Writer] = {}
        self.outputs: Dict[str, Reader] = {}
        try:
            paths = {}
            for kind, names in (("in", list(inputs)), ("out", list(outputs))):
                for name in names:
                    if not name or "/" in name or name in (".", "..") or "}" in name:
                        raise ProcessError(f"invalid FIFO name {name!r}")
                    path = paths[(kind, name)] = os.path.join(self.dir, name)
                    if kind == "out":
                        self.outputs[name] = Reader(path, framing=framing, persistent=False)
                    else:
                        self.inputs[name] = Writer(path, framing=framing)

            def fill(text: str) -> str:
                def one(m: "re.Match[str]") -> str:
                    key = (m.group(1), m.group(2))
                    if key not in paths:
                        raise ProcessError(f"{m.group(0)} in {text!r} names no declared FIFO")
                    return paths[key]

                return _PLACEHOLDER.sub(one, text)

            self.args = [fill(os.fspath(a)) for a in args]
            full_env = dict(os.environ)
            full_env.update({k: fill(v) for k, v in (env or {}).items()})
            self.popen = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd)
        except BaseException:
            self._cleanup()
            raise

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits for the program's exit (``subprocess.TimeoutExpired`` after
        ``timeout``); its outputs stay readable until their EOF."""
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def _cleanup(self) -> None:
        for w in self.inputs.values():
            w.close(timeout=0)
        for r in self.outputs.values():
            r.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        """Kills the program if it still runs and removes its FIFOs."""
        if hasattr(self, "popen"):
            self.kill()
        self._cleanup()

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def start(
    args: Sequence[str],
    *,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    framing: Optional[str] = None,
) -> Process:
    """Starts ``args`` with a FIFO per named input and output and returns
    at once: the streaming counterpart of :func:`run`. Every FIFO end of
    ours is open before the program starts, without blocking, so the
    program may open its files in any order. Close an input's writer to
    give the program EOF."""
    return Process(args, inputs, outputs, env, cwd, framing)
