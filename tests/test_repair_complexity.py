"""The repair engine stays linear and bounded on pathological outputs.

Two measures: wall time with generous bounds (a 1 MB output in well under 2 s
on a slow CI machine), and a machine-independent count of the tokens our own
scanner walks, which must grow about linearly with the input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import harness.repair.deadline as deadline_module
import harness.repair.extract as extract_module
import harness.repair.lexer as lexer_module
import harness.repair.structure as structure_module
from harness.repair import repair_output

KB = 1024
SIZES = (10 * KB, 100 * KB, 1024 * KB)


def _valid_big(size: int) -> str:
    item = {"name": "x" * 40, "tags": ["a", "b"], "n": 1}
    count = max(1, size // len(json.dumps(item)))
    return json.dumps({"items": [item] * count})


PATHOLOGICAL: dict[str, Callable[[int], str]] = {
    "open_brackets": lambda n: "[" * n,
    "open_objects": lambda n: '{"a":' * (n // 5),
    "open_braces": lambda n: "{" * n,
    "closers": lambda n: "]" * n,
    "quotes": lambda n: '"' * n,
    "escaped_quotes": lambda n: 'a\\"' * (n // 3),
    "empty_pairs": lambda n: "[]" * (n // 2),
    "flat_list_unclosed": lambda n: "[" + "1," * (n // 2),
    "single_quoted_items": lambda n: "[" + "'x'," * (n // 4),
    "comments": lambda n: "{\n" + "// c\n" * (n // 5),
    "block_comments": lambda n: "/*" * (n // 2),
    "hashes": lambda n: "#\n" * (n // 2),
    "tags": lambda n: "[CONTENT]" * (n // 9),
    "fences": lambda n: "```\n" * (n // 4),
    "prose": lambda n: "word " * (n // 5),
    "prose_then_json": lambda n: "word " * (n // 5) + '{"a": [1, 2,],}',
    "stray_lines": lambda n: "{\n" + '"a": [1],\n],\n' * (n // 13) + "}",
    "unquoted_members": lambda n: "{" + "".join(f"a{i}: b, " for i in range(n // 8)),  # json_repair: quadratic
    "missing_commas": lambda n: "[" + '"x" ' * (n // 4) + "]",
    "truncated_valid": lambda n: _valid_big(n)[:-3],
    "valid_big": _valid_big,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_inputs_are_fast_and_never_raise(name: str) -> None:
    timings = []
    for size in SIZES:
        text = PATHOLOGICAL[name](size)
        start = time.perf_counter()
        outcome = repair_output(text, "json", None)
        timings.append(time.perf_counter() - start)
        assert outcome.ok or outcome.error
    assert timings[-1] < 5.0, (name, timings)  # generous: a loaded 2-core CI machine
    assert max(timings) < 5.0, (name, timings)


def test_deep_nesting_is_refused_not_crashing() -> None:
    for text in ("[" * 5000 + "]" * 4999, '{"a":' * 5000, "[{" * 3000):
        outcome = repair_output(text, "json", None)
        assert not outcome.ok and "nesting" in (outcome.error or "")


def test_huge_valid_output_still_parses() -> None:
    text = _valid_big(1024 * KB)
    outcome = repair_output(f"[CONTENT]\n{text}\n[/CONTENT]", "content", None)
    assert outcome.ok and outcome.repairs == []


class _Counter:
    """Counts the tokens our linear scanner yields: work measured without a clock."""

    def __init__(self) -> None:
        self.count = 0

    def wrap(self, tokens: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for token in tokens(*args, **kwargs):
                self.count += 1
                yield token

        return counted


# Inputs that never reach the token scanner (strict parse or tag scan settles them) are timed above.
SCANNED = sorted(set(PATHOLOGICAL) - {"quotes", "tags", "valid_big"})


@pytest.mark.parametrize("name", SCANNED)
def test_scanner_work_grows_linearly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens walked by our scanner for n and 10n characters (below the
    repair size cap): at most ~10x (+ slack), never quadratic."""
    counts = []
    for size in (5 * KB, 50 * KB):
        counter = _Counter()
        original = lexer_module.tokens
        monkeypatch.setattr(structure_module, "tokens", counter.wrap(original))
        monkeypatch.setattr(lexer_module, "tokens", counter.wrap(original))
        monkeypatch.setattr(extract_module, "find_value_end", lexer_module.find_value_end)
        repair_output(PATHOLOGICAL[name](size), "json", None)
        monkeypatch.undo()
        counts.append(counter.count)
    assert counts[0] > 0
    assert counts[1] <= 12 * counts[0] + 100, counts


def _spin() -> None:
    while True:
        pass


def test_deadline_interrupts_a_python_loop() -> None:
    spin = _spin
    start = time.perf_counter()
    with pytest.raises(deadline_module.DeadlineExceeded):
        deadline_module.call_with_deadline(spin, 0.05)
    assert time.perf_counter() - start < 1.0


def test_deadline_works_in_a_worker_thread_and_leaves_fast_calls_alone() -> None:
    import threading

    results: list[str] = []

    def worker() -> None:
        assert deadline_module.call_with_deadline(lambda: "fast", 0.05) == "fast"
        try:
            deadline_module.call_with_deadline(_spin, 0.05)
        except deadline_module.DeadlineExceeded:
            results.append("interrupted")
        time.sleep(0.1)  # a late exception would land here and kill the thread
        results.append("survived")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert results == ["interrupted", "survived"]


def test_quadratic_json_repair_input_is_cut_off() -> None:
    text = PATHOLOGICAL["unquoted_members"](100 * KB)
    start = time.perf_counter()
    outcome = repair_output(text, "json", None)
    assert time.perf_counter() - start < 5.0
    assert not outcome.ok and "gave up" in (outcome.error or "")


def test_one_watchdog_thread_serves_many_deadlines() -> None:
    """Thousands of fast calls must not start a thread each (that cost more than a repair)."""
    import threading

    before = threading.active_count()
    for _ in range(2000):
        assert deadline_module.call_with_deadline(lambda: 1, 0.5) == 1
    assert threading.active_count() <= before + 1


def test_short_deadline_after_a_long_one_still_fires_on_time() -> None:
    """A new deadline earlier than the watchdog's next look must wake it."""
    import threading

    outcome: list[float] = []

    def long_sleeper() -> None:
        deadline_module.call_with_deadline(lambda: time.sleep(0.6), 5.0)

    sleeper = threading.Thread(target=long_sleeper)
    sleeper.start()
    time.sleep(0.05)
    start = time.perf_counter()
    with pytest.raises(deadline_module.DeadlineExceeded):
        deadline_module.call_with_deadline(_spin, 0.05)
    outcome.append(time.perf_counter() - start)
    sleeper.join(5)
    assert outcome[0] < 0.2, outcome


def test_nested_deadlines_each_fire_for_their_own_call() -> None:
    def inner() -> str:
        try:
            deadline_module.call_with_deadline(_spin, 0.05)
        except deadline_module.DeadlineExceeded:
            return "inner cut"
        return "not cut"

    assert deadline_module.call_with_deadline(inner, 2.0) == "inner cut"
    with pytest.raises(deadline_module.DeadlineExceeded):
        deadline_module.call_with_deadline(lambda: deadline_module.call_with_deadline(_spin, 5.0), 0.05)


def _cut_in_child(queue: object) -> None:
    try:
        deadline_module.call_with_deadline(_spin, 0.05)
    except deadline_module.DeadlineExceeded:
        queue.put("cut")  # type: ignore[attr-defined]


def test_deadline_works_in_a_forked_child_of_a_process_that_used_it() -> None:
    import multiprocessing

    deadline_module.call_with_deadline(lambda: None, 0.5)  # the parent's watchdog is running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_cut_in_child, args=(queue,))
    child.start()
    child.join(5)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and queue.get(timeout=1) == "cut"
