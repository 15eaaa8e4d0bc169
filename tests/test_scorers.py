"""Scoring in a child process: the same records as scoring inline, and nothing lost when the
child dies, the run is cancelled, or the disk refuses a record."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from conftest import VALID_OUTPUT, write_task
from harness.backends.openai_compat import OpenAICompatBackend
from harness.config import BackendConfig
from harness.evaluate import RunOptions, run_evaluation
from harness.results import iter_samples
from harness.runner import RetryPolicy, Runner, plan_jobs
from harness.tasks import load_tasks
from servers import Behaviour, openai_server

# Valid, repairable in different ways, and hopeless: every scoring branch.
OUTPUTS = [
    VALID_OUTPUT,
    '{"name": "apple", "qty": 3,}',
    "Sure! {'name': 'apple', 'qty': 3}",
    '{"Name": "apple", "QTY": "3"',
    "no json at all",
    '```json\n{"name": "apple", // a comment\n "qty": 3}\n```',
]


def _records(run_dir: Path) -> dict[str, dict]:
    return {r["key"]: r for r in iter_samples(run_dir)}


def _options(tmp_path: Path, url: str, scoring: str, name: str, **extra) -> RunOptions:
    config = BackendConfig(name="oa", kind="openai", base_url=url + "/v1", models=["m"])
    return RunOptions(backend=config, tasks_dir=tmp_path / "tasks", repeat=3, concurrency=4,
                      results_root=tmp_path / name, progress=False, scoring=scoring, modes=["free", "constrained"],
                      **extra)


def test_process_scoring_writes_the_records_inline_scoring_writes(tmp_path: Path, monkeypatch) -> None:
    from harness import scorers
    from harness.scorers import score_completion

    handed_over: list[int] = []
    submit = scorers.ScoringProcess.submit
    monkeypatch.setattr(scorers.ScoringProcess, "submit",
                        lambda self, number, *args: handed_over.append(number) or submit(self, number, *args))
    write_task(tmp_path / "tasks", cases=4)
    task = load_tasks(tmp_path / "tasks")[0]
    with openai_server(Behaviour(outputs=OUTPUTS)) as server:
        run_dir = asyncio.run(run_evaluation(_options(tmp_path, server.url, "process", "b"), notice=lambda m: None))
    records = _records(run_dir)
    assert len(records) == 4 * 3 * 2 and len(handed_over) == len(records)
    for record in records.values():
        inline = score_completion(task.output_format, task.schema, record["output"], record["finish_reason"],
                                  record["mode"] == "constrained", True)
        assert record["score"] == inline, record["key"]
    kinds = {k for r in records.values() for k in r["score"]["repaired"]["repairs_applied"]}
    assert {"trailing_commas", "single_quotes", "key_case"} <= kinds  # the child really repaired
    assert any(not r["score"]["repaired"]["parse_ok"] for r in records.values())


def _runner(tmp_path: Path, url: str, records: list, notices: list, repeat: int = 10):
    tasks = load_tasks(tmp_path / "tasks")
    backend = OpenAICompatBackend("oa", url + "/v1", timeout=10)
    runner = Runner(backend, {t.id: t for t in tasks}, records.append, concurrency=4,
                    policy=RetryPolicy(max_retries=1, base_delay=0.001, max_delay=0.01),
                    score_in_process=True, on_notice=notices.append)
    return runner, backend, plan_jobs(tasks, "oa", ["m"], ["free"], repeat=repeat)


def test_a_scoring_process_that_dies_loses_nothing(tmp_path: Path) -> None:
    write_task(tmp_path / "tasks", cases=3)
    records: list[dict] = []
    notices: list[str] = []
    with openai_server(Behaviour(outputs=OUTPUTS, delay_s=0.01)) as server:
        runner, backend, jobs = _runner(tmp_path, server.url, records, notices)

        async def go() -> None:
            async def kill_the_child() -> None:
                while runner.scoring is None or runner._numbers < 5:
                    await asyncio.sleep(0.005)
                os.kill(runner.scoring._transport.get_pid(), signal.SIGKILL)

            killer = asyncio.create_task(kill_the_child())
            try:
                await runner.run(jobs)
            finally:
                await killer
                await backend.aclose()

        asyncio.run(go())
    assert len(records) == 30 and len({r["key"] for r in records}) == 30
    assert all(r["score"] is not None for r in records)
    assert any("scoring process stopped" in n for n in notices)


def test_a_cancelled_run_records_every_finished_answer_with_its_score(tmp_path: Path) -> None:
    """The child is frozen early, so that when the run's deadline comes most answers are still
    waiting for a score: each must be scored here and recorded, none dropped with the child."""
    write_task(tmp_path / "tasks", cases=3)
    records: list[dict] = []
    with openai_server(Behaviour(outputs=OUTPUTS, delay_s=0.02)) as server:
        runner, backend, jobs = _runner(tmp_path, server.url, records, [], repeat=100)

        async def go() -> None:
            async def freeze_the_child() -> None:
                while runner.scoring is None or runner._numbers < 3:
                    await asyncio.sleep(0.002)
                os.kill(runner.scoring._transport.get_pid(), signal.SIGSTOP)

            freezer = asyncio.create_task(freeze_the_child())
            try:
                await runner.run(jobs, deadline_s=0.5)
            finally:
                await freezer
                await backend.aclose()

        with pytest.raises(TimeoutError):
            asyncio.run(go())
        answered = server.calls
    assert all(r["score"] is not None for r in records)
    # Every answer the server finished is on record (the ones cut mid-call are not answers).
    assert answered >= 12 and answered - 4 <= len(records) <= answered
    assert runner.scoring is None


def test_a_frozen_scoring_process_is_given_up_on_and_the_run_still_ends(tmp_path: Path) -> None:
    write_task(tmp_path / "tasks", cases=3)
    records: list[dict] = []
    notices: list[str] = []
    with openai_server(Behaviour(outputs=OUTPUTS)) as server:
        runner, backend, jobs = _runner(tmp_path, server.url, records, notices, repeat=30)
        runner.scoring_stall_s = 0.3

        async def go() -> None:
            async def freeze_the_child() -> None:
                while runner.scoring is None:
                    await asyncio.sleep(0.001)
                os.kill(runner.scoring._transport.get_pid(), signal.SIGSTOP)

            freezer = asyncio.create_task(freeze_the_child())
            try:
                await asyncio.wait_for(runner.run(jobs), 30)
            finally:
                await freezer
                await backend.aclose()

        asyncio.run(go())
    assert len(records) == 90 and all(r["score"] is not None for r in records)
    assert any("answered nothing" in n for n in notices)


def test_a_sink_error_fails_the_run_instead_of_vanishing_in_a_callback(tmp_path: Path) -> None:
    write_task(tmp_path / "tasks", cases=3)

    def full_disk(record: dict) -> None:
        raise OSError(28, "No space left on device")

    with openai_server(Behaviour(outputs=OUTPUTS)) as server:
        tasks = load_tasks(tmp_path / "tasks")
        backend = OpenAICompatBackend("oa", server.url + "/v1", timeout=10)
        runner = Runner(backend, {t.id: t for t in tasks}, full_disk, concurrency=2, score_in_process=True)

        async def go() -> None:
            try:
                await runner.run(plan_jobs(tasks, "oa", ["m"], ["free"], repeat=5))
            finally:
                await backend.aclose()

        with pytest.raises(OSError, match="No space left"):
            asyncio.run(go())


def test_the_child_is_gone_after_the_run(tmp_path: Path) -> None:
    write_task(tmp_path / "tasks", cases=2)
    records: list[dict] = []
    with openai_server(Behaviour(outputs=OUTPUTS)) as server:
        runner, backend, jobs = _runner(tmp_path, server.url, records, [], repeat=2)
        pids: list[int] = []

        async def go() -> None:
            original = runner._start_scoring

            async def start() -> None:
                await original()
                pids.append(runner.scoring._transport.get_pid())

            runner._start_scoring = start  # type: ignore[method-assign]
            try:
                await runner.run(jobs)
            finally:
                await backend.aclose()

        asyncio.run(go())
    assert len(records) == 4 and pids
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # exited and reaped
