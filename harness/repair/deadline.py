"""A wall-clock deadline for a pure-Python call, in any thread.

Why: json_repair is pure Python and, on some inputs, quadratic: an object of
unquoted members (``{a1: b, a2: b, ...}``) makes it scan to the end of the
text once per member, so 16 KB take over a second and 256 KB take minutes.
Input caps alone cannot bound that, and we cannot know all such inputs in
advance.  So the call gets a deadline: a watchdog thread raises
`DeadlineExceeded` *inside* the calling thread (CPython's
``PyThreadState_SetAsyncExc``), which interrupts the Python loop at its next
bytecode.  Works in worker threads, where ``signal.alarm`` does not.  Where the
C API is missing (not CPython) the call simply runs without a deadline.

One long-lived watchdog serves every call: starting a timer thread per call
cost ~140 µs, more than a typical repair itself (bench/client_overhead.py).
Arming the watchdog is a dict insert under a lock; it is only woken when a new
deadline falls before the moment it already planned to look.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(BaseException):
    """Raised inside the call when its time is up.

    A BaseException so that ``except Exception`` inside the called library
    cannot swallow it."""


def _set_async_exc() -> Callable[[int, type[BaseException]], int] | None:
    try:
        api = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except AttributeError:
        return None
    api.argtypes = (ctypes.c_ulong, ctypes.py_object)
    api.restype = ctypes.c_int
    return api  # type: ignore[no-any-return]


_SET_ASYNC_EXC = _set_async_exc()


class _Watchdog:
    """One daemon thread that fires the deadlines of every armed call.

    Idle, it looks every `IDLE_TICK` seconds, so arming a call whose deadline is
    later than that wakes nobody; after `IDLE_EXIT` seconds without calls the
    thread ends, and the next call starts a new one."""

    IDLE_TICK = 0.25
    IDLE_EXIT = 30.0

    def __init__(self, fire: Callable[[int, type[BaseException]], int]):
        self._fire = fire
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._armed: dict[object, tuple[float, int]] = {}  # token -> (deadline, thread id)
        self._next_look = 0.0  # when the watchdog will look next, if not woken
        self._running = False

    def arm(self, seconds: float) -> object:
        token = object()
        deadline = time.monotonic() + seconds
        with self._lock:
            self._armed[token] = (deadline, threading.get_ident())
            if not self._running:
                self._running = True
                self._next_look = deadline
                threading.Thread(target=self._loop, name="harness-deadline", daemon=True).start()
            elif deadline < self._next_look:
                self._next_look = deadline
                self._wake.notify()
        return token

    def disarm(self, token: object) -> None:
        """After this returns no exception can be sent for `token`; one sent just before is
        delivered to the caller at its next bytecode, at the latest inside its `finally`."""
        with self._lock:
            self._armed.pop(token, None)

    def _loop(self) -> None:
        idle_since = time.monotonic()
        with self._lock:
            while True:
                now = time.monotonic()
                for token, (deadline, thread) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[token]
                        self._fire(thread, DeadlineExceeded)
                if self._armed:
                    idle_since = now
                    self._next_look = min(deadline for deadline, _ in self._armed.values())
                elif now - idle_since >= self.IDLE_EXIT:
                    self._running = False
                    return
                else:
                    self._next_look = now + self.IDLE_TICK
                self._wake.wait(max(0.0, self._next_look - now))


    def _after_fork(self) -> None:
        """A forked child has none of the parent's threads: start afresh."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._armed = {}
        self._running = False


_WATCHDOG = _Watchdog(_SET_ASYNC_EXC) if _SET_ASYNC_EXC is not None else None
if _WATCHDOG is not None and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WATCHDOG._after_fork)


def call_with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """Return ``fn()``, or raise DeadlineExceeded once ``seconds`` have passed."""
    if _WATCHDOG is None:
        return fn()
    token = _WATCHDOG.arm(seconds)
    try:
        return fn()
    finally:
        _WATCHDOG.disarm(token)
