"""Scoring: strict parse, schema validation with JSON paths, failure taxonomy, repair never touching valid output."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.models import ParseResult
from harness.scoring import (
    FAILURE_KINDS,
    MAX_VIOLATIONS,
    classify_failure,
    json_path,
    parse_strict,
    score_text,
    score_to_dict,
    validate,
)

ITEMS_SCHEMA = {
    "type": "object",
    "required": ["customer", "items"],
    "additionalProperties": False,
    "properties": {
        "customer": {"type": "string", "minLength": 1},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            },
        },
    },
}
PRD_SCHEMA = {
    "type": "object",
    "required": ["Original Requirements", "Product Goals"],
    "properties": {
        "Original Requirements": {"type": "string"},
        "Product Goals": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
}
VALID = {"customer": "ACME", "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]}
VALID_TEXT = json.dumps(VALID)


def assert_untouched(score) -> None:
    """A raw-valid output: repair did nothing and the repaired verdict is the raw one."""
    assert score.raw.parse_ok and score.raw.schema_valid
    assert score.failure is None
    assert score.repairs_applied == []
    assert score.repaired == score.raw
    assert score.repaired_text is None or score.repaired_text == score.raw  # never a rewritten text


def test_valid_bare_json() -> None:
    score = score_text(VALID_TEXT, "json", ITEMS_SCHEMA)
    assert_untouched(score)
    assert score.raw.value == VALID
    assert score.raw.violations == []


def test_valid_json_with_surrounding_whitespace() -> None:
    assert_untouched(score_text(f"\n  {VALID_TEXT}  \n", "json", ITEMS_SCHEMA))


@pytest.mark.parametrize("text", [
    f"[CONTENT]\n{json.dumps(VALID, indent=2)}\n[/CONTENT]",
    f"[CONTENT]{VALID_TEXT}[/CONTENT]",
    f"\n[CONTENT]\n{VALID_TEXT}\n[/CONTENT]\n",
])
def test_valid_content_wrapped(text: str) -> None:
    score = score_text(text, "content", ITEMS_SCHEMA)
    assert_untouched(score)
    assert score.raw.value == VALID


@pytest.mark.parametrize("text", [
    f"```json\n{json.dumps(VALID, indent=2)}\n```",
    f"```\n{VALID_TEXT}\n```",
])
def test_valid_fence(text: str) -> None:
    score = score_text(text, "fence", ITEMS_SCHEMA)
    assert_untouched(score)
    assert score.raw.value == VALID


def test_the_wrapper_asked_for_is_required() -> None:
    # bare JSON is fine JSON, but the task asked for [CONTENT] tags: raw fails, as wrapper_broken
    score = score_text(VALID_TEXT, "content", ITEMS_SCHEMA, repair=False)
    assert not score.raw.parse_ok
    assert score.failure == "wrapper_broken"
    assert "content" in (score.raw.parse_error or "")
    # and a fenced answer to a bare-JSON task is not strictly JSON
    fenced = score_text(f"```json\n{VALID_TEXT}\n```", "json", ITEMS_SCHEMA, repair=False)
    assert not fenced.raw.parse_ok and fenced.failure == "not_json"


def test_schema_invalid_reports_json_paths_with_quoted_keys() -> None:
    value = {"Original Requirements": 5, "Product Goals": ["a", "b", "c", "d"]}
    score = score_text(json.dumps(value), "json", PRD_SCHEMA, repair=False)
    assert score.raw.parse_ok and not score.raw.schema_valid
    assert score.failure == "schema_invalid"
    paths = {v["path"]: v for v in score.raw.violations}
    assert paths['$["Original Requirements"]']["rule"] == "type"
    assert paths['$["Product Goals"]']["rule"] == "maxItems"


def test_schema_invalid_nested_array_path() -> None:
    value = {"customer": "ACME", "items": [{"sku": "A-1", "qty": "two"}, {"sku": "B", "qty": 0}]}
    violations = score_text(json.dumps(value), "json", ITEMS_SCHEMA, repair=False).raw.violations
    by_path = {v["path"]: v["rule"] for v in violations}
    assert by_path["$.items[0].qty"] == "type"
    assert by_path["$.items[1].qty"] == "minimum"


def test_missing_and_extra_keys_are_reported_at_the_object() -> None:
    violations = validate({"items": [], "note": "x"}, ITEMS_SCHEMA)
    rules = {(v["path"], v["rule"]) for v in violations}
    assert ("$", "required") in rules and ("$", "additionalProperties") in rules
    assert any("customer" in v["message"] for v in violations)


def test_violations_are_capped_and_shallow_first() -> None:
    schema = {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    value = [{"n": "x"} for _ in range(MAX_VIOLATIONS + 20)]
    violations = validate(value, schema)
    assert len(violations) == MAX_VIOLATIONS
    schema2 = {"type": "object", "required": ["a"], "properties": {"b": {"type": "object", "properties":
                                                                         {"c": {"type": "integer"}}}}}
    assert validate({"b": {"c": "x"}}, schema2)[0]["path"] == "$"


def test_json_path_rendering() -> None:
    assert json_path([]) == "$"
    assert json_path(["items", 0, "qty"]) == "$.items[0].qty"
    assert json_path(["Original Requirements"]) == '$["Original Requirements"]'
    assert json_path(["a-b", 2]) == '$["a-b"][2]'


def test_format_keyword_is_checked() -> None:
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    assert not score_text('{"email": "not an address"}', "json", schema, repair=False).raw.schema_valid
    assert score_text('{"email": "a@b.example"}', "json", schema, repair=False).raw.schema_valid


# --- failure taxonomy --------------------------------------------------------


@pytest.mark.parametrize("text, fmt, finish, expected", [
    ("", "json", "stop", "empty"),
    ("  \n\t ", "content", "stop", "empty"),
    ("", "json", "length", "empty"),
    ("Sure! I would be happy to help with that order.", "json", "stop", "prose_only"),
    ("[CONTENT]I cannot answer that.[/CONTENT]", "content", "stop", "prose_only"),
    ('{"customer": "ACME", "items": [{"sku": "A', "json", "length", "truncated"),
    ('[CONTENT]\n{"customer": "ACME", "ite', "content", "length", "truncated"),
    ('{"customer": "ACME", "items": [{"sku": "A', "json", "stop", "not_json"),
    (VALID_TEXT, "content", "stop", "wrapper_broken"),
    (f"[CONTENT]{VALID_TEXT}", "content", "stop", "wrapper_broken"),
    (f"Here you go:\n[CONTENT]{VALID_TEXT}[/CONTENT]", "content", "stop", "wrapper_broken"),
    (f"```json\n{VALID_TEXT}", "fence", "stop", "wrapper_broken"),
    ("{customer: 'ACME', items: []}", "json", "stop", "not_json"),
    ('{"customer": "ACME", "items": [],}', "json", "stop", "not_json"),
    ("[CONTENT]{'customer': 'ACME', 'items': []}[/CONTENT]", "content", "stop", "not_json"),
    ('{"customer": "ACME"}', "json", "stop", "schema_invalid"),
    ('{"customer": "ACME", "items": [{"sku": "A", "qty": 0}]}', "json", "length", "schema_invalid"),
])
def test_failure_kinds(text: str, fmt: str, finish: str, expected: str) -> None:
    assert expected in FAILURE_KINDS
    score = score_text(text, fmt, ITEMS_SCHEMA, finish, repair=False)
    assert score.failure == expected
    raw = parse_strict(text, fmt, ITEMS_SCHEMA)
    assert classify_failure(text, fmt, finish, raw) == expected


def test_classify_failure_is_none_for_valid() -> None:
    assert classify_failure(VALID_TEXT, "json", "stop", ParseResult(True, True, value=VALID)) is None


def test_nan_and_infinity_are_not_strict_json() -> None:
    schema = {"type": "object", "properties": {"score": {"type": "number"}}}
    for text in ('{"score": NaN}', '{"score": Infinity}', '{"score": -Infinity}'):
        score = score_text(text, "json", schema, repair=False)
        assert not score.raw.parse_ok, text
        assert score.failure == "not_json"


def test_deep_nesting_does_not_crash() -> None:
    text = "[" * 100_000 + "]" * 100_000
    score = score_text(text, "json", {"type": "array"}, repair=False)
    assert not score.raw.parse_ok


# --- repair ------------------------------------------------------------------


def test_no_repair_keeps_raw_verdict_for_invalid_output() -> None:
    score = score_text('{"customer": "ACME", "items": [],}', "json", ITEMS_SCHEMA, repair=False)
    assert score.repaired == score.raw and score.repairs_applied == [] and score.repaired_text is None


def test_repair_rescues_a_trailing_comma_without_changing_the_raw_verdict() -> None:
    text = '{"customer": "ACME", "items": [{"sku": "A-1", "qty": 2},],}'
    score = score_text(text, "json", ITEMS_SCHEMA)
    assert not score.raw.parse_ok and score.failure == "not_json"
    assert score.repaired.parse_ok and score.repaired.schema_valid
    assert score.repaired.value == {"customer": "ACME", "items": [{"sku": "A-1", "qty": 2}]}
    assert score.repairs_applied  # it says what it did
    assert json.loads(score.repaired_text) == score.repaired.value


def test_repaired_output_is_revalidated_against_the_schema() -> None:
    text = '[CONTENT]{"customer": "", "items": [],}[/CONTENT]'  # fixable syntax, but minLength fails
    score = score_text(text, "content", ITEMS_SCHEMA)
    assert score.repaired.parse_ok
    assert not score.repaired.schema_valid
    assert any(v["path"] == "$.customer" for v in score.repaired.violations)


def test_prose_only_cannot_be_repaired_into_a_valid_sample() -> None:
    score = score_text("I am sorry, I cannot help with that.", "json", ITEMS_SCHEMA)
    assert score.failure == "prose_only"
    assert not score.repaired.schema_valid


def test_score_to_dict_shape() -> None:
    data = score_to_dict(score_text('{"customer": "ACME"}', "json", ITEMS_SCHEMA, repair=False))
    assert set(data) == {"raw", "repaired", "failure", "constraint_ignored"}
    assert data["constraint_ignored"] is None  # free mode
    assert data["raw"]["schema_valid"] is False and data["raw"]["violations"][0]["path"] == "$"
    assert data["repaired"]["repairs_applied"] == [] and data["failure"] == "schema_invalid"
    json.dumps(data)  # serialisable


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)), max_leaves=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, indent=st.sampled_from([None, 2]), fmt=st.sampled_from(["json", "content", "fence"]))
def test_valid_raw_output_is_never_changed_by_repair(value, indent, fmt) -> None:
    body = json.dumps(value, indent=indent, ensure_ascii=False)
    text = {"json": body, "content": f"[CONTENT]\n{body}\n[/CONTENT]", "fence": f"```json\n{body}\n```"}[fmt]
    score = score_text(text, fmt, {"type": ["object", "array", "string", "number", "boolean", "null"]})
    assert_untouched(score)
    assert score.raw.value == value


@pytest.mark.parametrize(("text", "ignored"), [
    ('{"customer": "ACME", "items": [', False),            # truncated, but the grammar was obeyed
    ('  {"customer": "ACME"}', False),
    ('[CONTENT]{"customer": "ACME"}[/CONTENT]', True),    # tags: no grammar would allow them
    ('Sure! Here is the JSON: {"customer": "ACME"}', True),
    ('```json\n{"customer": "ACME"}\n```', True),
    ("", False),
])
def test_constraint_ignored_is_detected_from_the_first_character(text: str, ignored: bool) -> None:
    score = score_text(text, "content", ITEMS_SCHEMA, constrained=True)
    assert score.constraint_ignored is ignored
    free = score_text(text, "content", ITEMS_SCHEMA)
    assert free.constraint_ignored is None


def test_constrained_output_is_judged_as_bare_json_even_for_wrapped_tasks() -> None:
    text = json.dumps({"customer": "ACME", "items": [{"sku": "A-1", "qty": 2}]})
    assert score_text(text, "content", ITEMS_SCHEMA, constrained=True).raw.parse_ok
    assert not score_text(text, "content", ITEMS_SCHEMA).raw.parse_ok
