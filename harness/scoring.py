"""Scoring: strict parse, JSON Schema validation, repair, failure taxonomy.

Pure functions over text: no I/O, so that `harness rescore` can re-judge
yesterday's outputs with today's repair code. Raw and repaired verdicts are
always computed on the *same* output text, so the difference between them is
exactly what repair bought.
"""

from __future__ import annotations

import json
import re
from typing import Any


from .models import ParseResult, Score
from .repair import repair_output
from .repair.validators import validator_for

MAX_VIOLATIONS = 50
_FENCE = re.compile(r"\A```(?:json|JSON)?[ \t]*\n(.*)\n```\Z", re.S)
CONTENT_OPEN, CONTENT_CLOSE = "[CONTENT]", "[/CONTENT]"

FAILURE_KINDS = (
    "backend_error",
    "empty",
    "truncated",
    "prose_only",
    "wrapper_broken",
    "not_json",
    "schema_invalid",
)


def json_path(parts: Any) -> str:
    """Render a jsonschema error path as `$.key[0].other` (keys with spaces quoted)."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def validate(value: Any, schema: dict[str, Any] | None) -> list[dict[str, str]]:
    """Every schema violation with its JSON path (capped, most shallow first)."""
    if schema is None:
        return []
    errors = sorted(validator_for(schema).iter_errors(value), key=lambda e: (len(e.absolute_path), e.message))
    return [
        {"path": json_path(e.absolute_path), "message": e.message[:300], "rule": str(e.validator)}
        for e in errors[:MAX_VIOLATIONS]
    ]


def unwrap_strict(text: str, output_format: str) -> str | None:
    """The payload exactly as the task asked for it, or None if the wrapper is wrong."""
    stripped = text.strip()
    if output_format == "content":
        if not (stripped.startswith(CONTENT_OPEN) and stripped.endswith(CONTENT_CLOSE)):
            return None
        inner = stripped[len(CONTENT_OPEN) : -len(CONTENT_CLOSE)]
        if CONTENT_OPEN in inner or CONTENT_CLOSE in inner:
            return None
        return inner
    if output_format == "fence":
        match = _FENCE.match(stripped)
        return match.group(1) if match else None
    return stripped


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_strict(text: str, output_format: str, schema: dict[str, Any] | None) -> ParseResult:
    """Parse exactly what the task asked for; no forgiveness at all."""
    payload = unwrap_strict(text, output_format)
    if payload is None:
        return ParseResult(False, False, parse_error=f"expected output wrapped as {output_format}")
    try:
        value = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return ParseResult(False, False, parse_error=str(exc)[:300])
    violations = validate(value, schema)
    return ParseResult(True, not violations, value=value, violations=violations)


def classify_failure(text: str, output_format: str, finish_reason: str | None, raw: ParseResult) -> str | None:
    """Why a raw output failed, in the taxonomy every report uses (None = it didn't)."""
    if raw.schema_valid:
        return None
    if raw.parse_ok:
        return "schema_invalid"
    if not text.strip():
        return "empty"
    if finish_reason == "length":
        return "truncated"
    if "{" not in text and "[" not in text.replace(CONTENT_OPEN, "").replace(CONTENT_CLOSE, ""):
        return "prose_only"
    if output_format != "json" and unwrap_strict(text, output_format) is None:
        return "wrapper_broken"
    return "not_json"


def constraint_ignored(text: str, schema: dict[str, Any] | None) -> bool:
    """Whether a constrained output cannot have come from schema-constrained decoding.

    A grammar built from an object (array) schema forces the very first
    character to be `{` (`[`); truncation cannot change that. Prose, tags or a
    fence first mean the server silently dropped the constraint, which is the
    server's failure, not the model's.
    """
    stripped = text.lstrip()
    if not stripped or not isinstance(schema, dict):
        return False
    expected = {"object": "{", "array": "["}.get(schema.get("type"))  # type: ignore[arg-type]
    return expected is not None and stripped[0] != expected


def score_text(
    text: str,
    output_format: str,
    schema: dict[str, Any] | None,
    finish_reason: str | None = None,
    repair: bool = True,
    constrained: bool = False,
) -> Score:
    """Score one output raw and (optionally) repaired, on the same text.

    Constrained outputs are bare JSON by construction (the grammar cannot emit
    tags or fences), so they are judged as `json` whatever the task's wrapper.
    """
    if constrained:
        output_format = "json"
    raw = parse_strict(text, output_format, schema)
    failure = classify_failure(text, output_format, finish_reason, raw)
    ignored = constraint_ignored(text, schema) if constrained else None
    if raw.schema_valid or not repair:
        # A valid output is never touched by repair: repaired == raw by construction.
        return Score(raw=raw, repaired=raw, repairs_applied=[], repaired_text=None, failure=failure,
                     constraint_ignored=ignored)
    outcome = repair_output(text, output_format, schema)
    if not outcome.ok:
        repaired = ParseResult(False, False, parse_error=outcome.error)
    else:
        violations = validate(outcome.value, schema)
        repaired = ParseResult(True, not violations, value=outcome.value, violations=violations)
    return Score(raw=raw, repaired=repaired, repairs_applied=list(outcome.repairs), repaired_text=outcome.text,
                 failure=failure, constraint_ignored=ignored)


def score_to_dict(score: Score) -> dict[str, Any]:
    """The JSON-lines form of a score; values are dropped (the text is kept instead)."""

    def part(result: ParseResult) -> dict[str, Any]:
        return {
            "parse_ok": result.parse_ok,
            "schema_valid": result.schema_valid,
            "parse_error": result.parse_error,
            "violations": result.violations,
        }

    return {
        "raw": part(score.raw),
        "repaired": {**part(score.repaired), "repairs_applied": score.repairs_applied, "text": score.repaired_text},
        "failure": score.failure,
        "constraint_ignored": score.constraint_ignored,
    }
