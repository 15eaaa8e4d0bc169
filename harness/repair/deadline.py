"""A wall-clock deadline for a pure-Python call, in any thread.

Why: json_repair is pure Python and, on some inputs, quadratic: an object of
unquoted members (``{a1: b, a2: b, ...}``) makes it scan to the end of the
text once per member, so 16 KB take over a second and 256 KB take minutes.
Input caps alone cannot bound that, and we cannot know all such inputs in
advance.  So the call gets a deadline: a timer thread raises `DeadlineExceeded`
*inside* the calling thread (CPython's ``PyThreadState_SetAsyncExc``), which
interrupts the Python loop at its next bytecode.  Works in worker threads,
where ``signal.alarm`` does not.  Where the C API is missing (not CPython) the
call simply runs without a deadline.
"""

from __future__ import annotations

import ctypes
import threading
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


def call_with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """Return ``fn()``, or raise DeadlineExceeded once ``seconds`` have passed."""
    if _SET_ASYNC_EXC is None:
        return fn()
    target = threading.get_ident()
    lock = threading.Lock()
    finished = False

    def fire() -> None:
        with lock:
            if not finished:
                _SET_ASYNC_EXC(target, DeadlineExceeded)  # type: ignore[misc]

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        return fn()
    finally:
        # Once `finished` is set under the lock no exception can be sent; one
        # sent just before is delivered here, inside this try, at the latest.
        with lock:
            finished = True
        timer.cancel()
