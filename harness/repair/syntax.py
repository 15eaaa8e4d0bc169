"""JSON syntax repair: our own repairs first, json_repair for the rest.

Order, each step only when the text still does not parse strictly:

1. string repairs by hand (``strings.py``): triple-quoted strings, values
   spanning raw lines, unescaped quotes on one-member lines (json_repair
   splits the first into keys and cuts the others short);
2. one pass of ``structure.analyse``: comments, edge brackets, stray closer
   lines, truncation, by hand; well-placed strings are masked at the same
   time, so that json_repair (step 4) only sees structure;
3. control characters left in strings: ``json.loads(strict=False)``;
4. json_repair, named from its log and our pre-check (``json_syntax_other``
   when neither can name it).

Never runs json_repair on text that already parses, nor on payloads beyond
MAX_REPAIR_CHARS or MAX_DEPTH (json_repair is pure Python and recursive),
nor for longer than JSON_REPAIR_SECONDS (it is quadratic on some inputs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import json_repair

from .attribution import kinds_from_log
from .deadline import DeadlineExceeded, call_with_deadline
from .lexer import MAX_DEPTH, MAX_REPAIR_CHARS, loads_strict
from .strings import convert_triple_quoted_strings, escape_inner_quotes, join_multiline_strings
from .structure import Analysis, Edit, analyse, apply_edits

#: Wall-clock budget of one json_repair call (typical outputs need ~1-5 ms;
#: see deadline.py for the inputs that would otherwise take minutes).
JSON_REPAIR_SECONDS: Final[float] = 0.5

#: Text-level string repairs, in order; each returns (text, kinds).
_STRING_REPAIRS: Final[tuple[Callable[[str], tuple[str, list[str]]], ...]] = (
    convert_triple_quoted_strings,
    join_multiline_strings,  # before the one-line repair, which would misread its last line
    escape_inner_quotes,
)


@dataclass
class SyntaxResult:
    """A parsed value (ok) or an error, plus the kinds that fired."""

    ok: bool
    value: Any = None
    kinds: list[str] = field(default_factory=list)
    error: str | None = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass
class _Masks:
    """Placeholder edits, the strings they stand for, and the marker used."""

    edits: list[Edit] = field(default_factory=list)
    originals: list[str] = field(default_factory=list)
    marker: str = ""  # a private-use character absent from the text


def _free_marker(text: str) -> str:
    """A private-use character that does not occur in ``text`` ("" if none of
    the few we try is free: then nothing is masked)."""
    for code in range(0xE000, 0xE010):
        if chr(code) not in text:
            return chr(code)
    return ""


def _string_masks(text: str, analysis: Analysis) -> _Masks:
    """Edits replacing every well-placed string by a short placeholder.

    Why: json_repair should only repair *structure*, but it also rewrites
    string contents (0.64 drops a trailing ``\\n`` of a string, for one).
    Strings that stand between structural punctuation and decode on their
    own are hidden from it as ``"<marker><n><marker>"`` and put back afterwards;
    equal strings share a placeholder so duplicate keys stay duplicates.
    A string holding raw control characters is decoded leniently, and that
    counts as ``raw_newlines_in_strings``.
    """
    marker = _free_marker(text) if analysis.strings else ""
    if not marker:
        return _Masks()
    masks: list[Edit] = []
    originals: list[str] = []
    index_of: dict[str, int] = {}
    for start, end in analysis.strings:
        token = text[start:end]
        kind = ""
        try:
            decoded = json.loads(token)
        except ValueError:
            try:
                decoded = json.loads(token, strict=False)
            except ValueError:
                continue
            kind = "raw_newlines_in_strings"
        index = index_of.setdefault(decoded, len(originals))
        if index == len(originals):
            originals.append(decoded)
        masks.append(Edit(start, end, f'"{marker}{index}{marker}"', kind))
    return _Masks(masks, originals, marker)


def _unmask(value: Any, masks: _Masks) -> tuple[bool, Any]:
    """Put the masked strings back; (False, None) if a placeholder was mangled."""
    originals, marker = masks.originals, masks.marker
    if not originals:
        return True, value
    ok = True

    def restore(node: Any) -> Any:
        nonlocal ok
        if isinstance(node, str):
            if marker in node:
                inner = node[1:-1]
                if node[:1] == marker == node[-1:] and inner.isdigit() and int(inner) < len(originals):
                    return originals[int(inner)]
                ok = False
            return node
        if isinstance(node, dict):
            return {restore(k): restore(v) for k, v in node.items()}
        if isinstance(node, list):
            return [restore(item) for item in node]
        return node

    restored = restore(value)
    return (True, restored) if ok else (False, None)


def repair_syntax(payload: str) -> SyntaxResult:
    """Repair the JSON syntax of an extracted payload (see module doc)."""
    ok, value = loads_strict(payload)
    if ok:
        return SyntaxResult(True, value)
    if len(payload) > MAX_REPAIR_CHARS:
        return SyntaxResult(
            False, error=f"output too large to repair ({len(payload)} > {MAX_REPAIR_CHARS} characters)"
        )
    kinds: list[str] = []
    text = payload
    for repair in _STRING_REPAIRS:
        repaired, fired = repair(text)
        if repaired != text:
            kinds.extend(fired)
            text = repaired
            ok, value = loads_strict(text)
            if ok:
                return SyntaxResult(True, value, kinds)

    analysis = analyse(text)
    if analysis.too_deep:
        return SyntaxResult(False, kinds=kinds, error=f"nesting deeper than {MAX_DEPTH} levels")
    masks = _string_masks(text, analysis)
    edited, applied = apply_edits(text, analysis.edits + masks.edits)
    kinds.extend(applied)
    if edited != text:
        ok, value = loads_strict(edited)
        if ok:
            ok, value = _unmask(value, masks)
            if ok:
                return SyntaxResult(True, value, kinds or ["json_syntax_other"])
    try:
        value = json.loads(edited, strict=False, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        pass
    else:
        ok, value = _unmask(value, masks)
        if ok:
            return SyntaxResult(True, value, kinds + ["raw_newlines_in_strings"])

    def run_json_repair() -> tuple[Any, list[dict[str, str]]]:
        value, log = json_repair.repair_json(edited, return_objects=True, logging=True, skip_json_loads=True)
        ok, value = _unmask(value, masks)
        if not ok:  # json_repair cut into a masked string: repair without masks
            unmasked = apply_edits(text, analysis.edits)[0]
            value, log = json_repair.repair_json(unmasked, return_objects=True, logging=True, skip_json_loads=True)
        return value, log

    try:
        value, log = call_with_deadline(run_json_repair, JSON_REPAIR_SECONDS)
    except DeadlineExceeded:
        return SyntaxResult(False, kinds=kinds, error=f"json_repair gave up after {JSON_REPAIR_SECONDS} s")
    except (ValueError, RecursionError, TypeError, IndexError) as exc:
        return SyntaxResult(False, kinds=kinds, error=f"json_repair failed: {exc}")
    if not isinstance(value, (dict, list)):
        return SyntaxResult(False, kinds=kinds, error="no JSON object or array found")
    named = analysis.suspects | kinds_from_log(log)
    named.difference_update(kinds)
    kinds.extend(sorted(named) or ["json_syntax_other"])
    return SyntaxResult(True, value, kinds)
