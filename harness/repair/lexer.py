"""A forgiving, linear tokenizer for almost-JSON, and the strict parser.

Why our own tokenizer: to find where a JSON value ends inside prose, to fix
damage at the edges of a payload, and to *name* what json_repair will fix, we
need to know which characters are outside strings.  One compiled regex does
the work at C speed; every pattern is possessive, so no input makes it
backtrack (a 1 MB run of quotes or brackets is one linear scan).

Tokens are ``(kind, start, end)`` with kind one of ``ws``, ``dq`` (double
quoted string, possibly unterminated), ``sq`` (single quoted string),
``punct`` (one of ``{}[]:,``), ``num``, ``word``, ``comment`` and ``other``.
A single quote only starts a string where a key or value may start, so the
apostrophe in ``don't`` never swallows the rest of a line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Final

#: Deepest nesting we hand on to json_repair or walk ourselves.  json_repair
#: recurses ~5 Python frames per level and converts RecursionError into
#: ValueError somewhere past 200 levels; real model output nests < 10 deep.
MAX_DEPTH: Final[int] = 64

#: Largest payload we try to repair (characters).  Our passes cost ~1 us per
#: character and json_repair (pure Python) more, so this keeps a worst case
#: under a second (json_repair also has a deadline); model outputs are far
#: smaller.  Bigger payloads are still accepted when they parse strictly.
MAX_REPAIR_CHARS: Final[int] = 256 * 1024

OPENERS: Final[str] = "{["
CLOSERS: Final[str] = "}]"
PAIR: Final[dict[str, str]] = {"{": "}", "[": "]"}

TOKEN_RE: Final[re.Pattern[str]] = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<dq>"[^"\\]*+(?:\\.[^"\\]*+)*+(?:\\\Z)?"?)
    | (?P<punct>[{}\[\]:,])
    | (?P<num>-?(?:\d++\.?\d*+|\.\d++)(?:[eE][+-]?\d++)?)
    | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*+)
    | (?P<sq>'[^'\\\n]*+(?:\\.[^'\\\n]*+)*+(?:\\\Z)?'?)
    | (?P<comment>//[^\n]*+|\#[^\n]*+|/\*(?:[^*]|\*(?!/))*+(?:\*/)?)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

#: Kinds of the previous significant token after which a key or value may start.
VALUE_POSITION: Final[frozenset[str | None]] = frozenset({None, "{", "[", ",", ":"})


def tokens(text: str, start: int = 0) -> Iterator[tuple[str, int, int]]:
    """Yield ``(kind, start, end)`` tokens of ``text`` from ``start``, linearly.

    ``sq`` tokens only occur in key/value position; elsewhere a ``'`` is
    ``other``.  An ``sq`` token that stops at a line end without its closing
    quote is an apostrophe, not a string, and is reported as ``other`` too.
    """
    match = TOKEN_RE.match
    n = len(text)
    pos = start
    prev: str | None = None  # previous significant token, punct chars by value
    while pos < n:
        m = match(text, pos)
        assert m is not None  # the ``other`` branch matches any character
        kind = m.lastgroup
        end = m.end()
        if kind == "sq" and (
            prev not in VALUE_POSITION or (end < n and (end - pos < 2 or text[end - 1] != "'"))
        ):
            kind, end = "other", pos + 1
        if kind == "punct":
            prev = text[pos]
        elif kind not in ("ws", "comment"):
            prev = kind
        yield kind, pos, end  # type: ignore[misc]
        pos = end


def find_value_end(text: str, start: int) -> int | None:
    """Index just past the container opened at ``text[start]``, or None.

    None when the text ends first (truncated) or nesting exceeds MAX_DEPTH.
    A closer of the wrong type closes every container up to the matching
    opener (``{"a": [1}`` ends at ``}``); a closer with no matching opener is
    ignored.  Strings and comments are skipped.
    """
    stack: list[str] = []
    for kind, pos, _end in tokens(text, start):
        if kind != "punct":
            continue
        char = text[pos]
        if char in OPENERS:
            stack.append(char)
            if len(stack) > MAX_DEPTH:
                return None
        elif char in CLOSERS:
            if stack and PAIR[stack[-1]] == char:
                stack.pop()
            else:
                for depth in range(len(stack) - 1, -1, -1):
                    if PAIR[stack[depth]] == char:
                        del stack[depth:]
                        break
            if not stack:
                return pos + 1
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_strict(text: str) -> tuple[bool, Any]:
    """Parse ``text`` as strict JSON: ``(True, value)`` or ``(False, None)``.

    Strict means what the scorer means by "raw valid": no NaN/Infinity, no
    control characters inside strings, whitespace allowed around the value.
    Deep nesting (RecursionError) counts as not parseable.
    """
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def dumps(value: Any) -> str:
    """The canonical repaired text: ``json.dumps`` defaults, non-ASCII kept as
    is (the scorer compares texts in the model's language), NaN refused."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
