"""`harness report --format html|junit`: a self-contained HTML report and JUnit XML for CI.

HTML: one file, no network. CSS is inline, charts are inline SVG, and there is
no JavaScript at all; a Content-Security-Policy meta tag (`default-src 'none'`)
makes the browser refuse any script or remote resource even if something
slipped through. Every piece of model output is HTML-escaped before it is
written (model outputs are untrusted text: a planted `<script>` must show up as
text). Collapsible per-sample details use plain `<details>`.

JUnit: one `<testcase>` per (task, model) with classname = model and name =
task; a `<failure>` when the repaired schema-valid rate is below the threshold
(100% by default: any invalid sample fails the case;
`harness report -f junit --min-valid 95`, or HARNESS_JUNIT_MIN_VALID=95, relaxes it), an
`<error>` when samples failed with backend errors. Built with ElementTree, so
the XML is well-formed by construction; characters XML 1.0 cannot carry are
dropped.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..results import RunFolderError, read_manifest, read_samples
from .metrics import OVERALL, aggregate, model_label, percentile, summarize
from .render import FAILURE_ORDER, main_rows

MAX_FAILED_SAMPLES = 200
MAX_OUTPUT_CHARS = 20_000
DEFAULT_JUNIT_MIN_VALID = 100.0
COLORS = {"raw": "#d9822b", "repaired": "#2b6cb0", "constrained": "#2f9e44"}


def render_file(run_dir: Path, fmt: str, *, junit_min_valid_pct: float | None = None,
                max_failed_samples: int = MAX_FAILED_SAMPLES) -> str:
    """The whole report file for `fmt` ("html" or "junit") of one run folder."""
    run_dir = Path(run_dir)
    records = read_samples(run_dir)
    manifest = read_manifest(run_dir)
    if not records and not manifest:
        raise RunFolderError(f"{run_dir} has neither a manifest nor samples")
    if fmt == "html":
        return render_html(records, manifest, run_dir, max_failed_samples=max_failed_samples)
    if fmt == "junit":
        if junit_min_valid_pct is None:
            env = os.environ.get("HARNESS_JUNIT_MIN_VALID")
            try:
                junit_min_valid_pct = float(env) if env else DEFAULT_JUNIT_MIN_VALID
            except ValueError:
                raise RunFolderError(f"HARNESS_JUNIT_MIN_VALID={env!r} is not a number (percent)") from None
        return render_junit(records, manifest, run_dir, min_valid_pct=junit_min_valid_pct)
    raise ValueError(f"unknown export format {fmt!r} (html or junit)")


# --------------------------------------------------------------------------- HTML

CSS = """
:root { --fg:#1f2328; --muted:#57606a; --line:#d0d7de; --bg:#ffffff; --alt:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 16px 24px 48px; max-width: 1400px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; } h4 { font-size: 13px; margin: 10px 0 4px; }
.meta { color: var(--muted); margin: 0 0 8px; } nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: var(--alt); } table.failures td:last-child { text-align: left; } td.l, th.l { text-align: left; } tr.overall td { font-weight: 600; background: #fbfbfb; }
.warn { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; margin: 6px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; } figure { margin: 0; border: 1px solid var(--line); padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 11px sans-serif; fill: #333; }
details { border: 1px solid var(--line); border-radius: 4px; margin: 4px 0; padding: 2px 8px; }
details[open] { background: #fcfcfc; } summary { cursor: pointer; }
pre.output { white-space: pre-wrap; word-break: break-word; background: var(--alt); border: 1px solid var(--line);
             padding: 8px; max-height: 420px; overflow: auto; font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; }
mark { background: #ffd33d; padding: 0 1px; } code { font: 12px ui-monospace, Menlo, Consolas, monospace; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; background: #eaeef2; margin-right: 6px; }
.badge.rescued { background: #dafbe1; } .badge.error { background: #ffebe9; }
.legend span { display: inline-block; margin-right: 12px; } .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""


def _e(value: Any) -> str:
    """HTML-escape anything (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _table(headers: list[str], rows: Iterable[list[str]], *, left: int = 1, cls: str = "",
           row_classes: list[str] | None = None, raw_html: bool = False) -> str:
    """An HTML table; cells are escaped unless raw_html (then the caller escaped them)."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = []
    for index, row in enumerate(rows):
        klass = row_classes[index] if row_classes else ""
        cells = "".join(f'<td class="{"l" if i < left else ""}">{cell if raw_html else _e(cell)}</td>'
                        for i, cell in enumerate(row))
        body.append(f'<tr class="{klass}">{cells}</tr>')
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def validity_chart(model: str, groups: list[dict[str, Any]], with_constrained: bool) -> str:
    """Inline SVG: per task (and overall) bars of raw / repaired / constrained validity."""
    series = [("raw", "raw_schema_valid_pct"), ("repaired", "repaired_schema_valid_pct")]
    if with_constrained:
        series.append(("constrained", "constrained_schema_valid_pct"))
    bar, gap, left, top, plot_h, bottom = 14, 18, 40, 12, 160, 56
    group_w = bar * len(series) + gap
    width = left + group_w * len(groups) + 10
    height = top + plot_h + bottom
    parts = [f'<svg class="validity-chart" role="img" aria-label="validity by task for {_e(model)}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for tick in (0, 25, 50, 75, 100):
        y = top + plot_h - plot_h * tick / 100
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 5}" y2="{y:.1f}" stroke="#e1e4e8"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick}%</text>')
    for gi, group in enumerate(groups):
        x0 = left + gi * group_w + gap / 2
        for si, (name, key) in enumerate(series):
            value = group.get(key)
            x = x0 + si * bar
            if value is None:
                parts.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h - 3}" text-anchor="middle" '
                             f'fill="#999">-</text>')
                continue
            h = plot_h * value / 100
            parts.append(f'<rect class="bar-{name}" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 2}" '
                         f'height="{max(h, 0.5):.1f}" fill="{COLORS[name]}"><title>{_e(group["task"])}: {name} '
                         f'schema-valid {value:.1f}%</title></rect>')
        label_x = x0 + bar * len(series) / 2
        label_y = top + plot_h + 10
        parts.append(f'<text x="{label_x:.1f}" y="{label_y}" text-anchor="end" '
                     f'transform="rotate(-35 {label_x:.1f} {label_y})">{_e(group["task"])}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 5}" y2="{top + plot_h}" stroke="#888"/>')
    parts.append("</svg>")
    return "".join(parts)


def latency_histogram(model: str, latencies: list[float], edges: list[float]) -> str:
    """Inline SVG histogram of one model's per-sample latency, with p50/p95 markers."""
    width, height, left, top, plot_w, plot_h = 420, 190, 36, 12, 370, 130
    parts = [f'<svg class="latency-chart" role="img" aria-label="latency histogram for {_e(model)}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    if not latencies:
        parts.append(f'<text x="{left}" y="{top + 20}">no timed samples</text></svg>')
        return "".join(parts)
    bins = len(edges) - 1
    counts = [0] * bins
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0
    for value in latencies:
        index = min(bins - 1, max(0, int((value - lo) / span * bins)))
        counts[index] += 1
    peak = max(counts) or 1
    bw = plot_w / bins
    for i, count in enumerate(counts):
        if not count:
            continue
        h = plot_h * count / peak
        parts.append(f'<rect class="hist-bar" x="{left + i * bw:.1f}" y="{top + plot_h - h:.1f}" '
                     f'width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}" fill="#6e7781"><title>'
                     f'{edges[i]:.2f}-{edges[i + 1]:.2f} s: {count} samples</title></rect>')
    for q, color in ((50, "#2b6cb0"), (95, "#cf222e")):
        value = percentile(latencies, q)
        assert value is not None
        x = left + plot_w * (value - lo) / span
        anchor, dx = ("end", -3) if x > left + plot_w * 0.75 else ("start", 3)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{color}" '
                     f'stroke-dasharray="4 3"/><text x="{x + dx:.1f}" y="{top + 10 + (q == 95) * 12}" '
                     f'text-anchor="{anchor}" fill="{color}">p{q} {value:.2f}s</text>')
    base = top + plot_h
    parts.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#888"/>'
                 f'<text x="{left}" y="{base + 14}" text-anchor="middle">{lo:.2f}s</text>'
                 f'<text x="{left + plot_w}" y="{base + 14}" text-anchor="middle">{hi:.2f}s</text>'
                 f'<text x="{left + plot_w / 2}" y="{base + 30}" text-anchor="middle">seconds per sample '
                 f'(n={len(latencies)})</text>'
                 f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{peak}</text>'
                 f'<text x="{left - 4}" y="{base}" text-anchor="end">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_edges(all_values: list[float], bins: int = 20) -> list[float]:
    """Shared bin edges (so models are visually comparable), 0 to the max, 'nice' width."""
    if not all_values:
        return [0.0, 1.0]
    hi = max(all_values)
    if hi <= 0:
        return [0.0, 1.0]
    bins = max(1, min(bins, len(all_values)))
    raw = hi / bins
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = max(1, math.ceil(hi / step - 1e-9))
    if count * step <= hi:
        count += 1
    return [i * step for i in range(count + 1)]


_NAME_AT_END = re.compile(r'(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[("(?:[^"\\]|\\.)*")\])$')
_UNEXPECTED = re.compile(r"'([^']+)' (?:was|were) unexpected|\('([^']+)'")


def violation_needles(violations: list[dict[str, Any]]) -> list[str]:
    """Quoted JSON keys to highlight in the raw output: the property each violation is at,
    or the unexpected property an additionalProperties violation names."""
    needles = []
    for violation in violations:
        match = _NAME_AT_END.search(violation.get("path") or "")
        if match:
            name = match.group(1) if match.group(1) is not None else _json_str(match.group(2))
            if name:
                needles.append(json.dumps(name, ensure_ascii=False))
        if violation.get("rule") == "additionalProperties":
            for found in _UNEXPECTED.finditer(violation.get("message") or ""):
                name = found.group(1) or found.group(2)
                if name:
                    needles.append(json.dumps(name, ensure_ascii=False))
    return needles


def _json_str(quoted: str) -> str | None:
    try:
        value = json.loads(quoted)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def highlight(text: str, needles: list[str]) -> str:
    """Escape `text`, wrapping each occurrence of a needle in <mark> (escaping inside too)."""
    needles = sorted({n for n in needles if n}, key=len, reverse=True)
    if not needles:
        return _e(text)
    pattern = re.compile("|".join(re.escape(n) for n in needles))
    out, pos = [], 0
    for match in pattern.finditer(text):
        out.append(_e(text[pos:match.start()]))
        out.append(f"<mark>{_e(match.group())}</mark>")
        pos = match.end()
    out.append(_e(text[pos:]))
    return "".join(out)


def _is_failed(record: dict[str, Any]) -> bool:
    if record.get("error"):
        return True
    raw = ((record.get("score") or {}).get("raw")) or {}
    return not raw.get("schema_valid")


def _violation_list(violations: list[dict[str, Any]]) -> str:
    items = "".join(
        f'<li><mark class="path">{_e(v.get("path", "$"))}</mark> <code>{_e(v.get("rule", ""))}</code> '
        f'{_e(v.get("message", ""))}</li>' for v in violations)
    return f'<ul class="violations">{items}</ul>'


def failed_sample_details(record: dict[str, Any]) -> str:
    score = record.get("score") or {}
    raw, repaired = score.get("raw") or {}, score.get("repaired") or {}
    error = record.get("error")
    label = f"{record.get('task')} / {record.get('case')} — {model_label(record)} — {record.get('mode')} #{record.get('sample')}"
    if error:
        badge = f'<span class="badge error">backend_error: {_e(error.get("kind"))}</span>'
    else:
        kind = score.get("failure") or ("schema_invalid" if raw.get("parse_ok") else "not_json")
        badge = f'<span class="badge">{_e(kind)}</span>'
        if record.get("mode") != "constrained" and repaired.get("schema_valid"):
            badge += '<span class="badge rescued">rescued by repair</span>'
    parts = [f'<details class="sample" id="{_e(record.get("key"))}"><summary>{badge}{_e(label)}</summary>']
    timing = record.get("timing") or {}
    meta = [f"finish_reason: {record.get('finish_reason')}", f"attempts: {record.get('attempts')}"]
    if timing.get("total_s") is not None:
        meta.append(f"latency: {timing['total_s']:.2f}s")
    if record.get("cached"):
        meta.append("cached")
    parts.append(f'<p class="meta">{_e(" · ".join(meta))}</p>')
    if error:
        parts.append(f"<p><b>Error</b> ({_e(error.get('kind'))}, status {_e(error.get('status'))}): "
                     f"{_e(error.get('message'))}</p></details>")
        return "".join(parts)
    violations = raw.get("violations") or []
    output = record.get("output") or ""
    shown = output[:MAX_OUTPUT_CHARS]
    more = f"\n… ({len(output) - len(shown)} more characters)" if len(output) > len(shown) else ""
    parts.append("<h4>Raw output</h4>")
    parts.append(f'<pre class="output">{highlight(shown, violation_needles(violations))}{_e(more)}</pre>')
    if raw.get("parse_error"):
        parts.append(f"<p><b>Parse error:</b> <code>{_e(raw['parse_error'])}</code></p>")
    if violations:
        parts.append(f"<h4>Schema violations (raw, {len(violations)})</h4>{_violation_list(violations)}")
    if record.get("mode") != "constrained":
        applied = repaired.get("repairs_applied") or []
        verdict = "schema-valid" if repaired.get("schema_valid") else ("parsed, schema-invalid" if repaired.get("parse_ok") else "not parseable")
        parts.append(f"<p><b>Repaired:</b> {_e(verdict)}; repairs applied: "
                     f"{_e(', '.join(applied) or 'none')}</p>")
        rep_violations = repaired.get("violations") or []
        if rep_violations and rep_violations != violations:
            parts.append(f"<h4>Schema violations after repair ({len(rep_violations)})</h4>{_violation_list(rep_violations)}")
    parts.append("</details>")
    return "".join(parts)


def render_html(records: list[dict[str, Any]], manifest: dict[str, Any], run_dir: Path,
                *, max_failed_samples: int = MAX_FAILED_SAMPLES) -> str:
    summary = summarize(records)
    groups = aggregate(records)
    with_constrained = any(g["constrained_samples"] for g in summary["groups"])
    run_id = manifest.get("run_id") or run_dir.name
    models = sorted({g["model"] for g in summary["groups"]})
    backend = manifest.get("backend") or {}
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No scripts, no remote anything: even a rendering bug cannot phone home or run code.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>harness report: {_e(run_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>Structured-output report: {_e(run_id)}</h1>",
    ]
    meta = [f"backend {backend.get('name', '-')} ({backend.get('kind', '-')})",
            f"models {', '.join(models) or '-'}", f"{len(records)} samples",
            f"status {manifest.get('status', '-')}", f"created {manifest.get('created_at', '-')}",
            f"harness {manifest.get('harness_version', '-')}"]
    out.append(f'<p class="meta">{_e(" · ".join(meta))}</p>')
    out.append('<nav><a href="#summary">Summary</a><a href="#validity">Validity chart</a>'
               '<a href="#latency">Latency</a><a href="#failures">Failures</a><a href="#repairs">Repairs</a>'
               '<a href="#failed-samples">Failed samples</a></nav>')
    for warning in summary["warnings"]:
        out.append(f'<p class="warn">warning: {_e(warning)}</p>')

    # Main table.
    headers, rows = main_rows(summary, with_constrained)
    row_classes = ["overall" if g["task"] == OVERALL else "" for g in summary["groups"]]
    out.append('<section id="summary"><h2>Structured output by model and task</h2>')
    out.append(_table(headers, rows, left=2, cls="main", row_classes=row_classes))
    out.append("</section>")

    # Validity bars per model.
    out.append('<section id="validity"><h2>Schema-valid rate: raw vs repaired'
               f'{" vs constrained" if with_constrained else ""}</h2>')
    legend = [("raw", "raw"), ("repaired", "repaired")] + ([("constrained", "constrained")] if with_constrained else [])
    out.append('<p class="legend">' + "".join(
        f'<span><span class="swatch" style="background:{COLORS[k]}"></span>{_e(label)}</span>' for k, label in legend)
        + "</p>")
    out.append('<div class="charts">')
    for model in models:
        model_groups = [g for g in summary["groups"] if g["model"] == model]
        out.append(f"<figure><figcaption>{_e(model)}</figcaption>{validity_chart(model, model_groups, with_constrained)}"
                   "</figure>")
    out.append("</div></section>")

    # Latency histograms, shared bins.
    latencies = {model: groups[(model, OVERALL)].latencies for model in models if (model, OVERALL) in groups}
    edges = histogram_edges([v for values in latencies.values() for v in values])
    out.append('<section id="latency"><h2>Latency distribution (seconds per sample, cached samples excluded)</h2>'
               '<div class="charts">')
    for model in models:
        out.append(f"<figure><figcaption>{_e(model)}</figcaption>"
                   f"{latency_histogram(model, latencies.get(model, []), edges)}</figure>")
    out.append("</div></section>")

    # Failure taxonomy with top failing paths.
    overall = [g for g in summary["groups"] if g["task"] == OVERALL]
    out.append('<section id="failures"><h2>Raw failures by kind</h2>')
    f_rows = []
    for g in overall:
        paths = "<br>".join(f"<code>{_e(p)}</code> ({n})" for p, n in g["top_failing_paths"]) or "-"
        f_rows.append([_e(g["model"]), *[str(g["failures"].get(k, 0)) for k in FAILURE_ORDER], paths])
    out.append(_table(["model", *FAILURE_ORDER, "top failing JSON paths"], f_rows, cls="failures", raw_html=True))
    out.append("</section>")

    # Repair kinds.
    out.append('<section id="repairs"><h2>Repairs (fired / made the sample valid)</h2>')
    r_rows = [[g["model"], kind, str(count), str(g["repairs_decisive"].get(kind, 0))]
              for g in overall for kind, count in sorted(g["repairs_fired"].items(), key=lambda kv: -kv[1])]
    if r_rows:
        out.append(_table(["model", "repair", "fired", "made valid"], r_rows, left=2, cls="repairs"))
    else:
        out.append('<p class="meta">No repairs fired.</p>')
    out.append("</section>")

    # Failed samples.
    failed = sorted((r for r in records if _is_failed(r)),
                    key=lambda r: (model_label(r), r.get("task", ""), r.get("case", ""), r.get("mode", ""),
                                   r.get("sample", 0)))
    shown = failed[:max_failed_samples]
    omitted = len(failed) - len(shown)
    out.append(f'<section id="failed-samples"><h2>Failed samples ({len(failed)})</h2>')
    out.append('<p class="meta">Samples whose raw output was not schema-valid, or that failed with a backend error. '
               "Violating JSON paths are <mark>marked</mark>, in the output too where the key is present."
               + (f" Showing the first {len(shown)}; {omitted} omitted." if omitted else "") + "</p>")
    out.extend(failed_sample_details(r) for r in shown)
    if omitted:
        out.append(f'<p class="meta omitted">{omitted} more failed samples omitted (cap {max_failed_samples}).</p>')
    out.append("</section>")
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out.append(f'<footer class="meta">Generated by harness from {_e(run_dir)} at {_e(generated)}.</footer>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- JUnit

_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(value: Any) -> str:
    """Text XML 1.0 can carry (ElementTree escapes markup but not control characters)."""
    return _XML_INVALID.sub("\ufffd", "" if value is None else str(value))


def render_junit(records: list[dict[str, Any]], manifest: dict[str, Any], run_dir: Path,
                 *, min_valid_pct: float = DEFAULT_JUNIT_MIN_VALID) -> str:
    run_id = manifest.get("run_id") or run_dir.name
    error_kinds: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for record in records:
        if record.get("error"):
            error_kinds[(model_label(record), record["task"])][record["error"].get("kind") or "error"] += 1
    groups = [g for (model, task), g in aggregate(records).items() if task != OVERALL]
    suites = ET.Element("testsuites", name="harness")
    suite = ET.SubElement(suites, "testsuite", name=_x(f"harness.{run_id}"),
                          timestamp=_x(manifest.get("created_at") or ""), hostname="harness")
    props = ET.SubElement(suite, "properties")
    for name, value in (("run_id", run_id), ("metric", "repaired_schema_valid"),
                        ("min_valid_pct", f"{min_valid_pct:g}"), ("models", ", ".join(manifest.get("models") or []))):
        ET.SubElement(props, "property", name=name, value=_x(value))
    failures = errors = 0
    total_time = 0.0
    for group in groups:
        g = group.summary()
        latency_sum = sum(group.latencies)
        total_time += latency_sum
        case = ET.SubElement(suite, "testcase", classname=_x(group.model), name=_x(group.task),
                             time=f"{latency_sum:.3f}")
        rates = _rates_text(group)
        # Free samples are judged after repair; a constrained-only group on its constrained rate.
        if group.free:
            valid, n, what = group.repaired_valid, group.free, "repaired schema-valid"
        else:
            valid, n, what = group.constrained_valid, group.constrained, "constrained schema-valid"
        if n and 100.0 * valid / n < min_valid_pct:
            failures += 1
            failure = ET.SubElement(case, "failure", type="schema_invalid",
                                    message=_x(f"{what} {100.0 * valid / n:.1f}% ({valid}/{n}) is below "
                                               f"{min_valid_pct:g}%; {rates}"))
            kinds = ", ".join(f"{k} {v}" for k, v in group.failures.most_common() if k != "backend_error")
            paths = ", ".join(f"{p} ({c})" for p, c in g["top_failing_paths"])
            failure.text = _x(f"{rates}\nraw failure kinds: {kinds or '-'}\ntop failing JSON paths: {paths or '-'}\n")
        if group.errors:
            errors += 1
            kinds = ", ".join(f"{k} {v}" for k, v in error_kinds[(group.model, group.task)].most_common())
            error = ET.SubElement(case, "error", type="backend_error",
                                  message=_x(f"{group.errors} of {group.samples} samples failed with backend errors "
                                             f"({kinds}); {rates}"))
            error.text = _x(f"backend errors by kind: {kinds}\n")
        ET.SubElement(case, "system-out").text = _x(rates)
    for element in (suites, suite):
        element.set("tests", str(len(groups)))
        element.set("failures", str(failures))
        element.set("errors", str(errors))
        element.set("time", f"{total_time:.3f}")
    suite.set("skipped", "0")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _rates_text(group: Any) -> str:
    parts = [f"samples {group.samples}", f"errors {group.errors}"]
    if group.free:
        parts += [f"raw parse {_fmt_pct(group.rate(group.raw_parse))} ({group.raw_parse}/{group.free})",
                  f"raw schema-valid {_fmt_pct(group.rate(group.raw_valid))} ({group.raw_valid}/{group.free})",
                  f"repaired schema-valid {_fmt_pct(group.rate(group.repaired_valid))} "
                  f"({group.repaired_valid}/{group.free})"]
    if group.constrained:
        parts.append(f"constrained schema-valid {_fmt_pct(group.rate(group.constrained_valid, group.constrained))} "
                     f"({group.constrained_valid}/{group.constrained})")
    return ", ".join(parts)


__all__ = ["render_file", "render_html", "render_junit", "highlight", "violation_needles"]
