"""Compiled JSON Schema validators, looked up by the schema object itself.

Why: every sample of a task comes with the same schema object, and compiling a
validator, or even hashing the schema's canonical JSON to find a compiled one
(7-22 µs for the bundled task schemas), cost more than validating a small
answer. Lookup by identity is a dict get; the canonical-JSON cache behind it
still shares one validator between equal schemas that are different objects.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema

_LIMIT = 256


@lru_cache(maxsize=_LIMIT)
def _compiled(schema_json: str, formats: bool) -> jsonschema.Draft202012Validator:
    checker = jsonschema.FormatChecker() if formats else None
    return jsonschema.Draft202012Validator(json.loads(schema_json), format_checker=checker)


# id(schema) -> (schema, validator with formats or None, without or None). The entry keeps the
# schema alive, so its id cannot be reused by another object; schemas are never modified once loaded.
_BY_IDENTITY: dict[tuple[int, bool], tuple[Any, jsonschema.Draft202012Validator]] = {}


def validator_for(schema: dict[str, Any], formats: bool = True) -> jsonschema.Draft202012Validator:
    """A Draft 2020-12 validator for `schema` (checking `format`s when `formats`)."""
    hit = _BY_IDENTITY.get((id(schema), formats))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = _compiled(json.dumps(schema, sort_keys=True), formats)
    if len(_BY_IDENTITY) >= _LIMIT:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[(id(schema), formats)] = (schema, validator)
    return validator
