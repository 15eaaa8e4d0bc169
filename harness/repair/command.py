"""``harness repair [FILE|-] [--schema S] [--wrapper content|fence|none]``.

Why a command: to look at what the repair engine makes of one saved model
output without running an evaluation.  The repaired JSON goes to stdout (so
it can be piped on), everything about the repair to stderr.  The lead wires
`run` into the argparse CLI.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TextIO

import jsonschema
import yaml

from .outcome import RepairError
from .pipeline import repair_output

#: --wrapper value -> the output_format the task would have asked for.
WRAPPERS: Final[dict[str, str]] = {"content": "content", "fence": "fence", "none": "json"}

_IDENTIFIER_RE: Final[re.Pattern[str]] = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def json_path(parts: Iterable[Any]) -> str:
    """``$.a[0]["Original Requirements"]`` for a jsonschema error path."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER_RE.fullmatch(str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return out


def load_schema(path: str) -> dict[str, Any] | bool:
    """Read a JSON or YAML schema file and check it is a Draft 2020-12 schema.

    Raises ValueError with a readable message."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read schema {path}: {exc.strerror or exc}") from None
    try:
        schema = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise ValueError(f"schema {path} is neither JSON nor YAML: {exc}") from None
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"schema {path} must be a mapping, not {type(schema).__name__}")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"schema {path} is not a valid JSON Schema: {exc.message}") from None
    return schema


def _read_source(source: str, stdin: TextIO) -> str:
    if source == "-":
        return stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from None


def run(source: str, schema_path: str | None, wrapper: str) -> int:
    """Repair one raw model output; 0 when it yields valid (and schema-valid) JSON.

    ``source`` is a file path or ``-`` for stdin; ``wrapper`` is what the
    output was supposed to be wrapped in: ``content``, ``fence`` or ``none``.
    stdout: the repaired JSON.  stderr: ``repairs: a, b`` (or ``repairs:
    none``), the error when no JSON came out, and schema violations with
    their JSON paths.
    """
    err = sys.stderr
    if wrapper not in WRAPPERS:
        print(f"error: --wrapper must be one of {', '.join(WRAPPERS)}, not {wrapper!r}", file=err)
        return 1
    try:
        schema = load_schema(schema_path) if schema_path is not None else None
        raw = _read_source(source, sys.stdin)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 1
    try:
        outcome = repair_output(raw, WRAPPERS[wrapper], schema)
    except RepairError as exc:
        print(f"error: {exc}", file=err)
        return 1
    print(f"repairs: {', '.join(outcome.repairs) or 'none'}", file=err)
    if not outcome.ok or outcome.text is None:
        print(f"error: no valid JSON: {outcome.error}", file=err)
        return 1
    print(outcome.text)
    if schema is None:
        return 0
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(outcome.value), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for error in errors:
        print(f"schema: {json_path(error.absolute_path)}: {error.message}", file=err)
    if errors:
        print(f"schema: {len(errors)} violation(s)", file=err)
        return 1
    print("schema: valid", file=err)
    return 0
