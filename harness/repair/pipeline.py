"""The ordered repair pipeline: extract -> syntax -> schema.

Why one entry point with stages: the scorer records, per output, whether it
was valid raw, valid after repair, and *which* repairs it took.  Every stage
tries a strict parse first, so clean output passes through untouched and the
repaired text (canonical ``json.dumps``) repairs to itself with no repairs.

An output that parses *and* validates is never changed. One that parses but
breaks the schema (the classic `"original requirements"` key) goes straight
to the schema-aware stage: key case is the most common open-model failure and
needs no syntax repair at all.
"""

from __future__ import annotations

from typing import Any, Final

from .extract import extract_payload, strict_payload
from .kinds import ordered
from .lexer import dumps, loads_strict
from .outcome import RepairError, RepairOutcome
from .schema_aware import conform, preferred_container
from .syntax import repair_syntax
from .validators import validator_for

OUTPUT_FORMATS: Final[tuple[str, ...]] = ("json", "content", "fence")


def _check_arguments(text: Any, output_format: Any, schema: Any) -> None:
    if not isinstance(text, str):
        raise RepairError(f"text must be str, not {type(text).__name__}")
    if output_format not in OUTPUT_FORMATS:
        raise RepairError(f"output_format must be one of {OUTPUT_FORMATS}, not {output_format!r}")
    if schema is not None and not isinstance(schema, (dict, bool)):
        raise RepairError(f"schema must be a dict, a bool or None, not {type(schema).__name__}")


def _run(text: str, output_format: str, schema: dict[str, Any] | bool | None) -> RepairOutcome:
    payload = strict_payload(text, output_format)
    if payload is not None:
        ok, value = loads_strict(payload)
        if ok:
            if not isinstance(schema, dict) or _schema_valid(value, schema):
                return RepairOutcome(dumps(value), value, True, [], None)  # valid: never changed
            value, schema_kinds = conform(value, schema)
            return RepairOutcome(dumps(value), value, True, ordered(list(schema_kinds)), None)
    prefer = preferred_container(schema)
    extracted = extract_payload(text, output_format, prefer)
    kinds = list(extracted.kinds)
    result = repair_syntax(extracted.payload)
    kinds.extend(result.kinds)
    if not result.ok:
        return RepairOutcome(None, None, False, ordered(kinds), result.error or "no JSON value found")
    value = result.value
    if isinstance(schema, dict) and (kinds or not _schema_valid(value, schema)):
        # After any syntax repair the text is ours anyway: normalise it towards the schema.
        value, schema_kinds = conform(value, schema)
        kinds.extend(schema_kinds)
    return RepairOutcome(dumps(value), value, True, ordered(kinds), None)


def _schema_valid(value: Any, schema: dict[str, Any]) -> bool:
    """Whether a value already fits: a fitting value is left exactly as the model wrote it."""
    return validator_for(schema, formats=False).is_valid(value)


def repair_output(text: str, output_format: str, schema: dict[str, Any] | bool | None = None) -> RepairOutcome:
    """Repair one raw model output; see the package docstring.

    Raises RepairError only for a wrong call; any failure on the text itself
    (garbage, too large, too deep, an internal error) is ``ok=False``.
    """
    _check_arguments(text, output_format, schema)
    try:
        return _run(text, output_format, schema)
    except Exception as exc:  # noqa: BLE001 - the contract: broken output never raises
        return RepairOutcome(None, None, False, [], f"repair failed: {type(exc).__name__}: {exc}")
