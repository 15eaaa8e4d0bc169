"""Hand-written repairs inside strings: triple quotes, multi-line strings,
unescaped inner quotes.

Why by hand: json_repair splits a Python ``\"\"\"triple quoted\"\"\"`` string into
keys, and cuts a value like MetaGPT's mermaid chart
``"quadrantChart ... "Tomato": [0.75, 0.25] ..."`` at its first inner quote,
silently losing the rest (and turning the rest into bogus members).  Both are
common in PRD-style outputs, which put one member (or array item) per line:

* on a line holding one member, the string value runs to the last quote of
  the line, so its inner quotes can be escaped;
* a value that opens on a member line and is not closed there runs, over
  raw newlines, to the first line ending in ``"`` or ``",`` that is followed
  by the next member or a closing bracket.

Each repair returns ``(text, kinds)``; guards keep them from firing where
the text could also be two members (``", "`` or ``": "`` inside).
"""

from __future__ import annotations

import json
import re
from typing import Final

_TRIPLE_RE: Final[re.Pattern[str]] = re.compile(
    r'(?P<tq>"""(?P<d>.*?)(?:"""|\Z)|\'\'\'(?P<s>.*?)(?:\'\'\'|\Z))'
    r'|"[^"\\]*+(?:\\.[^"\\]*+)*+"?',
    re.DOTALL,
)

# One member or item on its own line: [ "key": ] "body" [,]
_STRING_LINE_RE: Final[re.Pattern[str]] = re.compile(
    r'^(?P<head>[ \t]*(?:"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"[ \t]*:[ \t]*)?)'
    r'"(?P<body>[^\n]*)"(?P<tail>[ \t]*,?[ \t]*\r?)$',
    re.MULTILINE,
)
# A member whose string value is not closed on its line, continued over up to
# 100 raw lines (none of them the start of another string member) to a line
# ending in a quote that the next member or a closer follows.
_MULTILINE_MEMBER_RE: Final[re.Pattern[str]] = re.compile(
    r'^(?P<head>[ \t]*"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"[ \t]*:[ \t]*)'
    r'"(?P<body>[^"\n]*\n'  # the rest of the first line holds no quote
    r'(?:(?![ \t]*"[^"\n]*"[ \t]*:[ \t]*")[^\n]*\n){0,100}?'  # lines that start no string member
    r'[^\n]*)"(?P<tail>[ \t]*,?[ \t]*\r?)$'
    r'(?=\n[ \t]*["}\]]|\s*\Z)',
    re.MULTILINE,
)
_LINE_END_JSONISH_RE: Final[re.Pattern[str]] = re.compile(r"[,{\[][ \t\r]*$", re.MULTILINE)
_CONTROL_RE: Final[re.Pattern[str]] = re.compile(r"[\x00-\x1f]")
_CONTROL_ESCAPES: Final[dict[str, str]] = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Quote, separator, quote inside a body: probably two members on one line.
_MEMBER_BOUNDARY_RE: Final[re.Pattern[str]] = re.compile(r'"\s*[,:]\s*"')
_UNESCAPED_QUOTE_RE: Final[re.Pattern[str]] = re.compile(r'(?<!\\)((?:\\\\)*)"')


def _triple_to_json(m: re.Match[str]) -> str:
    if m.group("tq") is None:
        return m.group(0)
    body = m.group("d") if m.group("d") is not None else m.group("s")
    return json.dumps(body, ensure_ascii=False)


def convert_triple_quoted_strings(text: str) -> tuple[str, list[str]]:
    """``\"\"\"multi\\nline "quoted" text\"\"\"`` -> a JSON string literal.

    Ordinary double-quoted strings are matched first, so a triple quote
    inside one is left alone."""
    if '"""' not in text and "'''" not in text:
        return text, []
    repaired = _TRIPLE_RE.sub(_triple_to_json, text)
    return repaired, (["triple_quoted_strings"] if repaired != text else [])


def _is_json_string_body(body: str) -> bool:
    try:
        json.loads(f'"{body}"', strict=False)
    except ValueError:
        return False
    return True


def _escape_quotes(body: str) -> str:
    return _UNESCAPED_QUOTE_RE.sub(lambda q: q.group(1) + '\\"', body)


def _escape_line(m: re.Match[str]) -> str:
    body = m.group("body")
    if '"' not in body or _MEMBER_BOUNDARY_RE.search(body) or _is_json_string_body(body):
        return m.group(0)
    escaped = _escape_quotes(body)
    if not _is_json_string_body(escaped):
        return m.group(0)
    return f'{m.group("head")}"{escaped}"{m.group("tail")}'


def escape_inner_quotes(text: str) -> tuple[str, list[str]]:
    """On lines holding one string member or item, escape the quotes inside
    the value: ``"a": "say "hi" now",`` -> ``"a": "say \\"hi\\" now",``.

    Lines that look like two members (``", "`` or ``": "`` inside) are left
    to json_repair."""
    if '"' not in text:
        return text, []
    repaired = _STRING_LINE_RE.sub(_escape_line, text)
    return repaired, (["unescaped_quotes"] if repaired != text else [])


def _escape_control(m: re.Match[str]) -> str:
    char = m.group(0)
    return _CONTROL_ESCAPES.get(char, f"\\u{ord(char):04x}")


def join_multiline_strings(text: str) -> tuple[str, list[str]]:
    """A member value that spans raw lines becomes one JSON string; its raw
    newlines are escaped (``raw_newlines_in_strings``) and so are its inner
    quotes (``unescaped_quotes``).

    Not applied when a line inside ends like JSON (``,`` ``{`` ``[``) or the
    last line holds ``": "``: that is more likely a member whose closing
    quote is missing, followed by real members."""
    if "\n" not in text or '"' not in text:
        return text, []
    kinds: set[str] = set()

    def join(m: re.Match[str]) -> str:
        body = m.group("body")
        inner, _, last = body.rpartition("\n")
        if _LINE_END_JSONISH_RE.search(inner) or _MEMBER_BOUNDARY_RE.search(last):
            return m.group(0)
        quoted = _escape_quotes(body)
        escaped = _CONTROL_RE.sub(_escape_control, quoted)
        if not _is_json_string_body(escaped):
            return m.group(0)
        kinds.add("raw_newlines_in_strings")
        if quoted != body:
            kinds.add("unescaped_quotes")
        return f'{m.group("head")}"{escaped}"{m.group("tail")}'

    repaired = _MULTILINE_MEMBER_RE.sub(join, text)
    return repaired, sorted(kinds)
