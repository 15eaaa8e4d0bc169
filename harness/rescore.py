"""Re-score a stored run with today's scorer and repair code, calling no model.

Uses the schema and output format recorded in the run's manifest, so a task
file edited since the run does not silently change what the run is judged on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .results import SAMPLES, SUMMARY, RunFolderError, read_manifest, read_samples, resolve_run_dir, write_json
from .report import summarize
from .scoring import score_text, score_to_dict


def rescore_run(run: str | Path, repair: bool = True) -> tuple[Path, int]:
    """Rewrite every sample's score in place; return the folder and how many verdicts changed."""
    run_dir = resolve_run_dir(run)
    tasks = read_manifest(run_dir).get("tasks") or {}
    records = read_samples(run_dir)
    changed = 0
    for record in records:
        if record.get("output") is None:
            continue
        task = tasks.get(record["task"])
        if task is None:
            raise RunFolderError(f"{run_dir}: manifest has no schema for task {record['task']!r}")
        score = score_to_dict(score_text(record["output"], task["output_format"], task["schema"],
                                         record.get("finish_reason"), repair=repair,
                                         constrained=record.get("mode") == "constrained"))
        old = record.get("score") or {}
        verdict = lambda s: (s.get("raw", {}).get("schema_valid"), s.get("repaired", {}).get("schema_valid"))  # noqa: E731
        changed += verdict(old) != verdict(score)
        record["score"] = score
    tmp = run_dir / (SAMPLES + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, run_dir / SAMPLES)
    write_json(run_dir / SUMMARY, summarize(records))
    return run_dir, changed
