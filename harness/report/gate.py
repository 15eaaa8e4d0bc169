"""`harness gate` (CI regression check) and `harness baseline` (a committable baseline).

The gate compares a current run with a baseline (a run folder, or the compact
baseline.json written by `harness baseline`) task by task and overall, and
fails only when it is *confident* that things got worse by more than the
allowed margin - never on noise.

Rule for a rate metric (default repaired_schema_valid; also raw_schema_valid,
raw_parse, repaired_parse, constrained_schema_valid), per model pair, for each
task and for all tasks together:

* d = new rate - old rate (percentage points), over the samples the metric is
  measured on (its mode, backend errors excluded - the same numbers as
  `harness report`).
* Paired samples (same task, case, mode and sample index in both runs, which
  is the normal case since runs must match): REGRESSION iff the upper bound of
  the 95% paired Newcombe interval of d (on the paired samples) is below
  -max_drop AND the exact two-sided McNemar p-value on the discordant pairs is
  below 0.05.
* No paired samples: REGRESSION iff the upper bound of the 95% Newcombe
  (Wilson-based) interval of d for independent samples is below -max_drop.

So a regression means "with 95% confidence the drop exceeds the margin". A run
of 5 cases going 5/5 -> 3/5, or 20/40 -> 19/40, does not fail; 40/40 -> 10/40
does.

Backend errors: the backend error rate (over all samples) is guarded with the
mirrored rule (REGRESSION iff the lower bound of the interval of its increase
is above +max_drop, and McNemar p < 0.05 when paired), so a run whose server
failed on most samples cannot pass just because the few answers it got were
valid.

Latency (only with --latency-p95-max-increase, e.g. "20%" or 0.2): per group
with at least MIN_LATENCY_SAMPLES latencies on each side, REGRESSION iff the
lower bound of the seeded percentile-bootstrap 95% interval of (new p95 - old
p95) exceeds allowed_fraction * old p95.

Exit codes: 0 no regression; 1 at least one regression (one line each naming
task, metric, old %, new %, the 95% interval); 2 usage or data error, including
runs that are not the same experiment (different task sets, task files, case
sets, params, modes, repeat) - those are explained, not compared.

Settings: command line first, then the `gate:` section of the config
(`metric`, `max_drop`, `latency_p95_max_increase`), then the defaults above.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_config
from ..results import RunFolderError, read_manifest, read_samples, resolve_run_dir
from .compare import (
    BASELINE_FORMAT,
    BASELINE_VERSION,
    METRICS,
    RunData,
    Sample,
    differences,
    groups_by_task,
    latency_deltas,
    load_run,
    manifest_essentials,
    match_models,
    rate_delta,
    sample_from_record,
    sample_to_baseline,
)
from .. import stats

DEFAULT_METRIC = "repaired_schema_valid"
DEFAULT_MAX_DROP = 2.0
ALPHA = 0.05
MIN_LATENCY_SAMPLES = 5
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


class GateUsageError(ValueError):
    """Bad settings or runs that cannot be compared: exit 2."""


def parse_fraction(value: str | float | int | None) -> float | None:
    """'20%' -> 0.2; 0.2 or '0.2' -> 0.2 (a fraction); None -> None (not gated)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            fraction = float(value.strip()[:-1]) / 100.0
        else:
            fraction = float(value)
    except ValueError:
        raise GateUsageError(f"latency increase {value!r} is not a percentage like 20% or a fraction like 0.2") from None
    if fraction < 0:
        raise GateUsageError(f"latency increase must be >= 0, got {value!r}")
    return fraction


def gate_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Command line over the config's `gate:` section over the defaults."""
    config = load_config(getattr(args, "config", None))
    section = config.gate
    metric = getattr(args, "metric", None) or section.metric or DEFAULT_METRIC
    if metric not in METRICS:
        raise GateUsageError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    max_drop = getattr(args, "max_drop", None)
    if max_drop is None:
        max_drop = section.max_drop if section.max_drop is not None else DEFAULT_MAX_DROP
    max_drop = float(max_drop)
    if max_drop < 0:
        raise GateUsageError(f"max drop must be >= 0 percentage points, got {max_drop}")
    latency = getattr(args, "latency_p95_max_increase", None)
    if latency is None:
        latency = section.latency_p95_max_increase
    return {"metric": metric, "max_drop": max_drop, "latency_increase": parse_fraction(latency)}


def _interval_text(ci: list[float]) -> str:
    return f"[{ci[0]:+.1f}, {ci[1]:+.1f}] pp"


def check_rate(old: list[Sample], new: list[Sample], metric: str, max_drop: float,
               worse_is_up: bool = False) -> dict[str, Any] | None:
    """Apply the module's rule to one group; None when a side has no data for the metric."""
    delta = rate_delta(old, new, metric)
    if delta is None:
        return None
    return _judge(delta, max_drop, worse_is_up)


def _judge(delta: dict[str, Any], max_drop: float, worse_is_up: bool) -> dict[str, Any]:
    paired = delta["paired"]
    if paired:
        ci, p = paired["ci_pp"], paired["mcnemar_p"]
        bound_ok = ci[0] > max_drop if worse_is_up else ci[1] < -max_drop
        regressed = bound_ok and p < ALPHA
        how = (f"paired: {paired['pairs']} pairs, {paired['worse']} got worse, {paired['better']} got better, "
               f"McNemar p={p:.3g}")
    else:
        ci = delta["ci_pp"]
        regressed = ci[0] > max_drop if worse_is_up else ci[1] < -max_drop
        how = "independent samples"
    return {**delta, "regressed": regressed, "ci_used": ci, "how": how}


def _error_delta(old: list[Sample], new: list[Sample]) -> dict[str, Any] | None:
    """Backend error rate (all samples), in the shape of compare.rate_delta."""
    if not old or not new:
        return None
    a = {s.identity: bool(s.error) for s in old}
    b = {s.identity: bool(s.error) for s in new}
    s_old, s_new = sum(a.values()), sum(b.values())
    if not s_old and not s_new:
        return None
    low, high = stats.newcombe_diff_interval(s_new, len(b), s_old, len(a))
    delta: dict[str, Any] = {
        "metric": "backend_error_rate", "old": [s_old, len(a)], "new": [s_new, len(b)],
        "old_pct": 100.0 * s_old / len(a), "new_pct": 100.0 * s_new / len(b),
        "delta_pp": 100.0 * (s_new / len(b) - s_old / len(a)), "ci_pp": [100 * low, 100 * high], "paired": None,
    }
    common = a.keys() & b.keys()
    if common:
        both = sum(1 for k in common if a[k] and b[k])
        up = sum(1 for k in common if b[k] and not a[k])  # error now, not before
        down = sum(1 for k in common if a[k] and not b[k])
        p_low, p_high = stats.paired_diff_interval(both, up, down, len(common) - both - up - down)
        delta["paired"] = {"pairs": len(common), "both": both, "worse": up, "better": down,
                           "ci_pp": [100 * p_low, 100 * p_high], "mcnemar_p": stats.mcnemar_exact(up, down)}
    return delta


def check_latency(old: list[Sample], new: list[Sample], fraction: float, seed: int = 0) -> dict[str, Any] | None:
    n_old = sum(1 for s in old if not s.error and s.latency is not None)
    n_new = sum(1 for s in new if not s.error and s.latency is not None)
    if n_old < MIN_LATENCY_SAMPLES or n_new < MIN_LATENCY_SAMPLES:
        return None
    result = latency_deltas(old, new, qs=(95,), seed=seed).get(95)
    if not result or not result["old_s"]:
        return None
    allowed = fraction * result["old_s"]
    return {**result, "allowed_s": allowed, "regressed": result["ci_s"][0] > allowed}


def run_gate(baseline: RunData, current: RunData, settings: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(report lines, regression lines). Raises GateUsageError when the runs are not comparable."""
    problems = differences(baseline, current)
    pairs, _ = match_models(baseline, current)
    lines: list[str] = []
    if len(baseline.models) > 1 or len(current.models) > 1:
        missing = [m for m in baseline.models if m not in current.models]
        extra = [m for m in current.models if m not in baseline.models]
        if missing:
            problems.append(f"models of the baseline missing from the current run: {', '.join(missing)}")
        if extra:
            lines.append(f"  note        not gated (no baseline): {', '.join(extra)}")
    if problems:
        raise GateUsageError(
            f"{current.label} is not comparable with baseline {baseline.label}:\n  - " + "\n  - ".join(problems)
            + "\nre-run the current evaluation with the baseline's task files and options, "
              "or write a new baseline with `harness baseline RUN`."
        )
    metric, max_drop, latency = settings["metric"], settings["max_drop"], settings["latency_increase"]
    mode = METRICS[metric][0]
    if not any(s.mode == mode and not s.error for s in baseline.samples):
        raise GateUsageError(f"metric {metric} needs {mode}-mode samples and the baseline {baseline.label} has none")
    multi = len(pairs) > 1 or pairs[0][0] != pairs[0][1]
    regressions: list[str] = []
    for run in (baseline, current):
        errored = sum(1 for s in run.samples if s.error)
        if errored:
            lines.append(f"  note        {run.label}: {errored} of {len(run.samples)} samples are backend errors, "
                         "excluded from the rates")
    for old_model, new_model in pairs:
        old_groups = groups_by_task(s for s in baseline.samples if s.model == old_model)
        new_groups = groups_by_task(s for s in current.samples if s.model == new_model)
        who = f" [{old_model} -> {new_model}]" if multi else ""
        for seed, (task, old) in enumerate(old_groups.items()):
            new = new_groups.get(task, [])
            name = f"{task}{who}"
            checks = [(metric, check_rate(old, new, metric, max_drop))]
            error_delta = _error_delta(old, new)
            checks.append(("backend_error_rate", _judge(error_delta, max_drop, True) if error_delta else None))
            for label, result in checks:
                if result is None:
                    if label == metric:
                        lines.append(f"  n/a         {name}: {label}: no {mode}-mode samples without errors on one side")
                    continue
                line = (f"{name}: {label} {result['old_pct']:.1f}% -> {result['new_pct']:.1f}% "
                        f"({result['old'][0]}/{result['old'][1]} -> {result['new'][0]}/{result['new'][1]}), "
                        f"delta {result['delta_pp']:+.1f} pp, 95% CI {_interval_text(result['ci_used'])} "
                        f"({result['how']})")
                if result["regressed"]:
                    regressions.append(f"REGRESSION: {line}")
                    lines.append(f"  REGRESSION  {line}")
                elif label == metric:
                    lines.append(f"  ok          {line}")
            if latency is not None:
                result = check_latency(old, new, latency, seed=seed)
                if result is None:
                    lines.append(f"  n/a         {name}: latency_p95: fewer than {MIN_LATENCY_SAMPLES} timed samples")
                    continue
                line = (f"{name}: latency_p95 {result['old_s']:.2f}s -> {result['new_s']:.2f}s "
                        f"({100 * result['delta_s'] / result['old_s']:+.0f}%), 95% CI of increase "
                        f"[{result['ci_s'][0]:+.2f}, {result['ci_s'][1]:+.2f}] s, allowed +{100 * latency:.0f}% "
                        f"(+{result['allowed_s']:.2f} s)")
                if result["regressed"]:
                    regressions.append(f"REGRESSION: {line}")
                    lines.append(f"  REGRESSION  {line}")
                else:
                    lines.append(f"  ok          {line}")
    return lines, regressions


def rule_text(settings: dict[str, Any]) -> str:
    text = (f"rule: a group regresses when the 95% CI upper bound of (new - old) {settings['metric']} is below "
            f"-{settings['max_drop']:g} pp; on paired samples the paired Newcombe interval is used and the exact "
            f"McNemar p must also be < {ALPHA:g} (unpaired: the independent Newcombe interval); the backend error "
            f"rate is guarded the same way (lower bound of its increase above +{settings['max_drop']:g} pp)")
    if settings["latency_increase"] is not None:
        text += (f"; latency p95 regresses when the bootstrap 95% CI lower bound of its increase exceeds "
                 f"+{100 * settings['latency_increase']:.0f}% of the old p95")
    return text + "."


def gate_command(args: argparse.Namespace) -> int:
    try:
        settings = gate_settings(args)
        baseline = load_run(args.baseline)
        current = load_run(args.current)
        lines, regressions = run_gate(baseline, current, settings)
    except (GateUsageError, ConfigError, RunFolderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"gate: {current.label} vs baseline {baseline.label}")
    print(rule_text(settings))
    for line in lines:
        print(line)
    if regressions:
        print(f"gate: FAIL - {len(regressions)} significant regression(s):")
        for line in regressions:
            print(line)
        return EXIT_REGRESSION
    print("gate: PASS - no metric is significantly worse beyond its margin")
    return EXIT_OK


# --------------------------------------------------------------------------- baseline


def build_baseline(run_dir: Path) -> dict[str, Any]:
    records = read_samples(run_dir)
    if not records:
        raise RunFolderError(f"{run_dir} has no samples to make a baseline from")
    manifest = read_manifest(run_dir)
    samples = sorted((sample_from_record(r) for r in records), key=lambda s: s.key)
    essentials = manifest_essentials(manifest)
    essentials["run_id"] = essentials.get("run_id") or run_dir.name
    essentials["models"] = sorted({s.model for s in samples})
    return {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        **essentials,
        "samples": {s.key: sample_to_baseline(s) for s in samples},
    }


def dump_baseline(data: dict[str, Any]) -> str:
    """Pretty header, one line per sample: small, valid JSON and a readable git diff."""
    head = {k: v for k, v in data.items() if k != "samples"}
    text = json.dumps(head, indent=2, ensure_ascii=False, default=str)
    lines = [f"  {json.dumps(key)}: {json.dumps(entry, separators=(',', ':'))}" for key, entry in data["samples"].items()]
    return text[:-2] + ',\n  "samples": {\n' + ",\n".join(f"  {line}" for line in lines) + "\n  }\n}\n"


def baseline_command(args: argparse.Namespace) -> int:
    run_dir = resolve_run_dir(args.run)
    data = build_baseline(run_dir)
    out = Path(getattr(args, "out", None) or "results/baseline.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_baseline(data), encoding="utf-8")
    print(f"wrote baseline {out}: {len(data['samples'])} samples, {len(data['tasks'] or {})} tasks, "
          f"models {', '.join(data['models'])}", file=sys.stderr)
    return EXIT_OK


__all__ = ["baseline_command", "build_baseline", "check_rate", "gate_command", "gate_settings", "parse_fraction",
           "run_gate"]
