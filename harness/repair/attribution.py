"""Name what json_repair did, from its repair log.

Why a mapping and not a diff: json_repair repairs everything in one call and
returns a value, not an edit list.  Its log (``logging=True``) has one entry
per heuristic that fired, but many fixes are silent (trailing commas, single
quotes, True/False) and some messages are ambiguous ("missed the closing
quote" is truncation *or* a missing quote mid-text).  So only unambiguous
messages are mapped here; the rest of the naming comes from the lexical
pre-check in ``structure.analyse``.  Messages are matched by stable
substrings of json_repair 0.61-0.64's wording.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

#: (substring of a json_repair log message, our kind).  First match wins.
LOG_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("line comment", "comments_removed"),
    ("block comment", "comments_removed"),
    ("Python None literal", "python_literals"),
    ("misplaced quote", "unescaped_quotes"),
    ("doubled quote", "unescaped_quotes"),
    ("quoted section that would have closed", "unescaped_quotes"),
    ("Inserted missing opening object brace", "edge_brackets"),
)


def kinds_from_log(log: Iterable[Mapping[str, str]]) -> set[str]:
    """Our kinds for the json_repair log entries we can attribute."""
    kinds: set[str] = set()
    for entry in log:
        message = entry.get("text", "")
        for needle, kind in LOG_PATTERNS:
            if needle in message:
                kinds.add(kind)
                break
    return kinds
