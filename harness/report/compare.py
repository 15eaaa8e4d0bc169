"""`harness compare RUN_A RUN_B ...`: runs side by side, with deltas and 95% intervals.

The first run is the reference. For every later run, each rate is shown as a
delta in percentage points with a 95% interval (Newcombe's hybrid score
interval, built from Wilson intervals, treating the runs as independent), and,
where the two runs share samples - same task, case, mode and sample index,
the model may differ - an exact McNemar p-value on the paired outcomes.
Latency p50/p95 deltas get a seeded percentile-bootstrap 95% interval.

Runs that used different task files (manifest `tasks[*].sha256`), different
generation parameters (run overrides, task params), modes, repeat counts or
case sets are compared anyway but *flagged* in a warning line naming what
differs: a delta between different experiments is not a regression.

This module also holds what `gate` shares with `compare`: loading a run folder
or a committed baseline.json into one normalised form (:class:`RunData`),
finding what differs between two runs, pairing models, and the per-group
statistics.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tabulate import tabulate

from .. import stats
from ..results import RunFolderError, read_manifest, read_samples, resolve_run_dir
from .metrics import OVERALL

BASELINE_FORMAT = "harness-baseline"
BASELINE_VERSION = 1
BOOTSTRAP_RESAMPLES = 2000

# metric name -> (mode whose samples it is measured on, Sample attribute, short label)
METRICS: dict[str, tuple[str, str, str]] = {
    "raw_parse": ("free", "raw_parse", "raw parse"),
    "raw_schema_valid": ("free", "raw_valid", "raw valid"),
    "repaired_parse": ("free", "rep_parse", "rep parse"),
    "repaired_schema_valid": ("free", "rep_valid", "rep valid"),
    "constrained_schema_valid": ("constrained", "raw_valid", "constr valid"),
}
COMPARE_METRICS = ["raw_parse", "raw_schema_valid", "repaired_schema_valid", "constrained_schema_valid"]


# --------------------------------------------------------------------------- loading


@dataclass
class Sample:
    """One sample reduced to what compare and gate need (also the baseline.json form)."""

    key: str
    task: str
    case: str
    model: str  # "backend:model", as in the report
    mode: str
    index: int
    error: str | None = None
    raw_parse: bool = False
    raw_valid: bool = False
    rep_parse: bool = False
    rep_valid: bool = False
    latency: float | None = None
    tps: float | None = None
    repairs: int = 0

    @property
    def identity(self) -> tuple[str, str, str, int]:
        """What pairs a sample across runs: the model may differ, nothing else may."""
        return (self.task, self.case, self.mode, self.index)


@dataclass
class RunData:
    """A run folder or a baseline.json, normalised."""

    label: str
    path: Path
    kind: str  # "run" | "baseline"
    essentials: dict[str, Any]
    samples: list[Sample]

    @property
    def models(self) -> list[str]:
        return sorted({s.model for s in self.samples})

    def task_ids(self) -> set[str]:
        tasks = self.essentials.get("tasks")
        return set(tasks) if tasks else {s.task for s in self.samples}


def parse_key(key: str) -> tuple[str, str, str, str, int]:
    """Split "task/case/backend:model/mode/sample"; model names may contain '/'
    (task and case ids may not), so split from both ends."""
    parts = key.split("/")
    if len(parts) < 5:
        raise ValueError(f"malformed sample key {key!r}")
    return parts[0], parts[1], "/".join(parts[2:-2]), parts[-2], int(parts[-1])


def sample_from_record(record: dict[str, Any]) -> Sample:
    """A samples.jsonl record -> Sample, with the same conventions as report.metrics:
    cached samples carry no latency, errored samples no verdicts."""
    error = record.get("error")
    sample = Sample(
        key=record["key"],
        task=record["task"],
        case=record["case"],
        model=f"{record['backend']}:{record['model']}",
        mode=record.get("mode", "free"),
        index=int(record.get("sample", 0)),
        error=(error.get("kind") or "error") if isinstance(error, dict) else ("error" if error else None),
    )
    if sample.error:
        return sample
    score = record.get("score") or {}
    raw, repaired = score.get("raw") or {}, score.get("repaired") or {}
    sample.raw_parse = bool(raw.get("parse_ok"))
    sample.raw_valid = bool(raw.get("schema_valid"))
    sample.rep_parse = bool(repaired.get("parse_ok"))
    sample.rep_valid = bool(repaired.get("schema_valid"))
    sample.repairs = len(repaired.get("repairs_applied") or [])
    timing = record.get("timing") or {}
    if not record.get("cached"):
        sample.latency = timing.get("total_s")
        sample.tps = timing.get("tokens_per_s") or None
    return sample


def sample_to_baseline(sample: Sample) -> dict[str, Any]:
    """The compact per-sample entry of baseline.json (no outputs)."""
    entry: dict[str, Any] = {"mode": sample.mode}
    if sample.error:
        entry["error"] = sample.error
        return entry
    entry.update(raw_parse=sample.raw_parse, raw_valid=sample.raw_valid,
                 repaired_parse=sample.rep_parse, repaired_valid=sample.rep_valid,
                 latency=None if sample.latency is None else round(sample.latency, 4))
    if sample.tps:
        entry["tps"] = round(sample.tps, 2)
    if sample.repairs:
        entry["repairs"] = sample.repairs
    return entry


def sample_from_baseline(key: str, entry: dict[str, Any]) -> Sample:
    task, case, model, mode, index = parse_key(key)
    return Sample(
        key=key, task=task, case=case, model=model, mode=entry.get("mode", mode), index=index,
        error=entry.get("error"),
        raw_parse=bool(entry.get("raw_parse")), raw_valid=bool(entry.get("raw_valid")),
        rep_parse=bool(entry.get("repaired_parse")), rep_valid=bool(entry.get("repaired_valid")),
        latency=entry.get("latency"), tps=entry.get("tps"), repairs=int(entry.get("repairs", 0)),
    )


def manifest_essentials(manifest: dict[str, Any]) -> dict[str, Any]:
    """What decides whether two runs are comparable, plus identification."""
    options = manifest.get("options") or {}
    backend = manifest.get("backend") or {}
    return {
        "run_id": manifest.get("run_id"),
        "created_at": manifest.get("created_at"),
        "status": manifest.get("status"),
        "harness_version": manifest.get("harness_version"),
        "backend": {k: backend.get(k) for k in ("name", "kind") if k in backend},
        "models": manifest.get("models") or [],
        "options": {k: options.get(k) for k in ("modes", "repeat", "limit", "params_override", "repair", "task_filter")
                    if k in options},
        "tasks": {
            task_id: {k: info.get(k) for k in ("sha256", "cases", "params", "output_format") if k in info}
            for task_id, info in sorted((manifest.get("tasks") or {}).items())
        },
    }


def load_run(spec: str | Path) -> RunData:
    """A run folder, a bare run id under results/, or a baseline.json written by `harness baseline`."""
    path = Path(spec)
    if path.is_file():
        return _load_baseline(path)
    run_dir = resolve_run_dir(spec)
    samples = [sample_from_record(r) for r in read_samples(run_dir)]
    if not samples:
        raise RunFolderError(f"{run_dir} has no samples to compare")
    manifest = read_manifest(run_dir)
    return RunData(label=manifest.get("run_id") or run_dir.name, path=run_dir, kind="run",
                   essentials=manifest_essentials(manifest), samples=samples)


def _load_baseline(path: Path) -> RunData:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path} is not a readable baseline JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise RunFolderError(f"{path} is not a baseline written by `harness baseline` (no \"format\": \"{BASELINE_FORMAT}\")")
    if data.get("version", 0) > BASELINE_VERSION:
        raise RunFolderError(f"{path} is baseline version {data.get('version')}; this harness reads up to {BASELINE_VERSION}")
    try:
        samples = [sample_from_baseline(key, entry) for key, entry in (data.get("samples") or {}).items()]
    except (ValueError, TypeError, AttributeError) as exc:
        raise RunFolderError(f"{path}: bad sample entry: {exc}") from None
    if not samples:
        raise RunFolderError(f"{path} has no samples")
    essentials = {k: data.get(k) for k in ("run_id", "created_at", "status", "harness_version", "backend",
                                           "models", "options", "tasks")}
    return RunData(label=f"{data.get('run_id') or path.stem} (baseline)", path=path, kind="baseline",
                   essentials=essentials, samples=samples)


# --------------------------------------------------------------------------- comparability


def _short(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def match_models(ref: RunData, other: RunData) -> tuple[list[tuple[str, str]], list[str]]:
    """Which model of `other` is compared with which model of `ref`.

    One model each: compare them whatever their names (a model upgrade is the
    point of the comparison). Several: pair equal labels; the rest is reported.
    """
    ref_models, other_models = ref.models, other.models
    if len(ref_models) == 1 and len(other_models) == 1:
        return [(ref_models[0], other_models[0])], []
    pairs = [(m, m) for m in ref_models if m in other_models]
    problems = []
    only_ref = [m for m in ref_models if m not in other_models]
    only_other = [m for m in other_models if m not in ref_models]
    if only_ref or only_other:
        problems.append(f"models differ: only in {ref.label}: {', '.join(only_ref) or '-'}; "
                        f"only in {other.label}: {', '.join(only_other) or '-'}")
    return pairs, problems


def differences(ref: RunData, other: RunData) -> list[str]:
    """Human-readable reasons why `other` is not the same experiment as `ref` (empty: comparable)."""
    problems: list[str] = []
    ref_tasks, other_tasks = ref.essentials.get("tasks") or {}, other.essentials.get("tasks") or {}
    ref_ids, other_ids = ref.task_ids(), other.task_ids()
    if ref_ids != other_ids:
        problems.append(f"task sets differ: only in {ref.label}: {', '.join(sorted(ref_ids - other_ids)) or '-'}; "
                        f"only in {other.label}: {', '.join(sorted(other_ids - ref_ids)) or '-'}")
    common = sorted(ref_ids & other_ids)
    if ref_tasks and other_tasks:
        changed = [t for t in common if t in ref_tasks and t in other_tasks
                   and ref_tasks[t].get("sha256") != other_tasks[t].get("sha256")]
        if changed:
            problems.append(f"task files differ (sha256): {', '.join(changed)}")
        params = [f"{t} ({_short(ref_tasks[t].get('params'))} vs {_short(other_tasks[t].get('params'))})"
                  for t in common if t in ref_tasks and t in other_tasks
                  and (ref_tasks[t].get("params") or {}) != (other_tasks[t].get("params") or {})]
        if params:
            problems.append(f"task params differ: {'; '.join(params)}")
    else:
        missing = [r.label for r in (ref, other) if not (r.essentials.get("tasks"))]
        problems.append(f"no manifest task list for {', '.join(missing)}: task files and params cannot be verified")
    ref_opts, other_opts = ref.essentials.get("options") or {}, other.essentials.get("options") or {}
    labels = {"params_override": "run params (options.params_override)", "modes": "modes", "repeat": "repeat",
              "limit": "case limit", "repair": "repair on/off"}
    for name, label in labels.items():
        a, b = ref_opts.get(name), other_opts.get(name)
        if name == "params_override":
            a, b = a or {}, b or {}
        if (ref_opts or other_opts) and a != b:
            problems.append(f"{label} differ: {_short(a)} vs {_short(b)}")
    # Case and sample sets, task by task (an interrupted or --limit'ed run shows up here).
    ref_cases, other_cases = _cases_by_task(ref.samples), _cases_by_task(other.samples)
    case_diffs = []
    for task in common:
        a, b = ref_cases.get(task, set()), other_cases.get(task, set())
        if a != b:
            case_diffs.append(f"{task} ({len(a - b)} only in {ref.label}, {len(b - a)} only in {other.label})")
    if case_diffs:
        problems.append(f"case sets differ: {'; '.join(case_diffs)}")
    else:
        pairs, _ = match_models(ref, other)
        for ref_model, other_model in pairs:
            a = {s.identity for s in ref.samples if s.model == ref_model and s.task in other_ids}
            b = {s.identity for s in other.samples if s.model == other_model and s.task in ref_ids}
            if a != b:
                problems.append(f"sample sets differ ({ref_model} vs {other_model}): {len(a - b)} samples only in "
                                f"{ref.label}, {len(b - a)} only in {other.label} (interrupted run?)")
    return problems


def _cases_by_task(samples: Iterable[Sample]) -> dict[str, set[str]]:
    cases: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        cases[s.task].add(s.case)
    return cases


# --------------------------------------------------------------------------- statistics


def groups_by_task(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """Samples per task, plus every sample under OVERALL; tasks sorted, overall last."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.task].append(s)
        groups[OVERALL].append(s)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] == OVERALL, kv[0])))


def metric_outcomes(samples: Iterable[Sample], metric: str) -> dict[tuple[str, str, str, int], bool]:
    """identity -> success, for the samples a metric is measured on (its mode, no backend error)."""
    mode, attr, _ = METRICS[metric]
    return {s.identity: bool(getattr(s, attr)) for s in samples if s.mode == mode and not s.error}


@dataclass
class GroupStats:
    samples: int = 0
    errors: int = 0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # metric -> (successes, n)
    repairs: int = 0
    latencies: list[float] = field(default_factory=list)
    tps: list[float] = field(default_factory=list)

    def pct(self, metric: str) -> float | None:
        s, n = self.counts.get(metric, (0, 0))
        return 100.0 * s / n if n else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "errors": self.errors,
            **{f"{m}_pct": self.pct(m) for m in METRICS},
            **{f"{m}_count": list(self.counts[m]) for m in METRICS},
            "repairs_fired": self.repairs,
            "latency_p50_s": stats.percentile(self.latencies, 50),
            "latency_p95_s": stats.percentile(self.latencies, 95),
            "tokens_per_s_p50": stats.percentile(self.tps, 50),
        }


def group_stats(samples: list[Sample]) -> GroupStats:
    """The same numbers `harness report` shows (rates over non-error samples of the mode)."""
    g = GroupStats(samples=len(samples), errors=sum(1 for s in samples if s.error))
    for metric in METRICS:
        outcomes = metric_outcomes(samples, metric)
        g.counts[metric] = (sum(outcomes.values()), len(outcomes))
    for s in samples:
        if s.error:
            continue
        if s.mode == "free":
            g.repairs += s.repairs
        if s.latency is not None:
            g.latencies.append(s.latency)
        if s.tps:
            g.tps.append(s.tps)
    return g


def rate_delta(ref: list[Sample], new: list[Sample], metric: str, z: float = 1.96) -> dict[str, Any] | None:
    """Delta (new - ref) of one rate, in percentage points, with its intervals.

    `ci_pp` is the Newcombe interval for independent samples; when samples pair
    up, `paired` holds the 2x2 table, the paired Newcombe interval and the
    exact McNemar p-value. None when either side has no sample for the metric.
    """
    a, b = metric_outcomes(ref, metric), metric_outcomes(new, metric)
    if not a or not b:
        return None
    s_old, n_old, s_new, n_new = sum(a.values()), len(a), sum(b.values()), len(b)
    low, high = stats.newcombe_diff_interval(s_new, n_new, s_old, n_old, z)
    result: dict[str, Any] = {
        "metric": metric,
        "old": [s_old, n_old], "new": [s_new, n_new],
        "old_pct": 100.0 * s_old / n_old, "new_pct": 100.0 * s_new / n_new,
        "delta_pp": 100.0 * (s_new / n_new - s_old / n_old),
        "ci_pp": [100.0 * low, 100.0 * high],
        "paired": None,
    }
    common = a.keys() & b.keys()
    if common:
        both = sum(1 for k in common if a[k] and b[k])
        worse = sum(1 for k in common if a[k] and not b[k])  # success before, failure now
        better = sum(1 for k in common if b[k] and not a[k])
        neither = len(common) - both - worse - better
        p_low, p_high = stats.paired_diff_interval(both, better, worse, neither, z)
        result["paired"] = {
            "pairs": len(common), "both": both, "worse": worse, "better": better, "neither": neither,
            "delta_pp": 100.0 * (better - worse) / len(common),
            "ci_pp": [100.0 * p_low, 100.0 * p_high],
            "mcnemar_p": stats.mcnemar_exact(worse, better),
        }
    return result


def latency_deltas(ref: list[Sample], new: list[Sample], qs: tuple[float, ...] = (50, 95),
                   seed: int = 0) -> dict[float, dict[str, Any]]:
    """Bootstrap deltas (new - ref) of latency percentiles, in seconds; {} without data."""
    a = [s.latency for s in ref if not s.error and s.latency is not None]
    b = [s.latency for s in new if not s.error and s.latency is not None]
    if not a or not b:
        return {}
    result = stats.bootstrap_percentile_diffs(a, b, qs, BOOTSTRAP_RESAMPLES, seed)
    return {
        q: {"old_s": stats.percentile(a, q), "new_s": stats.percentile(b, q), "delta_s": delta,
            "ci_s": [low, high], "n_old": len(a), "n_new": len(b)}
        for q, (delta, low, high) in result.items()
    }


# --------------------------------------------------------------------------- compare command


def build_comparison(runs: list[RunData]) -> dict[str, Any]:
    """Everything `compare` prints, as plain JSON."""
    ref = runs[0]
    warnings: list[str] = []
    rows: list[dict[str, Any]] = []
    deltas: list[dict[str, Any]] = []
    per_run_groups = []
    for run in runs:
        by_model: dict[str, dict[str, list[Sample]]] = {}
        for model in run.models:
            by_model[model] = groups_by_task(s for s in run.samples if s.model == model)
        per_run_groups.append(by_model)
    for run in runs[1:]:
        problems = differences(ref, run)
        _, model_problems = match_models(ref, run)
        for problem in problems + model_problems:
            warnings.append(f"{run.label} vs {ref.label}: {problem}; deltas may reflect the setup, not the model")
    tasks = sorted({t for groups in per_run_groups for by_task in groups.values() for t in by_task},
                   key=lambda t: (t == OVERALL, t))
    for task in tasks:
        for run, groups in zip(runs, per_run_groups):
            for model, by_task in groups.items():
                if task in by_task:
                    rows.append({"task": task, "run": run.label, "model": model, **group_stats(by_task[task]).as_dict()})
        for index, (run, groups) in enumerate(zip(runs[1:], per_run_groups[1:]), start=1):
            pairs, _ = match_models(ref, run)
            for ref_model, model in pairs:
                old = per_run_groups[0][ref_model].get(task)
                new = groups[model].get(task)
                if not old or not new:
                    continue
                lat = latency_deltas(old, new, seed=index)
                deltas.append({
                    "task": task, "run": run.label, "model": model,
                    "reference_run": ref.label, "reference_model": ref_model,
                    "rates": {m: rate_delta(old, new, m) for m in COMPARE_METRICS},
                    "latency": {f"p{int(q)}": v for q, v in lat.items()},
                })
    return {
        "runs": [{"label": r.label, "path": str(r.path), "kind": r.kind, "models": r.models} for r in runs],
        "reference": ref.label,
        "warnings": warnings,
        "groups": rows,
        "deltas": deltas,
        "method": METHOD_NOTE,
    }


METHOD_NOTE = (
    "delta = run - reference, in percentage points; [95% CI] = Newcombe hybrid score interval (Wilson-based, "
    "independent samples); p = exact two-sided McNemar test on paired samples (same task, case, mode, sample "
    "index); latency deltas in seconds with a seeded percentile-bootstrap 95% CI (2000 resamples)."
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _sec(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rate_cell(delta: dict[str, Any] | None) -> str:
    if delta is None:
        return "-"
    low, high = delta["ci_pp"]
    cell = f"{delta['delta_pp']:+.1f} [{low:+.1f}, {high:+.1f}]"
    if delta["paired"]:
        cell += f" p={_p(delta['paired']['mcnemar_p'])}"
    return cell


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.01 else f"{value:.2f}"


def _latency_cell(delta: dict[str, Any] | None) -> str:
    if not delta:
        return "-"
    low, high = delta["ci_s"]
    return f"{delta['delta_s']:+.2f} [{low:+.2f}, {high:+.2f}]"


SIDE_COLUMNS = [
    ("task", "task", str), ("run", "run", str), ("model", "model", str), ("n", "samples", str),
    ("err", "errors", str), ("raw parse%", "raw_parse_pct", _pct), ("raw valid%", "raw_schema_valid_pct", _pct),
    ("rep valid%", "repaired_schema_valid_pct", _pct), ("constr valid%", "constrained_schema_valid_pct", _pct),
    ("repairs", "repairs_fired", str), ("p50 s", "latency_p50_s", _sec), ("p95 s", "latency_p95_s", _sec),
    ("tok/s", "tokens_per_s_p50", lambda v: "-" if v is None else f"{v:.1f}"),
]


def render_comparison(data: dict[str, Any], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    markdown = fmt == "markdown"
    tablefmt = "github" if markdown else "simple"
    heading = (lambda text: f"### {text}\n") if markdown else (lambda text: f"{text}\n")
    parts = []
    for warning in data["warnings"]:
        parts.append(f"> **warning:** {warning}" if markdown else f"warning: {warning}")
    with_constrained = any(g["constrained_schema_valid_count"][1] for g in data["groups"])
    columns = [c for c in SIDE_COLUMNS if with_constrained or c[1] != "constrained_schema_valid_pct"]
    rows = [[fmt_(g[key]) for _, key, fmt_ in columns] for g in data["groups"]]
    names = ", ".join(r["label"] for r in data["runs"])
    parts.append(heading(f"Runs side by side ({names})")
                 + tabulate(rows, [c[0] for c in columns], tablefmt=tablefmt, disable_numparse=True))
    if data["deltas"]:
        metrics = [m for m in COMPARE_METRICS if with_constrained or m != "constrained_schema_valid"]
        headers = ["task", "run", "model", *[f"Δ {METRICS[m][2]} pp" for m in metrics], "Δ p50 s", "Δ p95 s"]
        d_rows = [[d["task"], d["run"], d["model"], *[_rate_cell(d["rates"][m]) for m in metrics],
                   _latency_cell(d["latency"].get("p50")), _latency_cell(d["latency"].get("p95"))]
                  for d in data["deltas"]]
        parts.append(heading(f"Deltas vs {data['reference']} (95% CI)")
                     + tabulate(d_rows, headers, tablefmt=tablefmt, disable_numparse=True)
                     + ("\n\n" if markdown else "\n") + (f"_{data['method']}_" if markdown else data["method"]))
    return "\n\n".join(parts) + "\n"


def compare_command(args: argparse.Namespace) -> int:
    """`harness compare`: load every run (RunFolderError -> exit 2 via the CLI), print, exit 0."""
    specs = list(args.runs)
    if not specs:
        raise RunFolderError("compare needs at least one run")
    runs = [load_run(spec) for spec in specs]
    _disambiguate(runs)
    print(render_comparison(build_comparison(runs), getattr(args, "format", "table") or "table"), end="")
    return 0


def _disambiguate(runs: list[RunData]) -> None:
    """Two runs with the same id (e.g. a run and its copy) get their paths as labels."""
    seen: dict[str, int] = defaultdict(int)
    for run in runs:
        seen[run.label] += 1
    for run in runs:
        if seen[run.label] > 1:
            run.label = str(run.path)


__all__ = [
    "METRICS", "RunData", "Sample", "build_comparison", "compare_command", "differences", "group_stats",
    "groups_by_task", "latency_deltas", "load_run", "match_models", "rate_delta", "render_comparison",
]
