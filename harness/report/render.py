"""Render aggregated metrics as text table, markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tabulate import tabulate

from .metrics import GroupMetrics, summarize

MAIN_COLUMNS: list[tuple[str, str, str]] = [
    # (header, summary key, format)
    ("model", "model", "s"),
    ("task", "task", "s"),
    ("n", "samples", "d"),
    ("err", "errors", "d"),
    ("raw parse%", "raw_parse_pct", "pct"),
    ("raw valid%", "raw_schema_valid_pct", "pct"),
    ("rep parse%", "repaired_parse_pct", "pct"),
    ("rep valid%", "repaired_schema_valid_pct", "pct"),
    ("rescued", "rescued", "d"),
    ("broken", "broken_by_repair", "d"),
    ("constr valid%", "constrained_schema_valid_pct", "pct"),
    ("p50 s", "latency_p50_s", "sec"),
    ("p95 s", "latency_p95_s", "sec"),
    ("ttft p50", "ttft_p50_s", "sec"),
    ("tok/s", "tokens_per_s_p50", "rate"),
]

FAILURE_ORDER = ["backend_error", "empty", "prose_only", "truncated", "wrapper_broken", "not_json", "schema_invalid"]


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value:.1f}"
    if kind == "sec":
        return f"{value:.2f}"
    if kind == "rate":
        return f"{value:.1f}"
    return str(value)


def main_rows(summary: dict[str, Any], with_constrained: bool) -> tuple[list[str], list[list[str]]]:
    columns = [c for c in MAIN_COLUMNS if with_constrained or c[1] != "constrained_schema_valid_pct"]
    rows = [[_fmt(group[key], kind) for _, key, kind in columns] for group in summary["groups"]]
    return [c[0] for c in columns], rows


def repair_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Repair kind x model: how often it fired, and how often it was the decisive one."""
    rows = []
    for group in summary["groups"]:
        if group["task"] != "(all tasks)":
            continue
        for kind in sorted(group["repairs_fired"], key=lambda k: -group["repairs_fired"][k]):
            rows.append([group["model"], kind, group["repairs_fired"][kind], group["repairs_decisive"].get(kind, 0)])
    return ["model", "repair", "fired", "made valid"], rows


def failure_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for group in summary["groups"]:
        if group["task"] != "(all tasks)":
            continue
        failures = group["failures"]
        paths = ", ".join(f"{p} ({n})" for p, n in group["top_failing_paths"][:3]) or "-"
        rows.append([group["model"], *[failures.get(k, 0) for k in FAILURE_ORDER], paths])
    return ["model", *FAILURE_ORDER, "top failing paths"], rows


def render(records: list[dict[str, Any]], fmt: str = "table") -> str:
    """One report in the requested format (table, markdown, csv, json)."""
    summary = summarize(records)
    if fmt == "json":
        return json.dumps(summary, indent=2, default=str)
    with_constrained = any(g["constrained_samples"] for g in summary["groups"])
    headers, rows = main_rows(summary, with_constrained)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([c[1] for c in MAIN_COLUMNS if with_constrained or c[1] != "constrained_schema_valid_pct"])
        writer.writerows(rows)
        return buffer.getvalue()
    tablefmt = "github" if fmt == "markdown" else "simple"
    parts = []
    heading = (lambda text: f"### {text}\n") if fmt == "markdown" else (lambda text: f"{text}\n")
    parts.append(heading("Structured output by model and task") + tabulate(rows, headers, tablefmt=tablefmt, disable_numparse=True))
    r_headers, r_rows = repair_rows(summary)
    if r_rows:
        parts.append(heading("Repairs (fired / made the sample valid)") + tabulate(r_rows, r_headers, tablefmt=tablefmt))
    f_headers, f_rows = failure_rows(summary)
    if f_rows:
        parts.append(heading("Raw failures by kind") + tabulate(f_rows, f_headers, tablefmt=tablefmt))
    for warning in summary["warnings"]:
        parts.append(f"warning: {warning}")
    return "\n\n".join(parts) + "\n"


__all__ = ["render", "GroupMetrics"]
