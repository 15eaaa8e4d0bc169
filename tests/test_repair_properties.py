"""Property tests of the repair engine (hypothesis).

* Random JSON objects, damaged by recoverable corruptions (prose around them,
  broken [CONTENT] tags, fences, trailing commas, single quotes, Python
  literals, comments, lost closing brackets), repair back to the original.
* Valid JSON is never changed, in any wrapper.
* Arbitrary text never raises; whatever comes out is JSON that repairs to itself.
"""

from __future__ import annotations

import json

import jsonschema
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.repair import RepairOutcome, repair_output

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAFE = string.ascii_letters + string.digits + " "

safe_text = st.text(alphabet=SAFE, max_size=12)
safe_keys = st.text(alphabet=SAFE, min_size=1, max_size=10)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False), safe_text,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(safe_keys, children, max_size=4)
    ),
    max_leaves=16,
)
objects = st.dictionaries(safe_keys, values, max_size=5)


def dump(value: Any, *, quote: str = '"', python: bool = False, trailing: bool = False, comment: str = "",
         level: int = 0) -> str:
    """Pretty-print ``value`` with chosen damage: quote character (``json``:
    JSON-escaped double-quoted strings), Python literals, trailing commas, a
    comment at the end of every line that ends in a comma or an opening bracket."""
    pad, end_pad = "  " * (level + 1), "  " * level
    kw = {"quote": quote, "python": python, "trailing": trailing, "comment": comment, "level": level + 1}
    if quote == "json" and isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) or isinstance(value, list):
        if not value:
            return "{}" if isinstance(value, dict) else "[]"
        if isinstance(value, dict):
            parts = [f"{pad}{dump(k, **kw)}: {dump(v, **kw)}" for k, v in value.items()]  # type: ignore[arg-type]
            opener, closer = "{", "}"
        else:
            parts = [f"{pad}{dump(v, **kw)}" for v in value]  # type: ignore[arg-type]
            opener, closer = "[", "]"
        body = f",{comment}\n".join(parts) + ("," if trailing else "")
        return f"{opener}{comment}\n{body}\n{end_pad}{closer}"
    if value is True:
        return "True" if python else "true"
    if value is False:
        return "False" if python else "false"
    if value is None:
        return "None" if python else "null"
    if isinstance(value, str):
        return f"{quote}{value}{quote}"
    return json.dumps(value)


def drop_closers(text: str, count: int) -> str:
    """Truncate: remove up to ``count`` closing brackets from the end."""
    end = len(text)
    for _ in range(count):
        stripped = text[:end].rstrip()
        if not stripped or stripped[-1] not in "}]":
            break
        end = len(stripped) - 1
    return text[:end]


WRAPPERS: dict[str, tuple[str, str]] = {
    "none": ("", ""),
    "prose": ("Here is the JSON you asked for:\n", "\nLet me know if you need more."),
    "prose_before": ("Sure. The result is below.\n\n", ""),
    "content": ("[CONTENT]\n", "\n[/CONTENT]"),
    "content_prose": ("Here it is.\n[CONTENT]\n", "\n[/CONTENT]\nDone."),
    "content_no_slash": ("[CONTENT]\n", "\n[CONTENT]"),
    "content_missing_close": ("[CONTENT]\n", ""),
    "content_missing_open": ("", "\n[/CONTENT]"),
    "content_repeated": ("Here is the PRD.\n[CONTENT]\n[CONTENT]\n", "\n[/CONTENT]"),
    "fence": ("```json\n", "\n```"),
    "fence_prose": ("Output:\n```json\n", "\n```\nThat is all."),
    "fence_in_content": ("[CONTENT]\n```json\n", "\n```\n[/CONTENT]"),
    "fence_unclosed": ("```json\n", ""),
}
COMMENTS = ["", " // note", " # note", " /* note */"]


@SETTINGS
@given(
    value=objects,
    quote=st.sampled_from(['"', "'"]),
    python=st.booleans(),
    trailing=st.booleans(),
    comment=st.sampled_from(COMMENTS),
    truncate=st.integers(0, 4),
    wrapper=st.sampled_from(sorted(WRAPPERS)),
    fmt=st.sampled_from(["json", "content", "fence"]),
)
def test_recoverable_corruptions_come_back_equal(value: dict[str, Any], quote: str, python: bool, trailing: bool,
                                                 comment: str, truncate: int, wrapper: str, fmt: str) -> None:
    text = dump(value, quote=quote, python=python, trailing=trailing, comment=comment)
    text = drop_closers(text, truncate)
    before, after = WRAPPERS[wrapper]
    if truncate and after and "CONTENT" not in after and "```" not in after:
        after = ""  # a truncated output has no prose after it
    outcome = repair_output(before + text + after, fmt, None)
    assert outcome.ok, (outcome.error, before + text + after)
    assert outcome.value == value
    again = repair_output(outcome.text or "", "json", None)
    assert again.repairs == [] and again.value == value


# Any text except what a wrapper is made of; JSON-escaped, so quotes, backslashes,
# newlines, "//" and "#" inside strings are all fair game.
rich_text = st.text(alphabet=st.characters(blacklist_characters="[]`", blacklist_categories=("Cs",)), max_size=12)
rich_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), rich_text),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(rich_text, children, max_size=4)),
    max_leaves=16,
)


@SETTINGS
@given(
    value=st.dictionaries(rich_text, rich_values, max_size=5),
    python=st.booleans(),
    trailing=st.booleans(),
    comment=st.sampled_from(COMMENTS),
    truncate=st.integers(0, 4),
    wrapper=st.sampled_from(sorted(WRAPPERS)),
)
def test_corruptions_around_arbitrary_strings_come_back_equal(value: dict[str, Any], python: bool, trailing: bool,
                                                              comment: str, truncate: int, wrapper: str) -> None:
    text = drop_closers(dump(value, quote="json", python=python, trailing=trailing, comment=comment), truncate)
    before, after = WRAPPERS[wrapper]
    if truncate and after and "CONTENT" not in after and "```" not in after:
        after = ""
    outcome = repair_output(before + text + after, "json", None)
    assert outcome.ok, (outcome.error, before + text + after)
    assert outcome.value == value


SCHEMA_KINDS = {"wrap_in_list", "unwrap_single_item_list", "key_case", "number_from_string", "boolean_from_string"}

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=10))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)), max_leaves=12)


@SETTINGS
@given(value=json_values, indent=st.sampled_from([None, 2]), fmt=st.sampled_from(["json", "content", "fence"]),
       ascii_only=st.booleans())
def test_valid_output_is_never_changed(value: Any, indent: int | None, fmt: str, ascii_only: bool) -> None:
    body = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    text = {"json": body, "content": f"[CONTENT]\n{body}\n[/CONTENT]", "fence": f"```json\n{body}\n```"}[fmt]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    outcome = repair_output(text, fmt, schema)
    if jsonschema.Draft202012Validator(schema).is_valid(value):
        # Parses and validates: repair must not change a thing.
        assert outcome.ok and outcome.repairs == [] and outcome.value == value
    else:
        # Parses but breaks the schema: only schema-aware repairs may fire.
        assert outcome.ok and set(outcome.repairs) <= SCHEMA_KINDS


JSONISH = "{}[]\"':,\\/#*\n tfnTFNu0123456789.-eE`[CONTENT]"
SCHEMAS: list[dict[str, Any] | None] = [
    None,
    {"type": "object", "properties": {"a": {"type": "integer"}, "B c": {"type": "array", "items": {"type": "object"}}}},
    {"type": "array", "items": {"$ref": "#"}},
]


def _check_sane(outcome: RepairOutcome, schema: dict[str, Any] | None) -> None:
    assert isinstance(outcome, RepairOutcome)
    if outcome.ok:
        assert outcome.text is not None and json.loads(outcome.text) == outcome.value
        again = repair_output(outcome.text, "json", schema)
        assert again.ok and again.repairs == [] and again.text == outcome.text
    else:
        assert outcome.text is None and outcome.value is None and outcome.error


@SETTINGS
@given(text=st.one_of(st.text(), st.text(alphabet=JSONISH, max_size=80)),
       fmt=st.sampled_from(["json", "content", "fence"]), schema=st.sampled_from(SCHEMAS))
def test_arbitrary_text_never_raises(text: str, fmt: str, schema: dict[str, Any] | None) -> None:
    _check_sane(repair_output(text, fmt, schema), schema)


@SETTINGS
@given(value=objects, cut=st.integers(0, 400), fmt=st.sampled_from(["json", "content"]))
def test_any_prefix_of_valid_json_is_handled(value: dict[str, Any], cut: int, fmt: str) -> None:
    """Truncation at any character (not only brackets) never raises, and what
    comes out is JSON that repairs to itself."""
    text = "[CONTENT]\n" + json.dumps(value, indent=2)
    _check_sane(repair_output(text[: cut % (len(text) + 1)], fmt, None), None)
