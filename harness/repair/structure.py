"""Hand-written structural repairs, and the lexical pre-check that names json_repair's work.

Why by hand: json_repair turns ``[{...}`` into a one-item list but ``[{`` into
``[]``, silently "fixes" ``{...]`` without logging it, reads a stray ``},``
line as the end of the object, drops the whole object behind a truncated
``[{``, and loses a nested ``[]`` after a ``[ // comment``.  These are
common damages in MetaGPT-style outputs, so we fix them deterministically
and name them ourselves.

One linear pass over the tokens (`analyse`) produces both

* the hand-written edits (`Edit`): ``comments_removed``, ``edge_brackets``,
  ``stray_closer_lines`` and ``truncation_closed``, applied by `apply_edits`; and
* *suspects*: kinds of damage json_repair will fix without telling us in its
  log (trailing/missing commas, single quotes, Python literals, unescaped
  quotes, raw newlines, mismatched brackets).  A suspect is only
  reported when json_repair was actually needed.

The small pure functions at the bottom apply one kind of edit each; they
exist for tests and for callers that want a single repair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from .lexer import CLOSERS, MAX_DEPTH, OPENERS, PAIR, tokens

#: A significant token: (kind, start, end); kind is the character for punctuation.
_Tok = tuple[str, int, int]

_VALUE_END: Final[frozenset[str]] = frozenset({"dq", "sq", "num", "word", "}", "]"})
_VALUE_POSITION: Final[frozenset[str]] = frozenset({"{", "[", ",", ":"})
_PY_LITERALS: Final[frozenset[str]] = frozenset({"True", "False", "None"})
_CONTROL: Final[re.Pattern[str]] = re.compile(r"[\x00-\x1f]")
_LINE_TAIL: Final[re.Pattern[str]] = re.compile(r"[ \t]*(,?)[ \t]*(?:\r?\n|\Z)")
_TRAILING_JUNK: Final[str] = " \t\r\n]},"


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` by ``replacement``; ``kind`` names the repair."""

    start: int
    end: int
    replacement: str
    kind: str


@dataclass
class Analysis:
    """What one pass over a payload found."""

    edits: list[Edit] = field(default_factory=list)
    suspects: set[str] = field(default_factory=set)
    too_deep: bool = False
    #: (start, end) of complete double-quoted strings standing in a proper
    #: key/value slot (structural punctuation on both sides).
    strings: list[tuple[int, int]] = field(default_factory=list)


def _alone_on_line(text: str, start: int) -> tuple[int, int, bool] | None:
    """If the closer at ``start`` is alone on its line (optionally with a
    comma), return (line start, end incl. newline, has comma), else None.

    Scans back over blanks only, so the total cost stays linear."""
    i = start - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    if i >= 0 and text[i] not in "\r\n":
        return None
    m = _LINE_TAIL.match(text, start + 1)
    if m is None:
        return None
    return i + 1, m.end(), bool(m.group(1))


def _closed_string(text: str, start: int, end: int) -> bool:
    """Whether the string token text[start:end] has its closing quote."""
    if end - start < 2 or text[end - 1] != text[start]:
        return False
    backslashes = 0
    i = end - 2
    while i > start and text[i] == "\\":
        backslashes += 1
        i -= 1
    return backslashes % 2 == 0


def analyse(text: str) -> Analysis:
    """One pass: hand-written edits plus suspects for json_repair's work.

    Besides the named edits it records unnamed ones (kind ``""``) that only
    delete blanks before ``]``, ``}``, ``,`` and ``:``: json_repair drops an
    empty ``[]``/``{}`` item that is followed by a blank instead of ``,`` or
    ``]``, so it gets the text without them.  Stops early (``too_deep``) past
    MAX_DEPTH levels of nesting.
    """
    result = Analysis()
    edits, suspects = result.edits, result.suspects
    n = len(text)
    # Everything from here on is blanks, closers and commas: the "edge".
    last_content = len(text.rstrip(_TRAILING_JUNK))
    stack: list[tuple[str, int]] = []
    p1: _Tok | None = None  # previous significant tokens, p1 the latest
    p2: _Tok | None = None
    p3: _Tok | None = None
    gap_start = -1  # start of the blanks/comments since p1, -1 when none
    gap_edits = 0  # len(edits) when that gap started: its comment edits follow
    gap_comment = False  # a comment of the gap is being removed
    gap_kept = False  # a comment of the gap is kept (the // of http://)
    open_comment = ""  # what a kept comment at the very end needs to be closed
    top_closed = False  # the first top-level container has been closed
    opened = False  # any container opened yet
    depth1_commas = 0
    first_child = ""  # first token inside a top-level [
    pending: tuple[int, int] | None = None  # a string waiting for its right neighbour
    for kind, start, end in tokens(text):
        if kind == "ws" or kind == "comment":
            if gap_start < 0:
                gap_start, gap_edits, gap_comment, gap_kept = start, len(edits), False, False
            open_comment = ""
            if kind == "comment":
                block = text.startswith("/*", start)
                if start == 0 or text[start - 1] != ":":  # not the // of an unquoted http://
                    edits.append(Edit(start, end, " " if block else "", "comments_removed"))
                    gap_comment = True
                else:
                    gap_kept = True
                    open_comment = "*/" if block and not (end - start >= 4 and text.endswith("*/", 0, end)) else "\n"
            continue
        spaced = gap_start >= 0
        prev = p1[0] if p1 is not None else ""
        if pending is not None:
            if kind == "punct" and text[start] in ",:}]":
                result.strings.append(pending)
            pending = None
        if kind == "punct":
            char = text[start]
            if char in OPENERS:
                if stack and (prev in ("}", "]") or (spaced and prev in _VALUE_END)):
                    suspects.add("missing_commas")
                if len(stack) == 1 and prev == "[" and not first_child:
                    first_child = char
                stack.append((char, start))
                opened = True
                if len(stack) > MAX_DEPTH:
                    result.too_deep = True
                    return result
            else:
                if char in CLOSERS and stack and prev == ",":
                    line = _alone_on_line(text, start)
                    if line is not None:
                        line_start, line_end, has_comma = line
                        matches = PAIR[stack[-1][0]] == char
                        if not matches or (len(stack) == 1 and has_comma and start < last_content):
                            edits.append(Edit(line_start, line_end, "", "stray_closer_lines"))
                            gap_start = -1  # a new gap starts after the deleted line
                            continue
                    suspects.add("trailing_commas")
                if spaced and not gap_kept:
                    # Blanks (and removed comments) before ] } , : go entirely.
                    del edits[gap_edits:]
                    edits.append(Edit(gap_start, start, "", "comments_removed" if gap_comment else ""))
            if char in CLOSERS:
                if not stack:
                    if opened and not top_closed:
                        suspects.add("mismatched_brackets")
                elif PAIR[stack[-1][0]] == char:
                    stack.pop()
                elif len(stack) == 1 and start >= last_content:
                    # {...] : the last closer has the wrong type.
                    edits.append(Edit(start, end, PAIR[stack[-1][0]], "edge_brackets"))
                    stack.pop()
                else:
                    suspects.add("mismatched_brackets")
                    for depth in range(len(stack) - 2, -1, -1):
                        if PAIR[stack[depth][0]] == char:
                            del stack[depth:]
                            break
                if not stack and not top_closed:
                    top_closed = True
                    if end >= last_content:
                        if text[end:].strip():
                            # {...}] : closers after the value is complete.
                            edits.append(Edit(end, n, "", "edge_brackets"))
                        return result
            elif char == "," and len(stack) == 1:
                depth1_commas += 1
            p1, p2, p3 = (char, start, end), p1, p2
        else:
            if kind in ("dq", "sq", "num", "word") and prev in _VALUE_END:
                if spaced or prev in ("}", "]"):
                    if stack and kind != "word":
                        suspects.add("missing_commas")
                elif kind == "dq" or prev == "dq":
                    suspects.add("unescaped_quotes")
            if kind == "sq":
                suspects.add("single_quotes")
            elif kind == "word":
                if text[start:end] in _PY_LITERALS and (prev in _VALUE_POSITION or not prev):
                    suspects.add("python_literals")
            elif kind == "dq" and (end < n or _closed_string(text, start, end)):
                if _CONTROL.search(text, start, end):
                    suspects.add("raw_newlines_in_strings")
                if prev in _VALUE_POSITION or not prev:
                    pending = (start, end)
            p1, p2, p3 = (kind, start, end), p1, p2
        gap_start = -1
        open_comment = ""

    if pending is not None:
        result.strings.append(pending)
    if stack:
        if (
            len(stack) == 1
            and stack[0][0] == "["
            and first_child == "{"
            and depth1_commas == 0
            and p1 is not None
            and p1[0] == "}"
        ):
            # [{...} : a lone object behind a stray (or unclosed) [.
            edits.append(Edit(n, n, "]", "edge_brackets"))
        else:
            tail = n
            if gap_start >= 0 and not gap_kept:
                # Closers go right after the last token: json_repair drops a
                # trailing [] followed by blanks.  The gap's comments go too.
                del edits[gap_edits:]
                tail = gap_start
                if gap_comment:
                    edits.append(Edit(tail, tail, "", "comments_removed"))
            edits.append(_close_truncated(text, stack, p1, p2, p3, open_comment, tail))
    return result


def _close_truncated(
    text: str,
    stack: list[tuple[str, int]],
    p1: _Tok | None,
    p2: _Tok | None,
    p3: _Tok | None,
    open_comment: str,
    tail: int,
) -> Edit:
    """The edit that ends a truncated payload: close an open string, drop a
    dangling key or comma, then close every open container.  ``tail`` is
    where the text may be cut when nothing else needs cutting."""
    n = len(text)
    cut, suffix = tail, ""
    kind1 = p1[0] if p1 is not None else ""
    kind2 = p2[0] if p2 is not None else ""
    in_object = stack[-1][0] == "{"
    key_position = in_object and kind2 in ("{", ",")
    if p1 is not None and kind1 in ("dq", "sq") and p1[2] == n and not _closed_string(text, p1[1], n):
        if key_position:
            cut = p2[1] + 1 if kind2 == "{" else p2[1]  # type: ignore[index]
        else:
            backslashes = len(text) - len(text.rstrip("\\"))
            cut = n - (backslashes % 2)
            suffix = text[p1[1]]
    elif kind1 == ",":
        cut = p1[1]  # type: ignore[index]
    elif kind1 == ":" and kind2 in ("dq", "sq", "word", "num") and in_object and p3 is not None and p3[0] in "{,":
        cut = p3[1] if p3[0] == "," else p2[1]  # type: ignore[index]
    elif kind1 in ("dq", "sq") and key_position:
        cut = p2[1] + 1 if kind2 == "{" else p2[1]  # type: ignore[index]
    else:
        suffix = open_comment  # a comment at the very end must not swallow the closers
    suffix += "".join(PAIR[opener] for opener, _ in reversed(stack))
    return Edit(cut, n, suffix, "truncation_closed")


def apply_edits(text: str, edits: list[Edit]) -> tuple[str, list[str]]:
    """Apply non-overlapping edits; returns (new text, named kinds applied).

    An edit overlapping an earlier-starting one is dropped (e.g. a stray
    line inside a tail that truncation repair cuts off anyway)."""
    if not edits:
        return text, []
    parts: list[str] = []
    kinds: list[str] = []
    pos = 0
    # At one position: insertions first, then the longest edit.
    for edit in sorted(edits, key=lambda e: (e.start, e.end != e.start, -e.end)):
        if edit.start < pos:
            continue
        parts.append(text[pos : edit.start])
        parts.append(edit.replacement)
        pos = edit.end
        if edit.kind and edit.kind not in kinds:
            kinds.append(edit.kind)
    parts.append(text[pos:])
    return "".join(parts), kinds


def _apply_kind(text: str, kind: str) -> str:
    analysis = analyse(text)
    return apply_edits(text, [e for e in analysis.edits if e.kind == kind])[0]


def fix_edge_brackets(text: str) -> str:
    """``[{...}`` -> ``[{...}]``, ``{...}]`` -> ``{...}``, ``{...]`` -> ``{...}``."""
    return _apply_kind(text, "edge_brackets")


def remove_stray_closer_lines(text: str) -> str:
    """Delete ``],`` / ``},`` lines that close the wrong container."""
    return _apply_kind(text, "stray_closer_lines")


def close_truncation(text: str) -> str:
    """Close what a truncated payload left open."""
    return _apply_kind(text, "truncation_closed")


def remove_comments(text: str) -> str:
    """Drop ``//``, ``#`` and ``/* */`` comments outside strings."""
    return _apply_kind(text, "comments_removed")
