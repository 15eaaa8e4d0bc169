"""Scoring in a second process, so that the client's core only moves bytes.

Why: scoring with repair is pure Python: ~40 µs for a valid answer, 0.3-1 ms for
a broken one, up to the 0.5 s json_repair deadline on a pathological one. On
the event loop that time comes out of the one core the HTTP client runs on, and
it stalls every stream in flight (their chunks are stamped late). Here answers
are handed to a child process without waiting (the runner goes on to its next
call); scores come back in batches and the runner writes each finished record
then. bench/client_overhead.py measures both ways.

The child is this module run as ``python -m harness.scorers``. It gets the
tasks' formats and schemas once, then length-prefixed pickles over its stdin:
(number, task id, text, finish reason, constrained); it answers (number, score,
error) over its stdout, one write per batch. It scores with the very function
inline scoring uses, so a record is the same either way (tests/test_scorers.py).
It ignores Ctrl-C (the terminal sends it to the whole process group; the parent
decides) and exits when its stdin closes, so it cannot outlive the parent.
If it dies, the parent scores what was waiting itself, with one notice.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .scoring import score_text, score_to_dict

_LENGTH = struct.Struct("<I")


def score_completion(output_format: str, schema: dict[str, Any] | None, text: str, finish_reason: str | None,
                     constrained: bool, repair: bool) -> dict[str, Any]:
    """The `score` field of a sample record."""
    return score_to_dict(score_text(text, output_format, schema, finish_reason, repair=repair,
                                    constrained=constrained))


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def _unframe(buffer: bytearray) -> list[Any]:
    """Every complete message at the start of `buffer`, removed from it."""
    messages = []
    start = 0
    while len(buffer) - start >= _LENGTH.size:
        (size,) = _LENGTH.unpack_from(buffer, start)
        end = start + _LENGTH.size + size
        if end > len(buffer):
            break
        messages.append(pickle.loads(buffer[start + _LENGTH.size:end]))
        start = end
    del buffer[:start]
    return messages


Scored = Callable[[int, "dict[str, Any] | None"], None]


class _ChildPipes(asyncio.SubprocessProtocol):
    def __init__(self, owner: "ScoringProcess"):
        self.owner = owner
        self.buffer = bytearray()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.buffer += data
            for number, score in _unframe(self.buffer):
                self.owner._settle(number, score)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.owner._lost()

    def process_exited(self) -> None:
        self.owner._lost()


class ScoringProcess:
    """A child process that scores answers handed to it with `submit`; each score (or None,
    when the child could not score it: the caller scores it itself) goes to `on_scored`."""

    def __init__(self, formats: dict[str, tuple[str, dict[str, Any] | None]], repair: bool, on_scored: Scored,
                 on_notice: Callable[[str], None] = lambda message: None):
        self.formats = formats
        self.repair = repair
        self.on_scored = on_scored
        self.on_notice = on_notice
        self.pending: set[int] = set()
        self.alive = False
        self._closing = False
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: Any = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_progress = time.monotonic()  # the last reply, or the first submit after an idle spell

    async def start(self) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._transport, _ = await asyncio.get_running_loop().subprocess_exec(
            lambda: _ChildPipes(self), sys.executable, "-m", "harness.scorers",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None, env=env)
        self._stdin = self._transport.get_pipe_transport(0)
        self._stdin.write(_frame((self.formats, self.repair)))
        self.alive = True

    def submit(self, number: int, task_id: str, text: str, finish_reason: str | None, constrained: bool) -> bool:
        """Hand one answer over without waiting; False if the child is gone (score it yourself)."""
        if not self.alive or self._stdin.is_closing():
            return False
        if not self.pending:
            self._last_progress = time.monotonic()
        self.pending.add(number)
        self._idle.clear()
        self._stdin.write(_frame((number, task_id, text, finish_reason, constrained)))
        return True

    def backlog(self) -> int:
        """Bytes handed over and not yet taken by the child (the caller waits when this grows)."""
        return self._stdin.get_write_buffer_size() if self.alive else 0

    def _settle(self, number: int, score: dict[str, Any] | None) -> None:
        self._last_progress = time.monotonic()
        if number in self.pending:
            self.pending.discard(number)
            if not self.pending:
                self._idle.set()
            self.on_scored(number, score)

    def _lost(self) -> None:
        """The child cannot answer any more: hand every waiting answer back, unscored."""
        if not self.alive:
            return
        self.alive = False
        if not self._closing:
            code = self._transport.get_returncode() if self._transport else None
            self.on_notice(f"the scoring process stopped (exit code {code}); scoring in this process from now on")
        for number in sorted(self.pending):
            self._settle(number, None)

    async def wait_idle(self, stall_s: float) -> bool:
        """Until every answer handed over has been scored (or handed back): True. False when the
        child has answered nothing for `stall_s` seconds while answers wait (stopped, swapped out,
        stuck): then the caller should `abandon` it and score what waits itself."""
        while not self._idle.is_set():
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=min(1.0, stall_s))
            except TimeoutError:
                if time.monotonic() - self._last_progress >= stall_s:
                    return False
        return True

    def abandon(self) -> None:
        """Stop the child now, dropping what it still holds (the caller has scored it itself)."""
        self.alive = False
        self._closing = True
        self.pending.clear()
        self._idle.set()
        if self._transport is not None:
            self._stdin.close()
            self._transport.close()  # kills the child if it has not exited yet
            self._transport = None

    async def aclose(self) -> None:
        """Close the child's input (it exits at once) and reap it; kill it if it hangs.
        Answers still waiting are handed back unscored, so the caller can score them."""
        if self._transport is None:
            return
        self._closing = True
        transport, self._transport = self._transport, None
        self._stdin.close()
        for _ in range(250):
            if transport.get_returncode() is not None:
                break
            await asyncio.sleep(0.02)
        else:
            transport.kill()
        self._lost()
        transport.close()


def _serve() -> None:
    """The child: read what has arrived, score it in order, send the scores in one write."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print anywhere in scoring must not corrupt the replies
    buffer = bytearray()
    formats: dict[str, tuple[str, Any]] | None = None
    repair = True
    while data := os.read(0, 1 << 20):
        buffer += data
        replies = []
        for message in _unframe(buffer):
            if formats is None:
                formats, repair = message
                continue
            number, task_id, text, finish_reason, constrained = message
            try:
                output_format, schema = formats[task_id]
                score: dict[str, Any] | None = score_completion(output_format, schema, text, finish_reason,
                                                                constrained, repair)
            except Exception:  # noqa: BLE001 - the parent scores this one itself, and sees the error
                score = None
            replies.append(_frame((number, score)))
        if replies:
            out = memoryview(b"".join(replies))
            while out:
                out = out[os.write(replies_fd, out):]


if __name__ == "__main__":
    _serve()
