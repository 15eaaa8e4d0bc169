"""The names of every repair, in pipeline order, with the reason each exists.

Repairs are reported by name so that the scorer can count, per model, *which*
kinds of damage its outputs carry.  A name is only reported when that repair
changed something; `RepairOutcome.repairs` lists them in the order below, which
is the order the pipeline runs them in.  Kinds that json_repair fixes in one
call are all "run" at the same moment; they are listed in the order we check
for them.

Stages:

1. extraction (``extract.py``): find the JSON payload in the raw text.
2. hand-written syntax repairs (``strings.py``, ``structure.py``): damage
   json_repair mishandles or does not report, fixed and named by us.
3. json_repair (``syntax.py`` + ``attribution.py``): everything else, named
   from json_repair's log and from a cheap lexical pre-check
   (``structure.analyse``); ``json_syntax_other`` when neither can name it.
   ``unescaped_quotes`` and ``comments_removed`` can also come from here.
4. schema-aware repairs (``schema_aware.py``): only when a schema is given
   and an earlier stage changed something.
"""

from __future__ import annotations

from typing import Final

#: kind -> why the repair exists.
KIND_DOCS: Final[dict[str, str]] = {
    # -- 1. extraction ------------------------------------------------------
    "wrapper_missing": (
        "the task asked for [CONTENT] tags or a ``` fence and the output has none; "
        "the bare JSON was used"
    ),
    "content_tags_stripped": (
        "[CONTENT] tags were found although the task asked for plain JSON or a fence"
    ),
    "content_tag_malformed": (
        "a tag was spelled loosely ([content], [ /CONTENT ]) or stood where no payload could be found"
    ),
    "content_tag_repeated": (
        "an opening [CONTENT] tag was repeated before the payload, e.g. prose + [CONTENT] + "
        "[CONTENT]{...}[/CONTENT]; MetaGPT's own regex loses the payload there"
    ),
    "content_tag_no_slash": (
        "the closing tag was written without its slash: [CONTENT]{...}[CONTENT]"
    ),
    "content_tag_missing_open": "[/CONTENT] present but no opening [CONTENT] before it",
    "content_tag_missing_close": "[CONTENT] present but no closing tag after the payload",
    "fence_stripped": "a ```json fence was removed although the task did not ask for one",
    "fence_unclosed": "a ``` fence was opened but never closed (usually truncation)",
    "prose_stripped": "text outside the [CONTENT] tags or the fence was dropped",
    "json_extracted_from_prose": (
        "no wrapper: the JSON value was cut out of surrounding prose"
    ),
    # -- 2. hand-written syntax repairs ---------------------------------------
    "triple_quoted_strings": 'a Python """triple quoted""" string became a JSON string',
    "unescaped_quotes": (
        'a " inside a string was not escaped (or doubled) and was kept as text; by hand on '
        "lines holding one member or item, else by json_repair"
    ),
    "comments_removed": "// line, /* block */ or # comments outside strings were removed",
    "edge_brackets": (
        "a bracket at the edge of the payload was wrong: [{...} gets its ], {...}] loses the ], "
        "{...] becomes {...}, a missing leading { is restored"
    ),
    "stray_closer_lines": (
        "a line holding only ], or }, that closes the wrong container (or the whole object "
        "while members follow) was deleted"
    ),
    "truncation_closed": (
        "the output stopped mid-value: the open string was closed, a dangling key or comma "
        "dropped, and the open arrays/objects closed"
    ),
    # -- 3. json_repair, attributed -------------------------------------------
    "single_quotes": "'single quoted' keys or strings were re-quoted with double quotes",
    "python_literals": "Python True/False/None became true/false/null",
    "trailing_commas": "a comma before ] or } was removed",
    "missing_commas": "a comma between two members or items was inserted",
    "raw_newlines_in_strings": "a raw newline/tab/control character inside a string was escaped",
    "mismatched_brackets": "a closing bracket of the wrong type in the middle of the payload",
    "json_syntax_other": "json_repair changed something none of the names above describes",
    # -- 4. schema-aware ----------------------------------------------------
    "wrap_in_list": "the schema wants an array of objects and a single object was given",
    "unwrap_single_item_list": "the schema wants an object and a one-object list was given",
    "key_case": (
        "an object key equal to a schema property up to case, whitespace and underscores "
        "was renamed to the property"
    ),
    "number_from_string": 'the schema wants a number/integer and got a numeric string ("3")',
    "boolean_from_string": 'the schema wants a boolean and got "true"/"false"',
}

#: Every repair kind, in pipeline order.
REPAIR_KINDS: Final[tuple[str, ...]] = tuple(KIND_DOCS)

_ORDER: Final[dict[str, int]] = {kind: index for index, kind in enumerate(REPAIR_KINDS)}


def ordered(kinds: set[str] | list[str] | tuple[str, ...]) -> list[str]:
    """Deduplicate and sort kinds into pipeline order (unknown names would be a bug)."""
    return sorted(set(kinds), key=_ORDER.__getitem__)
