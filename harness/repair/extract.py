"""Find the JSON payload in a raw model output: tags, fences, prose.

Why: open models asked for ``[CONTENT]{...}[/CONTENT]`` (MetaGPT's action
node format) or a ```json fence often break the wrapper itself: the closing
tag loses its slash, is missing, the opener is repeated after a line of
prose, the JSON sits in a fence inside the tags, or is surrounded by chatter.
Each step below removes one layer and names what it had to forgive.

All steps are regex or single-pass scans: linear in the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .lexer import MAX_REPAIR_CHARS, find_value_end, loads_strict

_TAG_RE: Final[re.Pattern[str]] = re.compile(r"\[[ \t]*(/?)[ \t]*CONTENT[ \t]*\]", re.IGNORECASE)
_CANONICAL_TAGS: Final[frozenset[str]] = frozenset({"[CONTENT]", "[/CONTENT]"})
_FENCE_OPEN_RE: Final[re.Pattern[str]] = re.compile(
    r"```[ \t]*([A-Za-z0-9_+.-]*)[ \t]*(?:\r?\n|(?=[{\[]))"
)
# A closing fence starts a line or directly follows the end of the JSON value.
_FENCE_CLOSE_RE: Final[re.Pattern[str]] = re.compile(r"(?:^|(?<=[}\]]))[ \t]*```", re.MULTILINE)
# The fence exactly as the scorer reads it strictly.
_STRICT_FENCE_RE: Final[re.Pattern[str]] = re.compile(r"\A```(?:json|JSON)?[ \t]*\n(.*)\n```\Z", re.DOTALL)
_FENCE_MARK_RE: Final[re.Pattern[str]] = re.compile(r"```[A-Za-z0-9_+.-]*")
_OPENER_RE: Final[re.Pattern[str]] = re.compile(r"[{\[]")
_NON_BLANK_RE: Final[re.Pattern[str]] = re.compile(r"\S")
#: How many candidate values we look at in prose (each scan is disjoint).
_MAX_CANDIDATES: Final[int] = 64
#: After a value, text starting with one of these is more JSON, not prose.
_CONTINUATION: Final[str] = ",:]}\"'/#"


@dataclass(frozen=True)
class Extracted:
    """A payload and the extraction kinds that fired to get it."""

    payload: str
    kinds: tuple[str, ...] = ()


def _has_opener(text: str) -> bool:
    return "{" in text or "[" in text


def _outside_kinds(outside: str) -> tuple[str, ...]:
    """Name what was dropped outside a wrapper: fence markers or prose."""
    if not outside.strip():
        return ()
    without_marks = _FENCE_MARK_RE.sub("", outside)
    if not without_marks.strip():
        return ("fence_stripped",)
    return ("prose_stripped",)


def _wrapper_position(text: str, tag: re.Match[str]) -> bool:
    """Whether a tag stands where a wrapper tag would: at a line start or end,
    or against the payload's bracket; not in the middle of a sentence (as
    inside a JSON string value that mentions [CONTENT])."""
    i = tag.start() - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    if i < 0 or text[i] in "\r\n}]":
        return True
    j = tag.end()
    while j < len(text) and text[j] in " \t":
        j += 1
    return j >= len(text) or text[j] in "\r\n{["


def extract_content_tags(text: str, anywhere: bool = True) -> Extracted | None:
    """The text between [CONTENT] tags, forgiving broken tags; None without tags.

    The text is cut into segments at every tag.  A segment can be the payload
    when an opener precedes it (closer, opener or end after it) or a closer
    follows it with no opener before.  Among those, the first segment that
    parses strictly wins, else the longest one holding a bracket.  That keeps
    the payload of ``prose [CONTENT] [CONTENT]{json}[/CONTENT]``.  Unless
    ``anywhere``, only tags in a wrapper position count (see
    `_wrapper_position`): for tasks that did not ask for tags.
    """
    tags = [tag for tag in _TAG_RE.finditer(text) if anywhere or _wrapper_position(text, tag)]
    if not tags:
        return None
    kinds: list[str] = []
    if any(tag.group(0) not in _CANONICAL_TAGS for tag in tags):
        kinds.append("content_tag_malformed")
    closing = [bool(tag.group(1)) for tag in tags]
    bounds = [0] + [pos for tag in tags for pos in (tag.start(), tag.end())] + [len(text)]
    segments = [(bounds[2 * i], bounds[2 * i + 1]) for i in range(len(tags) + 1)]
    candidates: list[int] = []
    for i in range(len(segments)):
        left_open = i > 0 and not closing[i - 1]
        right_close = i < len(tags) and closing[i]
        if left_open or right_close:
            candidates.append(i)
    chosen: int | None = None
    with_bracket = [i for i in candidates if _has_opener(text[segments[i][0] : segments[i][1]])]
    for i in with_bracket:
        if loads_strict(text[segments[i][0] : segments[i][1]])[0]:
            chosen = i
            break
    if chosen is None and with_bracket:
        chosen = max(with_bracket, key=lambda i: segments[i][1] - segments[i][0])
    if chosen is None:
        # Tags, but nowhere a payload could be: forget the tags.
        untagged = "".join(text[s:e] for s, e in segments)
        return Extracted(untagged, tuple(kinds) or ("content_tag_malformed",))
    left = tags[chosen - 1] if chosen > 0 else None
    right = tags[chosen] if chosen < len(tags) else None
    if left is None or closing[chosen - 1]:
        kinds.append("content_tag_missing_open")
    elif right is None:
        kinds.append("content_tag_missing_close")
    elif not closing[chosen]:
        kinds.append("content_tag_no_slash")
    # An opener while an earlier one is still open, up to the payload's own.
    is_open = repeated = False
    for index in range(chosen):
        if closing[index]:
            is_open = False
        else:
            repeated = repeated or is_open
            is_open = True
    if repeated:
        kinds.append("content_tag_repeated")
    start, end = segments[chosen]
    outside = "".join(
        text[s:e] for i, (s, e) in enumerate(segments) if i != chosen
    )
    kinds.extend(_outside_kinds(outside))
    return Extracted(text[start:end], tuple(kinds))


def extract_fence(text: str) -> tuple[Extracted, bool] | None:
    """The body of the first ``` fence holding a bracket, and whether it was closed.

    None when there is no such fence."""
    pos = 0
    while True:
        opened = _FENCE_OPEN_RE.search(text, pos)
        if opened is None:
            return None
        body_start = opened.end()
        closed = _FENCE_CLOSE_RE.search(text, body_start)
        body_end = closed.start() if closed else len(text)
        body = text[body_start:body_end]
        if _has_opener(body):
            outside = text[: opened.start()] + (text[closed.end() :] if closed else "")
            kinds = ("prose_stripped",) if outside.strip() else ()
            return Extracted(body, kinds), closed is not None
        if closed is None:
            return None
        pos = closed.end()


def _prose_tail(text: str, end: int) -> bool:
    """Whether the text after a complete value ending at ``end`` is prose (to
    drop) rather than more JSON that our structural repairs should see."""
    m = _NON_BLANK_RE.search(text, end)
    return m is not None and m.group(0) not in _CONTINUATION


def extract_from_prose(text: str, prefer: str | None = None) -> Extracted:
    """Cut the JSON value out of surrounding prose.

    When the text starts with a bracket, the value starts there and only a
    prose tail is dropped.  Otherwise every top-level bracketed span is a
    candidate (scans are disjoint, so this is one linear pass): a span of the
    type the schema wants (``prefer`` = "{" or "[") beats others, then the
    longest wins, then the first.  A span running to the end of the text is
    truncated JSON and is kept whole; so is the rest after a span when it
    starts like more JSON (``,`` ``]`` ``}`` ``"`` ...), not like prose.
    """
    stripped = text.strip()
    first = _OPENER_RE.search(text)
    # Prose before the first bracket costs nothing (a regex search); the
    # bounded part is what our tokenizer would have to walk.
    if not stripped or first is None or len(text) - first.start() > MAX_REPAIR_CHARS:
        return Extracted(text)
    spans: list[tuple[int, int]] = []
    pos = first.start()
    leading = stripped[0] in "{["
    while len(spans) < _MAX_CANDIDATES:
        m = _OPENER_RE.search(text, pos)
        if m is None:
            break
        end = find_value_end(text, m.start())
        if end is None:
            spans.append((m.start(), len(text)))
            break
        spans.append((m.start(), end))
        if leading:
            break
        pos = end
    if not spans:
        return Extracted(text)
    pool = [s for s in spans if prefer and text[s[0]] == prefer] or spans
    start, end = max(pool, key=lambda s: s[1] - s[0])  # max keeps the first on ties
    if not _prose_tail(text, end):
        # More JSON follows the balanced part (a stray "}," line, a "]"):
        # keep it for the structural repairs.
        end = len(text)
    if text[:start].strip() or text[end:].strip():
        return Extracted(text[start:end], ("json_extracted_from_prose",))
    return Extracted(text)


def strict_payload(text: str, output_format: str) -> str | None:
    """The payload when the wrapper is exactly what the task asked for, else None.

    Mirrors the scorer's strict reading: ``[CONTENT]...[/CONTENT]`` (or a
    ```` ``` ```` fence) around the whole output with only whitespace outside."""
    stripped = text.strip()
    if output_format == "content":
        if not (stripped.startswith("[CONTENT]") and stripped.endswith("[/CONTENT]")):
            return None
        inner = stripped[len("[CONTENT]") : -len("[/CONTENT]")]
        return None if "[CONTENT]" in inner or "[/CONTENT]" in inner else inner
    if output_format == "fence":
        m = _STRICT_FENCE_RE.match(stripped)
        return m.group(1) if m else None
    return stripped


def _starts_with_json(text: str) -> bool:
    """Text that starts with a bracket (not a tag) is JSON first: a fence
    further on is inside its strings, or trailing junk."""
    stripped = text.lstrip()
    return stripped[:1] in ("{", "[") and _TAG_RE.match(stripped) is None


def extract_payload(text: str, output_format: str, prefer: str | None = None) -> Extracted:
    """Peel tags, then a fence, then prose; name every layer we had to forgive.

    ``output_format`` is what the task asked for: "json", "content" or
    "fence".  The wrapper that was asked for is not a repair when it is well
    formed; an unrequested one is (``content_tags_stripped``,
    ``fence_stripped``), and a requested one that is absent is
    ``wrapper_missing``.
    """
    kinds: list[str] = []
    payload = text
    tagged = extract_content_tags(payload, anywhere=output_format == "content")
    if tagged is not None:
        payload = tagged.payload
        kinds.extend(tagged.kinds)
        if output_format != "content":
            kinds.append("content_tags_stripped")
    elif output_format == "content":
        kinds.append("wrapper_missing")
    fenced = None if _starts_with_json(payload) else extract_fence(payload)
    if fenced is not None:
        inner, closed = fenced
        payload = inner.payload
        kinds.extend(inner.kinds)
        if output_format != "fence":
            kinds.append("fence_stripped")
        if not closed:
            kinds.append("fence_unclosed")
    elif output_format == "fence":
        kinds.append("wrapper_missing")
    if not loads_strict(payload)[0]:
        found = extract_from_prose(payload, prefer)
        payload = found.payload
        kinds.extend(found.kinds)
    return Extracted(payload, tuple(kinds))
