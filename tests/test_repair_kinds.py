"""Table-driven tests of the repair engine, one block per repair kind.

Positive cases: the damage is fixed (exact value) and named (exact repair list,
in pipeline order).  Negative cases: a look-alike input where that kind must
*not* be named.  Every positive case is also checked for idempotence, and a
table of valid outputs for being left untouched.
"""

from __future__ import annotations

import json

import jsonschema
from typing import Any

import pytest

from harness.repair import KIND_DOCS, REPAIR_KINDS, RepairError, RepairOutcome, repair_output
from harness.repair.kinds import ordered
from harness.repair.schema_aware import normalise_key
from harness.repair.structure import close_truncation, fix_edge_brackets, remove_stray_closer_lines

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "Original Requirements": {"type": "string"},
        "Product Goals": {"type": "array", "items": {"type": "string"}},
        "Count": {"type": "integer"},
        "Ratio": {"type": "number"},
        "Flag": {"type": "boolean"},
        "Label": {"type": ["string", "integer"]},
        "Items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
        "Inner": {"type": "object", "properties": {"Deep Key": {"type": "integer"}}},
    },
    "$defs": {"item": {"type": "object", "properties": {"Item Name": {"type": "string"}, "n": {"type": "integer"}}}},
}
LIST_SCHEMA: dict[str, Any] = {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}}

# (id, output_format, text, schema, expected value, expected repairs)
POSITIVE: list[tuple[str, str, str, dict[str, Any] | None, Any, list[str]]] = [
    # -- extraction -------------------------------------------------------------
    ("wrapper_missing/content", "content", '{"a": 1}', None, {"a": 1}, ["wrapper_missing"]),
    ("wrapper_missing/fence", "fence", '{"a": 1}', None, {"a": 1}, ["wrapper_missing"]),
    ("content_tags_stripped", "json", '[CONTENT]\n{"a": 1}\n[/CONTENT]', None, {"a": 1}, ["content_tags_stripped"]),
    ("content_tag_malformed/case", "content", '[content]\n{"a": 1}\n[/content]', None, {"a": 1},
     ["content_tag_malformed"]),
    ("content_tag_malformed/space", "content", '[CONTENT]{"a": 1}[ /CONTENT ]', None, {"a": 1},
     ["content_tag_malformed"]),
    ("content_tag_repeated", "content", 'Here is the PRD.\n[CONTENT]\n[CONTENT]\n{"a": 1}\n[/CONTENT]', None,
     {"a": 1}, ["content_tag_repeated", "prose_stripped"]),
    ("content_tag_repeated/adjacent", "content", '[CONTENT][CONTENT]{"a": [1, 2]}[/CONTENT]', None,
     {"a": [1, 2]}, ["content_tag_repeated"]),
    ("content_tag_no_slash", "content", '[CONTENT]\n{"a": 1}\n[CONTENT]', None, {"a": 1}, ["content_tag_no_slash"]),
    ("content_tag_missing_open", "content", '{"a": 1}\n[/CONTENT]', None, {"a": 1}, ["content_tag_missing_open"]),
    ("content_tag_missing_close", "content", '[CONTENT]\n{"a": 1}\n', None, {"a": 1},
     ["content_tag_missing_close"]),
    ("content_tag_missing_close/truncated", "content", '[CONTENT]\n{"a": [1, 2', None, {"a": [1, 2]},
     ["content_tag_missing_close", "truncation_closed"]),
    ("fence_stripped", "json", '```json\n{"a": 1}\n```', None, {"a": 1}, ["fence_stripped"]),
    ("fence_stripped/no_lang", "json", '```\n{"a": 1}\n```', None, {"a": 1}, ["fence_stripped"]),
    ("fence_stripped/inline", "json", '```json{"a": 1}```', None, {"a": 1}, ["fence_stripped"]),
    ("fence_stripped/in_tags", "content", '[CONTENT]\n```json\n{"a": 1}\n```\n[/CONTENT]', None, {"a": 1},
     ["fence_stripped"]),
    ("fence_stripped/around_tags", "content", '```\n[CONTENT]\n{"a": 1}\n[/CONTENT]\n```', None, {"a": 1},
     ["fence_stripped"]),
    ("fence_unclosed", "fence", '```json\n{"a": 1}\n', None, {"a": 1}, ["fence_unclosed"]),
    ("prose_stripped/tags", "content", 'Sure! Here it is:\n[CONTENT]\n{"a": 1}\n[/CONTENT]\nHope this helps.',
     None, {"a": 1}, ["prose_stripped"]),
    ("prose_stripped/fence", "fence", 'The answer:\n```json\n{"a": 1}\n```\nDone.', None, {"a": 1},
     ["prose_stripped"]),
    ("json_extracted_from_prose/before", "json", 'Here is the JSON:\n{"a": 1}', None, {"a": 1},
     ["json_extracted_from_prose"]),
    ("json_extracted_from_prose/after", "json", '{"a": [1, 2]}\nLet me know if you need anything else.', None,
     {"a": [1, 2]}, ["json_extracted_from_prose"]),
    ("json_extracted_from_prose/brackets_in_prose", "json",
     'As requested [see notes], the result (v2):\n{"a": {"b": [1, 2, 3]}}\nThanks [1].', None,
     {"a": {"b": [1, 2, 3]}}, ["json_extracted_from_prose"]),
    ("json_extracted_from_prose/quotes_in_prose", "json", 'He said "ok" {"a": "x}y"} and left', None,
     {"a": "x}y"}, ["json_extracted_from_prose"]),
    ("json_extracted_from_prose/prefer_schema_type", "json", 'Options [1, 2] then {"Count": 3} done', SCHEMA,
     {"Count": 3}, ["json_extracted_from_prose"]),
    ("json_extracted_from_prose/in_tags", "content", '[CONTENT]\nThe PRD:\n{"a": 1}\n[/CONTENT]', None,
     {"a": 1}, ["json_extracted_from_prose"]),
    # -- strings ------------------------------------------------------------------
    ("triple_quoted_strings", "json", '{"a": """line 1\nline "2" ok""", "b": 1}', None,
     {"a": 'line 1\nline "2" ok', "b": 1}, ["triple_quoted_strings"]),
    ("triple_quoted_strings/single", "json", "{\"a\": '''x\ny''', \"b\": 1}", None, {"a": "x\ny", "b": 1},
     ["triple_quoted_strings"]),
    ("unescaped_quotes/line", "json", '{\n  "a": "he said "hi" to me",\n  "b": 1\n}', None,
     {"a": 'he said "hi" to me', "b": 1}, ["unescaped_quotes"]),
    ("unescaped_quotes/item", "json", '{\n  "a": [\n    "the "x" one",\n    "y"\n  ]\n}', None,
     {"a": ['the "x" one', "y"]}, ["unescaped_quotes"]),
    ("unescaped_quotes/mermaid", "json",
     '{\n  "Chart": "quadrantChart\\n    "Tomato": [0.75, 0.25]\\n    "Focus": [0.7, 0.7]",\n  "b": 1\n}',
     None, {"Chart": 'quadrantChart\n    "Tomato": [0.75, 0.25]\n    "Focus": [0.7, 0.7]', "b": 1},
     ["unescaped_quotes"]),
    ("unescaped_quotes/inline", "json", '{"a": "he said "hi" to me", "b": 1}', None,
     {"a": 'he said "hi" to me', "b": 1}, ["unescaped_quotes"]),
    # -- structure ----------------------------------------------------------------
    ("edge_brackets/leading", "json", '[{"a": 1, "b": [1, 2]}', None, [{"a": 1, "b": [1, 2]}], ["edge_brackets"]),
    ("edge_brackets/trailing", "json", '{"a": 1, "b": [1, 2]}]', None, {"a": 1, "b": [1, 2]}, ["edge_brackets"]),
    ("edge_brackets/trailing_many", "json", '{"a": 1}\n]\n}', None, {"a": 1}, ["edge_brackets"]),
    ("edge_brackets/mismatched_last", "json", '{"a": 1, "b": [1, 2]]', None, {"a": 1, "b": [1, 2]},
     ["edge_brackets"]),
    ("edge_brackets/array_closed_by_brace", "json", '[1, 2}', None, [1, 2], ["edge_brackets"]),
    ("edge_brackets/missing_opening_brace", "json", '"a": 1, "b": 2}', None, {"a": 1, "b": 2}, ["edge_brackets"]),
    ("edge_brackets/leading+schema", "json", '[{"Count": 1}', SCHEMA, {"Count": 1},
     ["edge_brackets", "unwrap_single_item_list"]),
    ("stray_closer_lines/array", "json", '{\n  "a": [1, 2],\n  ],\n  "b": 2\n}', None, {"a": [1, 2], "b": 2},
     ["stray_closer_lines"]),
    ("stray_closer_lines/object", "json", '{\n  "a": {"x": 1},\n},\n  "b": 2\n}', None, {"a": {"x": 1}, "b": 2},
     ["stray_closer_lines"]),
    ("stray_closer_lines/before_end", "json", '{\n  "a": [1],\n  ]\n}', None, {"a": [1]},
     ["stray_closer_lines", "trailing_commas"]),
    ("truncation_closed/in_string", "json", '{"a": [1, 2, {"b": "hel', None, {"a": [1, 2, {"b": "hel"}]},
     ["truncation_closed"]),
    ("truncation_closed/closers", "json", '{"a": [1, 2, {"b": "hello"}', None, {"a": [1, 2, {"b": "hello"}]},
     ["truncation_closed"]),
    ("truncation_closed/after_comma", "json", '{"a": 1, "b": [1, 2],', None, {"a": 1, "b": [1, 2]},
     ["truncation_closed"]),
    ("truncation_closed/dangling_key", "json", '{"a": 1, "b":', None, {"a": 1}, ["truncation_closed"]),
    ("truncation_closed/partial_key", "json", '{"a": 1, "bc', None, {"a": 1}, ["truncation_closed"]),
    ("truncation_closed/first_key", "json", '{"a": {"b', None, {"a": {}}, ["truncation_closed"]),
    ("truncation_closed/escape", "json", '["ab\\', None, ["ab"], ["truncation_closed"]),
    ("truncation_closed/empty_containers", "json", '{"a": [{', None, {"a": [{}]}, ["truncation_closed"]),
    ("truncation_closed/line_comment", "json", '{"a": 1 // more to come', None, {"a": 1},
     ["comments_removed", "truncation_closed"]),
    ("truncation_closed/block_comment", "json", '{"a": 1 /* more', None, {"a": 1},
     ["comments_removed", "truncation_closed"]),
    ("truncation_closed/url_not_a_comment", "json", '{"a": http://x', None, {"a": "http://x"},
     ["truncation_closed", "json_syntax_other"]),
    # -- json_repair, attributed --------------------------------------------------
    ("comments_removed", "json", '{"a": 1, // one\n "b": 2 # two\n, /* three */ "c": "http://x#y"}', None,
     {"a": 1, "b": 2, "c": "http://x#y"}, ["comments_removed"]),
    ("single_quotes", "json", "{'a': 'x', 'b': [1, 'y']}", None, {"a": "x", "b": [1, "y"]}, ["single_quotes"]),
    ("single_quotes/apostrophe_in_double", "json", "{'a': \"it's\", 'b': 1}", None, {"a": "it's", "b": 1},
     ["single_quotes"]),
    ("python_literals", "json", '{"a": True, "b": False, "c": None}', None, {"a": True, "b": False, "c": None},
     ["python_literals"]),
    ("trailing_commas", "json", '{"a": [1, 2,], "b": {"c": 1,},}', None, {"a": [1, 2], "b": {"c": 1}},
     ["trailing_commas"]),
    ("missing_commas/members", "json", '{\n  "a": "x"\n  "b": "y"\n}', None, {"a": "x", "b": "y"},
     ["missing_commas"]),
    ("missing_commas/items", "json", '{"a": [1 2 3], "b": [{"x": 1} {"y": 2}]}', None,
     {"a": [1, 2, 3], "b": [{"x": 1}, {"y": 2}]}, ["missing_commas"]),
    ("raw_newlines_in_strings", "json", '{"a": "line 1\nline 2\tend", "b": 1}', None,
     {"a": "line 1\nline 2\tend", "b": 1}, ["raw_newlines_in_strings"]),
    ("raw_newlines_in_strings/multiline_member", "json",
     '{\n  "Chart": "quadrantChart\n    "A": [0.1, 0.2]\n    "B": [0.3, 0.4]",\n  "n": 1\n}', None,
     {"Chart": 'quadrantChart\n    "A": [0.1, 0.2]\n    "B": [0.3, 0.4]', "n": 1},
     ["unescaped_quotes", "raw_newlines_in_strings"]),
    ("raw_newlines_in_strings/multiline_crlf", "json", '{\r\n  "a": "x\r\n  y",\r\n  "n": 1,\r\n}', None,
     {"a": "x\r\n  y", "n": 1}, ["trailing_commas", "raw_newlines_in_strings"]),
    ("raw_newlines_in_strings+trailing", "json", '{"a": "line 1\nline 2", "b": 1,}', None,
     {"a": "line 1\nline 2", "b": 1}, ["trailing_commas", "raw_newlines_in_strings"]),
    ("mismatched_brackets", "json", '{"a": [1, 2}, "b": 3}', None, {"a": [1, 2], "b": 3},
     ["mismatched_brackets"]),
    ("json_syntax_other/unquoted_key", "json", '{a: 1}', None, {"a": 1}, ["json_syntax_other"]),
    # -- schema-aware ---------------------------------------------------------------
    ("key_case", "json", '{"original requirements": "x", "product_goals": ["g"],}', SCHEMA,
     {"Original Requirements": "x", "Product Goals": ["g"]}, ["trailing_commas", "key_case"]),
    ("key_case/nested", "json", '{"inner": {"deep  KEY": 7}, "items": [{"item_name": "a"}],}', SCHEMA,
     {"Inner": {"Deep Key": 7}, "Items": [{"Item Name": "a"}]}, ["trailing_commas", "key_case"]),
    ("wrap_in_list", "json", '{"Items": {"Item Name": "a"},}', SCHEMA, {"Items": [{"Item Name": "a"}]},
     ["trailing_commas", "wrap_in_list"]),
    ("wrap_in_list/top", "json", '{"a": 1,}', LIST_SCHEMA, [{"a": 1}], ["trailing_commas", "wrap_in_list"]),
    ("unwrap_single_item_list", "json", '[{"Count": 1},]', SCHEMA, {"Count": 1},
     ["trailing_commas", "unwrap_single_item_list"]),
    ("number_from_string", "json", '{"Count": "3", "Ratio": " 2.5 ", "Items": [{"n": "-4"}],}', SCHEMA,
     {"Count": 3, "Ratio": 2.5, "Items": [{"n": -4}]}, ["trailing_commas", "number_from_string"]),
    ("boolean_from_string", "json", "{'Flag': 'True'}", SCHEMA, {"Flag": True},
     ["single_quotes", "boolean_from_string"]),
    # -- combinations seen in MetaGPT-style output ----------------------------------------
    ("metagpt/combo", "content",
     "Sure.\n[CONTENT]\n[CONTENT]\n```json\n{\n  'original requirements': 'x',\n  \"Count\": \"2\",\n"
     "  \"Product Goals\": [\"a\", \"b\",],\n],\n  \"Flag\": True\n}\n```\n[CONTENT]\nbye",
     SCHEMA, {"Original Requirements": "x", "Count": 2, "Product Goals": ["a", "b"], "Flag": True},
     ["content_tag_repeated", "content_tag_no_slash", "fence_stripped", "prose_stripped", "stray_closer_lines",
      "single_quotes", "python_literals", "trailing_commas", "key_case", "number_from_string"]),
]

# (id, output_format, text, schema, kind that must NOT be named)
NEGATIVE: list[tuple[str, str, str, dict[str, Any] | None, str]] = [
    ("wrapper_missing/tags_present", "content", '[CONTENT]{"a": 1,}[/CONTENT]', None, "wrapper_missing"),
    ("wrapper_missing/json_format", "json", '{"a": 1,}', None, "wrapper_missing"),
    ("wrapper_missing/fence_present", "fence", '```json\n{"a": 1,}\n```', None, "wrapper_missing"),
    ("content_tags_stripped/content", "content", '[CONTENT]{"a": 1,}[/CONTENT]', None, "content_tags_stripped"),
    ("content_tag_malformed/canonical", "content", '[CONTENT]{"a": 1,}[/CONTENT]', None, "content_tag_malformed"),
    ("content_tag_repeated/no_slash", "content", '[CONTENT]\n{"a": 1}\n[CONTENT]', None, "content_tag_repeated"),
    ("content_tag_repeated/two_blocks", "content", '[CONTENT]x[/CONTENT]\n[CONTENT]{"a": 1}[/CONTENT]', None,
     "content_tag_repeated"),
    ("content_tag_no_slash/repeated", "content", '[CONTENT][CONTENT]{"a": 1}[/CONTENT]', None,
     "content_tag_no_slash"),
    ("content_tag_no_slash/proper", "content", '[CONTENT]{"a": 1,}[/CONTENT]', None, "content_tag_no_slash"),
    ("content_tag_missing_open/missing_close", "content", '[CONTENT]{"a": 1}', None, "content_tag_missing_open"),
    ("content_tag_missing_close/no_slash", "content", '[CONTENT]{"a": 1}[CONTENT]', None,
     "content_tag_missing_close"),
    ("fence_stripped/fence_format", "fence", '```json\n{"a": 1,}\n```', None, "fence_stripped"),
    ("content_tags_stripped/tag_in_string", "json", '{"a": "wrap it in [CONTENT] tags",}', None,
     "content_tags_stripped"),
    ("fence_stripped/backticks_in_string", "json", '{"a": "use ```code``` here",}', None, "fence_stripped"),
    ("fence_unclosed/closed", "json", '```json\n{"a": 1}\n```', None, "fence_unclosed"),
    ("prose_stripped/whitespace_only", "content", '\n  [CONTENT]\n{"a": 1,}\n[/CONTENT]  \n', None,
     "prose_stripped"),
    ("prose_stripped/json_format", "json", 'Here: {"a": 1}', None, "prose_stripped"),
    ("json_extracted_from_prose/pure", "json", '{"a": 1,}', None, "json_extracted_from_prose"),
    ("json_extracted_from_prose/stray_line", "json", '{\n  "a": {"x": 1},\n},\n  "b": 2\n}', None,
     "json_extracted_from_prose"),
    ("json_extracted_from_prose/edge", "json", '{"a": 1}]', None, "json_extracted_from_prose"),
    ("triple_quoted_strings/empty_strings", "json", '{"a": "", "b": "x",}', None, "triple_quoted_strings"),
    ("triple_quoted_strings/escaped", "json", '{"a": "\\"\\"\\"x\\"\\"\\"",}', None, "triple_quoted_strings"),
    ("unescaped_quotes/escaped", "json", '{"a": "say \\"hi\\"",}', None, "unescaped_quotes"),
    ("unescaped_quotes/two_members", "json", '{"a": "x", "b": "y",}', None, "unescaped_quotes"),
    ("unescaped_quotes/missing_comma", "json", '{\n  "a": "x"\n  "b": "y"\n}', None, "unescaped_quotes"),
    ("edge_brackets/inner_mismatch", "json", '{"a": [1, 2}, "b": 3}', None, "edge_brackets"),
    ("edge_brackets/truncated_list", "json", '[{"a": 1}, {"b": 2}', None, "edge_brackets"),
    ("edge_brackets/trailing_comma", "json", '{"a": [1, 2,]}', None, "edge_brackets"),
    ("stray_closer_lines/trailing_comma", "json", '{\n  "a": [1, 2,\n  ],\n  "b": 1\n}', None,
     "stray_closer_lines"),
    ("stray_closer_lines/last_line", "json", '{\n  "a": [1, 2],\n}', None, "stray_closer_lines"),
    ("truncation_closed/balanced", "json", '{"a": [1, 2,],}', None, "truncation_closed"),
    ("truncation_closed/edge", "json", '[{"a": 1}', None, "truncation_closed"),
    ("comments_removed/in_strings", "json", '{"a": "http://x // y # z /* w */",}', None, "comments_removed"),
    ("single_quotes/apostrophes", "json", '{"a": "it\'s Bob\'s",}', None, "single_quotes"),
    ("single_quotes/unquoted_apostrophe", "json", "{\"a\": 1, \"b\": [don't]}", None, "single_quotes"),
    ("python_literals/json_literals", "json", '{"a": true, "b": null,}', None, "python_literals"),
    ("python_literals/in_strings", "json", '{"a": "True", "b": "None",}', None, "python_literals"),
    ("trailing_commas/missing", "json", '{"a": [1 2]}', None, "trailing_commas"),
    ("missing_commas/trailing", "json", '{"a": [1, 2,]}', None, "missing_commas"),
    ("missing_commas/unescaped", "json", '{"a": "x "y" z", "b": 1}', None, "missing_commas"),
    ("raw_newlines_in_strings/escaped", "json", '{"a": "x\\ny",}', None, "raw_newlines_in_strings"),
    ("raw_newlines_in_strings/between_tokens", "json", '{\n"a":\n1,\n}', None, "raw_newlines_in_strings"),
    ("mismatched_brackets/edge", "json", '{"a": [1, 2]]', None, "mismatched_brackets"),
    ("json_syntax_other/named", "json", '{"a": 1,}', None, "json_syntax_other"),
    ("json_syntax_other/hand_only", "json", '{"a": 1', None, "json_syntax_other"),
    ("wrap_in_list/already_list", "json", '{"Items": [{"n": 1}],}', SCHEMA, "wrap_in_list"),
    ("wrap_in_list/no_schema", "json", '{"Items": {"n": 1},}', None, "wrap_in_list"),
    ("wrap_in_list/scalar_items", "json", '{"Product Goals": {"x": 1},}', SCHEMA, "wrap_in_list"),
    ("unwrap_single_item_list/two", "json", '[{"Count": 1}, {"Count": 2},]', SCHEMA, "unwrap_single_item_list"),
    ("key_case/hyphen", "json", '{"Product-Goals": ["g"],}', SCHEMA, "key_case"),
    ("key_case/collision", "json", '{"Count": 1, "count": 2,}', SCHEMA, "key_case"),
    ("key_case/exact", "json", '{"Count": 1,}', SCHEMA, "key_case"),
    ("number_from_string/string_allowed", "json", '{"Label": "3",}', SCHEMA, "number_from_string"),
    ("number_from_string/not_integer", "json", '{"Count": "3.5",}', SCHEMA, "number_from_string"),
    ("number_from_string/not_number", "json", '{"Ratio": "3 apples",}', SCHEMA, "number_from_string"),
    ("number_from_string/no_schema", "json", '{"Count": "3",}', None, "number_from_string"),
    ("boolean_from_string/yes", "json", '{"Flag": "yes",}', SCHEMA, "boolean_from_string"),
]

VALID: list[tuple[str, str]] = [
    ("json", '{"a": 1}'),
    ("json", '  {"a": [1, 2.5, -3e2, true, false, null, "x"], "b": {"c": "é ✓ \\u00e9 \\n"}}\n'),
    ("json", "[]"),
    ("json", '[{"a": "[CONTENT] ```json {"}]'),
    ("json", '"just a string"'),
    ("json", "42"),
    ("json", json.dumps({"Original Requirements": "x", "count": "3"}, indent=2)),
    ("content", '[CONTENT]\n{"a": 1}\n[/CONTENT]'),
    ("content", '[CONTENT]{"original requirements": "x", "Count": "3"}[/CONTENT]'),
    ("fence", '```json\n{"a": 1}\n```'),
    ("fence", '```\n[1, 2]\n```'),
]


def _check_ok(outcome: RepairOutcome) -> None:
    assert outcome.ok, outcome.error
    assert outcome.error is None
    assert outcome.text is not None
    assert json.loads(outcome.text) == outcome.value
    assert outcome.repairs == ordered(outcome.repairs)  # pipeline order, no duplicates


@pytest.mark.parametrize(
    ("fmt", "text", "schema", "expected", "repairs"),
    [case[1:] for case in POSITIVE],
    ids=[case[0] for case in POSITIVE],
)
def test_repair_fixes_and_names(fmt: str, text: str, schema: dict[str, Any] | None, expected: Any,
                                repairs: list[str]) -> None:
    outcome = repair_output(text, fmt, schema)
    _check_ok(outcome)
    assert outcome.value == expected
    assert outcome.repairs == repairs


@pytest.mark.parametrize(
    ("fmt", "text", "schema", "expected", "repairs"),
    [case[1:] for case in POSITIVE],
    ids=[case[0] for case in POSITIVE],
)
def test_repaired_text_repairs_to_itself(fmt: str, text: str, schema: dict[str, Any] | None, expected: Any,
                                         repairs: list[str]) -> None:
    first = repair_output(text, fmt, schema)
    again = repair_output(first.text or "", "json", schema)
    assert again.ok and again.repairs == [] and again.value == first.value and again.text == first.text


@pytest.mark.parametrize(
    ("fmt", "text", "schema", "kind"),
    [case[1:] for case in NEGATIVE],
    ids=[case[0] for case in NEGATIVE],
)
def test_kind_not_named_when_not_applicable(fmt: str, text: str, schema: dict[str, Any] | None, kind: str) -> None:
    outcome = repair_output(text, fmt, schema)
    assert kind not in outcome.repairs


def _payload(fmt: str, text: str) -> str:
    payload = text.strip()
    if fmt == "content":
        return payload[len("[CONTENT]") : -len("[/CONTENT]")]
    if fmt == "fence":
        return payload.split("\n", 1)[1].rsplit("```", 1)[0]
    return payload


# Outputs that parse *and* validate; those that parse but break SCHEMA may get schema-aware
# repairs (tested below), so they are paired with no schema only.
UNTOUCHED = [(fmt, text, schema) for fmt, text in VALID for schema in (None, SCHEMA)
             if schema is None or jsonschema.Draft202012Validator(schema).is_valid(json.loads(_payload(fmt, text)))]


@pytest.mark.parametrize(("fmt", "text", "schema"), UNTOUCHED)
def test_valid_output_is_untouched(fmt: str, text: str, schema: dict[str, Any] | None) -> None:
    payload = _payload(fmt, text)
    outcome = repair_output(text, fmt, schema)
    _check_ok(outcome)
    assert outcome.repairs == []
    assert outcome.value == json.loads(payload)


def test_parse_valid_but_schema_invalid_gets_schema_repairs_only() -> None:
    """The classic open-model failure: perfect JSON, wrong key case. No syntax repair, key_case fixes it."""
    strict = {**SCHEMA, "required": ["Original Requirements"], "additionalProperties": False}
    outcome = repair_output('[CONTENT]{"original requirements": "x", "Count": "3"}[/CONTENT]', "content", strict)
    assert outcome.repairs == ["key_case", "number_from_string"]
    assert outcome.value == {"Original Requirements": "x", "Count": 3}


def test_every_kind_is_documented_and_tested() -> None:
    assert REPAIR_KINDS == tuple(KIND_DOCS)
    assert len(set(REPAIR_KINDS)) == len(REPAIR_KINDS)
    named = {kind for case in POSITIVE for kind in case[5]}
    assert named == set(REPAIR_KINDS)
    assert {case[4] for case in NEGATIVE} == set(REPAIR_KINDS)


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "no JSON"), ("I cannot help with that.", "no JSON"), ("[" * 100, "nesting"),
     ("[CONTENT]\n[/CONTENT]", "no JSON"), ("{" + "x" * 300_000, "too large")],
)
def test_garbage_gives_ok_false_with_error(text: str, error: str) -> None:
    outcome = repair_output(text, "json", None)
    assert not outcome.ok and outcome.value is None and outcome.text is None
    assert outcome.error is not None and error in outcome.error


@pytest.mark.parametrize(
    ("args", "message"),
    [((b"{}", "json", None), "text must be str"), (("{}", "yaml", None), "output_format"),
     (("{}", "json", "schema"), "schema")],
)
def test_wrong_call_raises_repair_error(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(RepairError, match=message):
        repair_output(*args)


def test_internal_failure_becomes_ok_false(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.repair.pipeline as pipeline

    def boom(*_: Any) -> Any:
        raise RuntimeError("kaput")

    monkeypatch.setattr(pipeline, "repair_syntax", boom)
    outcome = repair_output('{"a": 1,}', "json", None)
    assert not outcome.ok and "kaput" in (outcome.error or "")


def test_single_repair_functions() -> None:
    assert fix_edge_brackets('{"a": 1}]') == '{"a": 1}'
    assert fix_edge_brackets('{"a": 1]') == '{"a": 1}'
    assert fix_edge_brackets('[{"a": 1}') == '[{"a": 1}]'
    assert remove_stray_closer_lines('{\n"a": [1],\n],\n"b": 2\n}') == '{\n"a": [1],\n"b": 2\n}'
    assert close_truncation('{"a": [1, "x') == '{"a": [1, "x"]}'
    assert close_truncation('{"a": 1}') == '{"a": 1}'


def test_key_normalisation_is_case_whitespace_and_underscore_only() -> None:
    assert normalise_key("  Product__Goals ") == normalise_key("product goals") == normalise_key("PRODUCT\tGOALS")
    assert normalise_key("Product-Goals") != normalise_key("Product Goals")


def test_nan_is_not_strict_json() -> None:
    outcome = repair_output('{"a": NaN}', "json", None)
    assert outcome.repairs != [] or not outcome.ok
    if outcome.ok:
        assert json.loads(outcome.text or "") == outcome.value
