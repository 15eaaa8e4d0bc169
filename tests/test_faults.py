"""Robust calls under fire: a fault-injecting server and hundreds of samples.

Everything goes over real HTTP to the fake servers in tests/servers.py; the
harness runs in-process through its own CLI entry point (no kill is involved).
Whatever the server does (500s, 429s, resets, slow drips, garbage, outputs of
megabytes), every planned sample must end up on disk exactly once, as an
output or as an error with a kind, and huge outputs must be capped.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import ALL_FAULTS, Behaviour, closed_port_url, ollama_server, openai_server  # noqa: E402

from harness.backends.base import DEFAULT_MAX_OUTPUT_BYTES  # noqa: E402
from harness.cli import main  # noqa: E402

ERROR_KINDS = {"connection", "timeout", "http_status", "protocol", "circuit_open", "internal"}


def write_task(folder: Path, cases: int, task_id: str = "tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "id": task_id,
        "description": "A tiny task for robustness tests.",
        "prompt": "Reply with the JSON object for number {{ n }}.",
        "output_format": "json",
        "schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "params": {"temperature": 0.0, "max_tokens": 32},
        "cases": [{"id": f"c{i:03d}", "vars": {"n": i}} for i in range(cases)],
    }
    (folder / f"{task_id}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def answer(body: dict) -> str:
    """The fake model: echo the case number back as a small JSON object."""
    content = body["messages"][-1]["content"]
    number = int(re.search(r"number (\d+)", content).group(1))
    return json.dumps({"n": number, "note": "ok"})


def planned_keys(task_id: str, cases: int, backend: str, model: str, repeat: int) -> set[str]:
    return {f"{task_id}/c{i:03d}/{backend}:{model}/free/{s}" for i in range(cases) for s in range(repeat)}


def sample_lines(run_dir: Path) -> list[dict]:
    """Every line of samples.jsonl, strictly: a torn or garbled line is a failure here."""
    text = (run_dir / "samples.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def only_run(results: Path) -> Path:
    runs = [p for p in results.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def check_accounting(run_dir: Path, expected: set[str]) -> list[dict]:
    records = sample_lines(run_dir)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), "a sample was written twice"
    assert set(keys) == expected, f"missing {len(expected - set(keys))}, unexpected {len(set(keys) - expected)}"
    for record in records:
        if record["error"]:
            assert record["error"]["kind"] in ERROR_KINDS, record["error"]
            assert record["error"]["message"]
            assert record["output"] is None
        else:
            assert isinstance(record["output"], str)
            assert record["score"] is not None
    return records


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_fault_storm_every_sample_accounted_once(tmp_path, capsys, kind):
    cases, repeat = (50, 10) if kind == "openai" else (20, 5)
    tasks = write_task(tmp_path / "tasks", cases)
    results = tmp_path / "results"
    behaviour = Behaviour(outputs=answer, chunk_delay_s=0.001, fault_rate=0.3, faults=ALL_FAULTS, seed=1234)
    factory, model = (openai_server, "test-model") if kind == "openai" else (ollama_server, "llama2:latest")
    started = time.monotonic()
    with factory(behaviour, models=(model,)) as server:
        base_url = server.url + "/v1" if kind == "openai" else server.url
        code = main(["run", "-b", kind, "--base-url", base_url, "-m", model, "--tasks-dir", str(tasks),
                     "--results", str(results), "--repeat", str(repeat), "-j", "8", "--retries", "2",
                     "--timeout", "5", "-f", "csv"])
        calls, max_in_flight = server.calls, server.max_in_flight
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 0, captured.err
    run_dir = only_run(results)
    records = check_accounting(run_dir, planned_keys("tiny", cases, kind, model, repeat))
    assert len(records) == cases * repeat
    assert max_in_flight <= 8

    ok = [r for r in records if not r["error"]]
    errors = [r for r in records if r["error"]]
    capped = [r for r in ok if r.get("capped")]
    # Faults happened, retries rescued most of them, and the rest are honest errors.
    assert calls > len(records), "no fault was injected (or retried)"
    assert len(ok) > 0.8 * len(records)
    assert any(r["attempts"] > 1 for r in ok), "no sample needed a retry"
    # The oversized fault (3 MiB of output) is capped, flagged and finishes as `length`.
    assert capped, "no oversized output was seen"
    for record in capped:
        assert record["finish_reason"] == "length"
        assert len(record["output"].encode("utf-8")) <= DEFAULT_MAX_OUTPUT_BYTES
        assert record["score"]["failure"] == "truncated"
    for record in ok:
        if not record.get("capped"):
            assert json.loads(record["output"])["n"] == int(record["case"][1:])
    for record in errors:
        assert record["error"]["kind"] in ERROR_KINDS
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert (run_dir / "summary.json").exists()
    assert elapsed < 60


def test_per_request_timeout_is_wall_clock(tmp_path, capsys):
    """A server that keeps dripping (every gap shorter than the timeout) is still cut off."""
    tasks = write_task(tmp_path / "tasks", 2)
    long_output = json.dumps({"n": 1, "words": " ".join(["w"] * 40)})
    behaviour = Behaviour(outputs=[long_output], chunk_delay_s=0.4)  # 16 pieces: ~6 s per answer
    with openai_server(behaviour) as server:
        started = time.monotonic()
        code = main(["run", "-b", "openai", "--base-url", server.url + "/v1", "-m", "test-model",
                     "--tasks-dir", str(tasks), "--results", str(tmp_path / "results"), "-j", "2",
                     "--retries", "0", "--timeout", "1", "-f", "csv"])
        elapsed = time.monotonic() - started
    assert code == 0, capsys.readouterr().err
    records = sample_lines(only_run(tmp_path / "results"))
    assert len(records) == 2
    assert all(r["error"] and r["error"]["kind"] == "timeout" for r in records), records
    assert "--timeout" in records[0]["error"]["message"]
    assert elapsed < 4.5


def test_retry_after_is_honoured(tmp_path, capsys):
    tasks = write_task(tmp_path / "tasks", 1)
    behaviour = Behaviour(outputs=answer, statuses=[429, 429], retry_after=0.6)
    with openai_server(behaviour) as server:
        started = time.monotonic()
        code = main(["run", "-b", "openai", "--base-url", server.url + "/v1", "-m", "test-model",
                     "--tasks-dir", str(tasks), "--results", str(tmp_path / "results"), "-j", "1",
                     "--retries", "3", "-f", "csv"])
        elapsed = time.monotonic() - started
        calls = server.calls
    assert code == 0, capsys.readouterr().err
    (record,) = sample_lines(only_run(tmp_path / "results"))
    assert record["error"] is None and record["attempts"] == 3 and calls == 3
    assert elapsed >= 1.2  # two waits of Retry-After: 0.6, not the (shorter) random backoff


def test_retries_give_up_with_the_status(tmp_path, capsys):
    tasks = write_task(tmp_path / "tasks", 1)
    behaviour = Behaviour(outputs=answer, statuses=[500, 500, 500], retry_after=None)
    with openai_server(behaviour) as server:
        code = main(["run", "-b", "openai", "--base-url", server.url + "/v1", "-m", "test-model",
                     "--tasks-dir", str(tasks), "--results", str(tmp_path / "results"), "-j", "1",
                     "--retries", "1", "-f", "csv"])
        calls = server.calls
    assert code == 0, capsys.readouterr().err
    (record,) = sample_lines(only_run(tmp_path / "results"))
    assert calls == 2 and record["attempts"] == 2
    assert record["error"]["kind"] == "http_status" and record["error"]["status"] == 500


def test_circuit_breaker_reports_once(tmp_path, capsys):
    tasks = write_task(tmp_path / "tasks", 40)
    code = main(["run", "-b", "openai", "--base-url", closed_port_url() + "/v1", "-m", "test-model",
                 "--tasks-dir", str(tasks), "--results", str(tmp_path / "results"), "-j", "4",
                 "--retries", "0", "-f", "csv"])
    err = capsys.readouterr().err
    assert code == 0, err
    records = check_accounting(only_run(tmp_path / "results"), planned_keys("tiny", 40, "openai", "test-model", 1))
    kinds = {r["error"]["kind"] for r in records}
    assert kinds <= {"connection", "circuit_open"} and "circuit_open" in kinds
    assert err.count("pausing calls") == 1, err
