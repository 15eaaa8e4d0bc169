"""Synthetic run folders for report tests: manifest.json + samples.jsonl in the
exact shapes harness.evaluate / harness.runner.sample_record write, without a model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

DEFAULT_BACKEND = "fake"


def record(
    task: str,
    case: str,
    *,
    model: str = "m1",
    backend: str = DEFAULT_BACKEND,
    mode: str = "free",
    sample: int = 0,
    raw_valid: bool = True,
    repaired_valid: bool | None = None,
    raw_parse: bool | None = None,
    failure: str | None = None,
    output: str | None = None,
    violations: list[dict[str, str]] | None = None,
    repairs: list[str] | None = None,
    latency: float = 1.0,
    tokens_per_s: float | None = 50.0,
    error: dict[str, Any] | None = None,
    cached: bool = False,
) -> dict[str, Any]:
    """One samples.jsonl line. Defaults: a raw-valid free sample that took 1 s."""
    key = f"{task}/{case}/{backend}:{model}/{mode}/{sample}"
    base: dict[str, Any] = {
        "key": key, "task": task, "case": case, "backend": backend, "backend_kind": "openai", "model": model,
        "mode": mode, "sample": sample, "output_format": "json", "params": {"temperature": 0.0},
        "finished_at": "2025-01-01T00:00:00.000+00:00", "attempts": 1, "cached": cached,
    }
    if error is not None:
        base.update(output=None, finish_reason=None, timing=None, error=error, score=None)
        return base
    if repaired_valid is None:
        repaired_valid = raw_valid
    if raw_parse is None:
        raw_parse = raw_valid or failure in (None, "schema_invalid")
    if not raw_valid and failure is None:
        failure = "schema_invalid" if raw_parse else "not_json"
    if violations is None:
        violations = [] if raw_valid else [{"path": "$.total", "message": "'total' is a required property",
                                             "rule": "required"}]
    repaired_violations = [] if repaired_valid else violations
    repairs = repairs if repairs is not None else ([] if raw_valid else ["strip_prose"])
    if output is None:
        output = '{"total": 1}' if raw_valid else ('{"amount": 1}' if raw_parse else 'Sure! {"amount": 1}')
    base.update(
        output=output,
        finish_reason="stop",
        capped=False,
        timing={"total_s": latency, "ttft_s": latency / 10, "prompt_tokens": 100, "output_tokens": 40,
                "tokens_per_s": tokens_per_s, "load_s": None, "server": {}},
        server_model=model,
        error=None,
        score={
            "raw": {"parse_ok": raw_parse, "schema_valid": raw_valid, "parse_error": None if raw_parse else "x",
                    "violations": violations if raw_parse else []},
            "repaired": {"parse_ok": repaired_valid or raw_parse, "schema_valid": repaired_valid, "parse_error": None,
                         "violations": repaired_violations, "repairs_applied": [] if raw_valid else repairs,
                         "text": None if raw_valid else '{"total": 1}'},
            "failure": None if raw_valid else failure,
        },
    )
    return base


def manifest(
    run_id: str,
    tasks: dict[str, int],
    *,
    models: Iterable[str] = ("m1",),
    backend: str = DEFAULT_BACKEND,
    modes: Iterable[str] = ("free",),
    repeat: int = 1,
    params_override: dict[str, Any] | None = None,
    task_params: dict[str, dict[str, Any]] | None = None,
    sha: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A manifest.json like harness.evaluate writes (only the fields reports read, plus a few)."""
    sha = sha or {}
    task_params = task_params or {}
    return {
        "run_id": run_id,
        "harness_version": "0.1.0",
        "created_at": "2025-01-01T00:00:00+00:00",
        "status": "complete",
        "backend": {"name": backend, "kind": "openai", "base_url": "http://127.0.0.1:8000/v1"},
        "models": list(models),
        "model_identity": {},
        "concurrency": 4,
        "options": {
            "backend_config": {"name": backend, "kind": "openai", "models": list(models)},
            "tasks_dir": "tasks", "task_filter": None, "modes": list(modes), "repeat": repeat, "limit": None,
            "params_override": params_override or {}, "repair": True,
        },
        "tasks": {
            t: {"path": f"tasks/{t}.yaml", "sha256": sha.get(t) or hashlib.sha256(t.encode()).hexdigest(),
                "output_format": "json", "cases": n, "schema": {"type": "object"},
                "params": task_params.get(t, {"temperature": 0.0})}
            for t, n in tasks.items()
        },
    }


def write_run(root: Path, run_id: str, records: list[dict[str, Any]], manifest_data: dict[str, Any] | None) -> Path:
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if manifest_data is not None:
        (run_dir / "manifest.json").write_text(json.dumps(manifest_data, indent=2), encoding="utf-8")
    with (run_dir / "samples.jsonl").open("w", encoding="utf-8") as handle:
        for rec in records:
            handle.write(json.dumps(rec) + "\n")
    return run_dir


def make_run(
    root: Path,
    run_id: str,
    tasks: dict[str, int] | None = None,
    *,
    valid: dict[str, int] | None = None,
    raw_valid: dict[str, int] | None = None,
    latency: float | Callable[[str, int], float] = 1.0,
    model: str = "m1",
    modes: Iterable[str] = ("free",),
    constrained_valid: dict[str, int] | None = None,
    errors: dict[str, int] | None = None,
    repeat: int = 1,
    **manifest_kwargs: Any,
) -> Path:
    """A run with `tasks[t]` cases per task; in free mode the first `valid[t]` cases are
    (repaired-)schema-valid, the first `raw_valid[t]` of those raw-valid; the last
    `errors[t]` cases are backend errors. Cases are named c000.. so runs pair up."""
    tasks = tasks or {"invoice": 40}
    valid = valid or {}
    raw_valid = raw_valid if raw_valid is not None else valid
    constrained_valid = constrained_valid or {}
    errors = errors or {}
    modes = list(modes)
    records = []
    for task, n in tasks.items():
        for i in range(n):
            for mode in modes:
                for s in range(repeat):
                    lat = latency(task, i) if callable(latency) else latency
                    if i >= n - errors.get(task, 0):
                        records.append(record(task, f"c{i:03d}", model=model, mode=mode, sample=s,
                                              error={"kind": "timeout", "message": "timed out", "status": None}))
                        continue
                    if mode == "constrained":
                        ok = i < constrained_valid.get(task, n)
                        records.append(record(task, f"c{i:03d}", model=model, mode=mode, sample=s, raw_valid=ok,
                                              latency=lat))
                        continue
                    rep_ok = i < valid.get(task, n)
                    raw_ok = rep_ok and i < raw_valid.get(task, n)
                    records.append(record(task, f"c{i:03d}", model=model, mode=mode, sample=s, raw_valid=raw_ok,
                                          repaired_valid=rep_ok, latency=lat))
    data = manifest(run_id, tasks, models=[model], modes=modes, repeat=repeat, **manifest_kwargs)
    return write_run(root, run_id, records, data)
