"""The runner over real HTTP: bounded concurrency, retries, error samples, circuit breaker, run folders."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from conftest import VALID_OUTPUT, run_async, write_task
from harness.backends.ollama import OllamaBackend
from harness.backends.openai_compat import OpenAICompatBackend
from harness.config import BackendConfig
from harness.evaluate import RunOptions, run_evaluation
from harness.results import MANIFEST, SAMPLES, SUMMARY, iter_samples, read_manifest
from harness.runner import CircuitBreaker, RetryPolicy, Runner, plan_jobs
from harness.tasks import load_tasks
from servers import Behaviour, closed_port_url, ollama_server, openai_server

FAST = RetryPolicy(max_retries=3, base_delay=0.005, max_delay=0.05)


def run_jobs(backend, tasks_dir: Path, *, concurrency: int = 2, policy: RetryPolicy = FAST,
             breaker: CircuitBreaker | None = None, repeat: int = 1, model: str = "test-model",
             notices: list[str] | None = None) -> tuple[list[dict], Runner]:
    tasks = load_tasks(tasks_dir)
    records: list[dict] = []
    runner = Runner(backend, {t.id: t for t in tasks}, records.append, concurrency=concurrency, policy=policy,
                    breaker=breaker, on_notice=(notices.append if notices is not None else (lambda m: None)))
    jobs = plan_jobs(tasks, backend.name, [model], ["free"], repeat=repeat)

    async def go() -> None:
        try:
            await runner.run(jobs)
        finally:
            await backend.aclose()

    run_async(go)
    return records, runner


def openai_backend(url: str) -> OpenAICompatBackend:
    return OpenAICompatBackend("oa", url + "/v1", timeout=10)


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrency_is_bounded_and_reached(tmp_path: Path, limit: int) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=4)
    with openai_server(Behaviour(outputs=[VALID_OUTPUT], delay_s=0.06)) as server:
        started = time.perf_counter()
        records, runner = run_jobs(openai_backend(server.url), tasks_dir, concurrency=limit, repeat=2)
        elapsed = time.perf_counter() - started
        assert server.calls == 8
        assert server.max_in_flight == limit  # never more, and the pool really is that wide
    assert runner.max_in_flight == limit
    assert len(records) == 8 and all(r["error"] is None for r in records)
    rounds = -(-8 // limit)
    assert elapsed >= rounds * 0.06 * 0.9


def test_concurrency_bounded_on_ollama_too(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=6)
    with ollama_server(Behaviour(outputs=[VALID_OUTPUT], delay_s=0.05)) as server:
        records, _ = run_jobs(OllamaBackend("ol", server.url), tasks_dir, concurrency=4, model="llama2")
        assert server.max_in_flight == 4
    assert all(r["score"]["raw"]["schema_valid"] for r in records)
    assert all(r["timing"]["load_s"] is not None for r in records)


def test_transient_errors_are_retried(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=1)
    with openai_server(Behaviour(outputs=[VALID_OUTPUT], statuses=[500, 500])) as server:
        records, _ = run_jobs(openai_backend(server.url), tasks_dir)
        assert server.calls == 3
    (record,) = records
    assert record["error"] is None
    assert record["attempts"] == 3
    assert record["output"] == VALID_OUTPUT
    assert record["score"]["raw"]["schema_valid"] is True


def test_retry_after_is_waited(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=1)
    with openai_server(Behaviour(outputs=[VALID_OUTPUT], statuses=[429], retry_after=0.3)) as server:
        started = time.perf_counter()
        records, _ = run_jobs(openai_backend(server.url), tasks_dir, policy=RetryPolicy(3, 0.001, max_delay=5.0))
        assert time.perf_counter() - started >= 0.28
        assert server.calls == 2
    assert records[0]["attempts"] == 2 and records[0]["error"] is None


def test_retries_are_bounded(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=1)
    with openai_server(Behaviour(statuses=[503] * 10)) as server:
        records, _ = run_jobs(openai_backend(server.url), tasks_dir, policy=RetryPolicy(2, 0.001, 0.01))
        assert server.calls == 3
    assert records[0]["error"]["status"] == 503 and records[0]["attempts"] == 3


def test_non_retryable_error_is_not_retried(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=1)
    with openai_server(Behaviour(statuses=[400])) as server:
        records, _ = run_jobs(openai_backend(server.url), tasks_dir)
        assert server.calls == 1
    (record,) = records
    assert record["attempts"] == 1
    assert record["error"]["kind"] == "http_status" and record["error"]["status"] == 400
    assert record["output"] is None and record["score"] is None


def test_a_failed_call_becomes_an_error_sample_and_the_run_continues(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=5)
    with openai_server(Behaviour(outputs=[VALID_OUTPUT], statuses=[200, 401])) as server:
        records, _ = run_jobs(openai_backend(server.url), tasks_dir, concurrency=1)
        assert server.calls == 5
    assert len(records) == 5
    errors = [r for r in records if r["error"]]
    assert len(errors) == 1 and errors[0]["error"]["status"] == 401
    assert sum(r["score"]["raw"]["schema_valid"] for r in records if not r["error"]) == 4


def test_circuit_breaker_opens_against_a_dead_port(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=20)
    notices: list[str] = []
    dead = closed_port_url()
    started = time.perf_counter()
    records, _ = run_jobs(OpenAICompatBackend("dead", dead + "/v1", timeout=5), tasks_dir, concurrency=1,
                          policy=RetryPolicy(0, 0.001, 0.01), breaker=CircuitBreaker(threshold=3, cooldown=60),
                          notices=notices)
    assert time.perf_counter() - started < 5
    kinds = [r["error"]["kind"] for r in records]
    assert kinds[:3] == ["connection"] * 3
    assert kinds[3:] == ["circuit_open"] * 17
    assert all(r["attempts"] == 0 for r in records[3:])
    assert dead in records[0]["error"]["message"]
    assert len(notices) == 1 and "dead" in notices[0]


def test_circuit_breaker_stops_calling_a_server_that_drops_connections(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=12)
    with openai_server(Behaviour(fault_rate=1.0, faults=("reset",))) as server:
        records, _ = run_jobs(openai_backend(server.url), tasks_dir, concurrency=1,
                              policy=RetryPolicy(1, 0.001, 0.01), breaker=CircuitBreaker(threshold=4, cooldown=60))
        assert server.calls == 4  # 2 jobs x 2 attempts, then the breaker is open
    assert [r["error"]["kind"] for r in records].count("circuit_open") == 10


def test_circuit_breaker_is_not_opened_by_http_errors(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=6)
    with openai_server(Behaviour(statuses=[400] * 6)) as server:
        records, _ = run_jobs(openai_backend(server.url), tasks_dir, concurrency=1,
                              breaker=CircuitBreaker(threshold=2, cooldown=60))
        assert server.calls == 6
    assert all(r["error"]["kind"] == "http_status" for r in records)


def test_circuit_breaker_lets_a_probe_through_after_cooldown() -> None:
    from harness.backends.base import BackendError

    breaker = CircuitBreaker(threshold=2, cooldown=0.05)
    down = BackendError("connection", "down")
    assert breaker.record(False, down) is False
    assert breaker.record(False, down) is True and not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow() is True and breaker.allow() is False  # exactly one probe per window
    breaker.record(True)
    assert breaker.allow() and breaker.failures == 0


def test_a_server_that_blips_mid_run_costs_a_pause_not_errors(tmp_path: Path) -> None:
    """Up, then dropping every connection for a moment, then up again: once the breaker is
    open the queued jobs wait for the probe instead of being written off as errors."""
    import threading

    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=12)
    behaviour = Behaviour(outputs=[VALID_OUTPUT])
    with openai_server(behaviour) as server:
        def blip() -> None:
            while server.calls < 2:
                time.sleep(0.005)
            behaviour.fault_rate, behaviour.faults = 1.0, ("reset",)
            time.sleep(0.6)
            behaviour.fault_rate = 0.0

        flipper = threading.Thread(target=blip, daemon=True)
        flipper.start()
        breaker = CircuitBreaker(threshold=3, cooldown=0.1, give_up_after=30)
        records, _ = run_jobs(openai_backend(server.url), tasks_dir, concurrency=1,
                              policy=RetryPolicy(0, 0.001, 0.01), breaker=breaker)
        flipper.join()
    kinds = [r["error"]["kind"] if r["error"] else "ok" for r in records]
    assert breaker.times_opened >= 1
    assert "circuit_open" not in kinds
    # Only the jobs that failed before the breaker opened are lost; failed probes keep their job.
    assert kinds.count("connection") == 2
    assert kinds.count("ok") == 10 and kinds[-1] == "ok"


def test_timeouts_do_not_open_the_breaker(tmp_path: Path) -> None:
    """A slow server is not a dead one: every job is still tried."""
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=5)
    with openai_server(Behaviour(outputs=[VALID_OUTPUT], delay_s=0.5)) as server:
        backend = OpenAICompatBackend("slow", server.url + "/v1", timeout=0.1)
        records, _ = run_jobs(backend, tasks_dir, concurrency=1, policy=RetryPolicy(0, 0.001, 0.01),
                              breaker=CircuitBreaker(threshold=2, cooldown=60))
        assert server.calls == 5
    assert [r["error"]["kind"] for r in records] == ["timeout"] * 5


def test_mixed_faults_every_job_recorded_once(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir, cases=10)
    behaviour = Behaviour(outputs=[VALID_OUTPUT], fault_rate=0.4, seed=7,
                          faults=("500", "429", "reset", "slow_drip", "garbage"))
    with openai_server(behaviour) as server:
        records, _ = run_jobs(openai_backend(server.url), tasks_dir, concurrency=3, repeat=2,
                              breaker=CircuitBreaker(threshold=100))
        assert server.max_in_flight <= 3
    keys = [r["key"] for r in records]
    assert len(keys) == 20 == len(set(keys))
    for record in records:
        if record["error"] is None:
            assert record["output"] == VALID_OUTPUT
        else:
            assert record["error"]["kind"] in ("http_status", "connection", "protocol")


def evaluate(tmp_path: Path, base_url: str, **overrides) -> Path:
    options = RunOptions(
        backend=BackendConfig(name="oa", kind="openai", base_url=base_url, models=["test-model"], timeout=10),
        tasks_dir=tmp_path / "tasks", results_root=tmp_path / "results", progress=False, **overrides)
    return run_async(run_evaluation(options, notice=lambda message: None))


def test_results_files_are_complete(tmp_path: Path) -> None:
    first = write_task(tmp_path / "tasks", "alpha", cases=3)
    write_task(tmp_path / "tasks", "beta", cases=2, output_format="content", extra="system: Wrap it in [CONTENT].\n")

    def answer(body: dict) -> str:  # the beta task (with a system prompt) asked for [CONTENT] tags
        wrapped = any(m["role"] == "system" for m in body["messages"])
        return f"[CONTENT]{VALID_OUTPUT}[/CONTENT]" if wrapped else VALID_OUTPUT

    behaviour = Behaviour(outputs=answer)
    with openai_server(behaviour, total_slots=2) as server:
        secret_url = f"http://user:hunter2pw@127.0.0.1:{server.port}/v1"
        run_dir = evaluate(tmp_path, secret_url, modes=["free", "constrained"], repeat=2)
        assert server.max_in_flight <= 2  # concurrency taken from llama.cpp's /props
    tasks = load_tasks(tmp_path / "tasks")
    planned = {j.key for j in plan_jobs(tasks, "oa", ["test-model"], ["free", "constrained"], repeat=2)}
    keys = [r["key"] for r in iter_samples(run_dir)]
    assert len(planned) == 20
    assert sorted(keys) == sorted(planned)  # every planned key, exactly once

    manifest = read_manifest(run_dir)
    assert manifest["status"] == "complete"
    assert manifest["backend"]["kind"] == "openai"
    assert manifest["backend"]["base_url"] == f"http://127.0.0.1:{server.port}/v1"
    assert "hunter2pw" not in (run_dir / MANIFEST).read_text()
    assert manifest["models"] == ["test-model"]
    assert manifest["model_identity"]["test-model"]["id"] == "test-model"
    assert manifest["concurrency"] == 2
    assert manifest["tasks"]["alpha"]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert set(manifest["tasks"]) == {"alpha", "beta"}
    assert manifest["tasks"]["beta"]["output_format"] == "content"

    summary = json.loads((run_dir / SUMMARY).read_text())
    overall = [g for g in summary["groups"] if g["task"] == "(all tasks)"]
    assert overall and overall[0]["samples"] == 20 and overall[0]["errors"] == 0
    assert overall[0]["raw_schema_valid_pct"] == 100.0
    # The fake server ignores constraints: its prose answers are booked as the server's, not the model's.
    assert overall[0]["constrained_samples"] + overall[0]["constraint_ignored"] == 10
    assert overall[0]["constraint_ignored"] == sum(
        1 for r in iter_samples(run_dir) if r["mode"] == "constrained" and not r["output"].lstrip().startswith("{"))
    assert overall[0]["constraint_ignored"] == 4  # beta's [CONTENT] answers under a constraint: 2 cases x 2
    assert any("ignored the constraint" in w for w in summary["warnings"])
    samples = [json.loads(line) for line in (run_dir / SAMPLES).read_text().splitlines()]
    assert all(s["backend_kind"] == "openai" for s in samples)


def test_resume_reruns_only_error_samples(tmp_path: Path) -> None:
    write_task(tmp_path / "tasks", cases=4)
    with openai_server(Behaviour(outputs=[VALID_OUTPUT], statuses=[400])) as server:
        run_dir = evaluate(tmp_path, server.url + "/v1", concurrency=1)
        first = list(iter_samples(run_dir))
        assert sum(1 for r in first if r["error"]) == 1
        server.reset_counters()
        evaluate(tmp_path, server.url + "/v1", concurrency=1, run_dir=run_dir)
        assert server.calls == 1  # only the failed sample was called again
    from harness.results import read_samples

    final = read_samples(run_dir)
    assert len(final) == 4 and all(r["error"] is None for r in final)
    assert read_manifest(run_dir)["status"] == "complete"


def test_generation_params_to_dict_covers_every_field() -> None:
    """to_dict is spelled out for speed; a field added later must not be silently dropped."""
    from dataclasses import fields

    from harness.models import GenerationParams

    names = [f.name for f in fields(GenerationParams)]
    assert GenerationParams(**{name: 1 for name in names}).to_dict() == {name: 1 for name in names}
    assert GenerationParams().to_dict() == {}
