"""Aggregate sample records into per-model x per-task metrics.

Works on plain record dicts read from `samples.jsonl`, so every report,
compare and gate sees exactly what was stored. Free-generation samples give
the raw and repaired columns; constrained samples give the constrained column,
so one table shows all three on the same cases.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..stats import percentile

OVERALL = "(all tasks)"


def model_label(record: dict[str, Any]) -> str:
    return f"{record['backend']}:{record['model']}"


@dataclass
class GroupMetrics:
    """Counts and timings of one (model, task) group; rates are derived on demand."""

    model: str
    task: str
    samples: int = 0
    errors: int = 0
    free: int = 0
    raw_parse: int = 0
    raw_valid: int = 0
    repaired_parse: int = 0
    repaired_valid: int = 0
    rescued: int = 0
    broken: int = 0
    constrained: int = 0
    constrained_valid: int = 0
    constraint_ignored: int = 0
    cached: int = 0
    # Kept whole for exact percentiles, as packed doubles (8 bytes a value, not ~32 as a list of
    # floats): a 50,000-sample run costs under 3 MB here (bench/memory.py).
    latencies: array = field(default_factory=lambda: array("d"))
    ttfts: array = field(default_factory=lambda: array("d"))
    tokens_per_s: array = field(default_factory=lambda: array("d"))
    failures: Counter = field(default_factory=Counter)
    repairs_fired: Counter = field(default_factory=Counter)
    repairs_decisive: Counter = field(default_factory=Counter)
    failing_paths: Counter = field(default_factory=Counter)

    def add(self, record: dict[str, Any]) -> None:
        self.samples += 1
        if record.get("error"):
            self.errors += 1
            self.failures["backend_error"] += 1
            return
        timing = record.get("timing") or {}
        if record.get("cached"):
            self.cached += 1
        else:
            if timing.get("total_s") is not None:
                self.latencies.append(timing["total_s"])
            if timing.get("ttft_s") is not None:
                self.ttfts.append(timing["ttft_s"])
            if timing.get("tokens_per_s"):
                self.tokens_per_s.append(timing["tokens_per_s"])
        score = record.get("score") or {}
        raw, repaired = score.get("raw") or {}, score.get("repaired") or {}
        if record.get("mode") == "constrained":
            if score.get("constraint_ignored"):
                # The server dropped the constraint: not the model's failure, so not in its rate.
                self.constraint_ignored += 1
                return
            self.constrained += 1
            self.constrained_valid += bool(raw.get("schema_valid"))
            return
        self.free += 1
        self.raw_parse += bool(raw.get("parse_ok"))
        self.raw_valid += bool(raw.get("schema_valid"))
        self.repaired_parse += bool(repaired.get("parse_ok"))
        self.repaired_valid += bool(repaired.get("schema_valid"))
        if score.get("failure"):
            self.failures[score["failure"]] += 1
        rescued = not raw.get("schema_valid") and repaired.get("schema_valid")
        self.rescued += bool(rescued)
        self.broken += bool(raw.get("schema_valid") and not repaired.get("schema_valid"))
        kinds = repaired.get("repairs_applied") or []
        self.repairs_fired.update(kinds)
        if rescued:
            # The last repair in the pipeline order is the one that made it valid.
            if kinds:
                self.repairs_decisive[kinds[-1]] += 1
        for violation in (repaired.get("violations") or raw.get("violations") or [])[:5]:
            self.failing_paths[violation.get("path", "$")] += 1

    def rate(self, count: int, of: int | None = None) -> float | None:
        denominator = self.free if of is None else of
        return 100.0 * count / denominator if denominator else None

    def summary(self) -> dict[str, Any]:
        """The numbers every renderer shows, as plain JSON."""
        return {
            "model": self.model,
            "task": self.task,
            "samples": self.samples,
            "errors": self.errors,
            "free_samples": self.free,
            "raw_parse_pct": self.rate(self.raw_parse),
            "raw_schema_valid_pct": self.rate(self.raw_valid),
            "repaired_parse_pct": self.rate(self.repaired_parse),
            "repaired_schema_valid_pct": self.rate(self.repaired_valid),
            "rescued": self.rescued,
            "broken_by_repair": self.broken,
            "constrained_samples": self.constrained,
            "constraint_ignored": self.constraint_ignored,
            "constrained_schema_valid_pct": self.rate(self.constrained_valid, self.constrained),
            "cached": self.cached,
            "latency_p50_s": percentile(self.latencies, 50),
            "latency_p95_s": percentile(self.latencies, 95),
            "ttft_p50_s": percentile(self.ttfts, 50),
            "tokens_per_s_p50": percentile(self.tokens_per_s, 50),
            "failures": dict(self.failures),
            "repairs_fired": dict(self.repairs_fired),
            "repairs_decisive": dict(self.repairs_decisive),
            "top_failing_paths": self.failing_paths.most_common(5),
        }


def aggregate(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], GroupMetrics]:
    """Group records by (model, task) and add an overall row per model."""
    groups: dict[tuple[str, str], GroupMetrics] = {}
    for record in records:
        label = model_label(record)
        for key in ((label, record["task"]), (label, OVERALL)):
            if key not in groups:
                groups[key] = GroupMetrics(*key)
            groups[key].add(record)
    return dict(sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] == OVERALL, item[0][1])))


def constraint_warnings(groups: dict[tuple[str, str], GroupMetrics]) -> list[str]:
    """Backends that silently ignored a constrained-decoding request.

    Those samples are left out of the constrained rate (see `constraint_ignored`
    in scoring) and named here, so a server's failure is not booked as the model's.
    """
    warnings = []
    for (model, task), group in groups.items():
        if task != OVERALL or not group.constraint_ignored:
            continue
        total = group.constraint_ignored + group.constrained
        warnings.append(
            f"{model}: {group.constraint_ignored} of {total} constrained outputs did not start as the schema "
            "requires; the server ignored the constraint (check its response_format / format support). "
            "They are left out of the constrained column."
        )
    return warnings


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    groups = aggregate(records)
    return {
        "groups": [g.summary() for g in groups.values()],
        "warnings": constraint_warnings(groups),
    }
