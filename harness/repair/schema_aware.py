"""Schema-aware repairs: make a parsed value fit the task's JSON Schema.

Why: a model that writes ``"original requirements"`` for the property
``"Original Requirements"``, or ``"3"`` for an integer, understood the task;
the scorer wants to tell that apart from a model that did not.  These repairs
are deliberately narrow:

* ``key_case``: a key is renamed to a schema property when both are equal
  after case folding and collapsing runs of whitespace and underscores into
  one space (``Product_Goals``, ``product goals``, ``PRODUCT  GOALS`` ->
  ``Product Goals``).  No other spelling changes (no hyphens, no typos).
  Never renames onto a key that is already present.
* ``wrap_in_list`` / ``unwrap_single_item_list``: object given where the
  schema wants an array (of objects), or a one-object list where it wants an
  object.
* ``number_from_string`` / ``boolean_from_string``: a string holding a JSON
  number / ``true``/``false`` where the schema's type allows a
  number/integer/boolean but not a string.

The walk follows ``properties``, ``additionalProperties``, ``items``,
``prefixItems`` and local ``$ref`` (``#/$defs/...``), merges ``allOf``
branches, and does not guess inside ``anyOf``/``oneOf``.  Each repair is a
pure function of (value, schema); values are rebuilt only where changed, so
an unchanged value comes back as the same object.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

from .lexer import MAX_DEPTH

Schema = dict[str, Any]
NodeFix = Callable[[Any, Schema], Any]

_KEY_SEP_RE: Final[re.Pattern[str]] = re.compile(r"[\s_]+")
_INT_RE: Final[re.Pattern[str]] = re.compile(r"-?(?:0|[1-9]\d*)")
_NUMBER_RE: Final[re.Pattern[str]] = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_MAX_REF_HOPS: Final[int] = 32


def normalise_key(key: str) -> str:
    """The form under which two keys count as the same property."""
    return _KEY_SEP_RE.sub(" ", key).strip().casefold()


def _pointer(root: Schema, ref: str) -> Any:
    """Resolve a local JSON pointer ``#/a/b``; None when it does not resolve."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def resolve(schema: Any, root: Schema) -> Schema:
    """Follow local ``$ref``s and merge ``allOf``; {} for anything unusable."""
    for _ in range(_MAX_REF_HOPS):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            break
        target = _pointer(root, ref)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest} if isinstance(target, dict) else rest
    else:
        return {}
    branches = schema.get("allOf")
    if isinstance(branches, list) and branches:
        merged: Schema = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties") or {})
        for branch in branches:
            part = resolve(branch, root)
            properties.update(part.get("properties") or {})
            for key, value in part.items():
                if key != "properties":
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        schema = merged
    return schema


def types_of(schema: Schema) -> frozenset[str]:
    """The JSON types a schema allows; inferred from keywords when no ``type``."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(t for t in declared if isinstance(t, str))
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return frozenset({"object"})
    if "items" in schema or "prefixItems" in schema:
        return frozenset({"array"})
    return frozenset()


def _normalised_names(properties: dict[str, Any], cache: dict[int, dict[str, str]]) -> dict[str, str]:
    """normalised name -> property name (the first one wins), built once per schema node."""
    index = cache.get(id(properties))
    if index is None:
        index = {}
        for name in properties:
            index.setdefault(normalise_key(name), name)
        cache[id(properties)] = index
    return index


def walk(value: Any, schema: Any, fix: NodeFix) -> Any:
    """Apply ``fix`` to every node the schema describes, top-down.

    Object members are matched to ``properties`` exactly or by normalised
    name (so structural fixes reach ``"product goals"`` before ``key_case``
    renames it).  Returns ``value`` itself when nothing changed; never goes
    deeper than MAX_DEPTH."""
    root: Schema = schema if isinstance(schema, dict) else {}
    names_cache: dict[int, dict[str, str]] = {}

    def visit(value: Any, schema: Any, depth: int) -> Any:
        node_schema = resolve(schema, root)
        if not node_schema or depth > MAX_DEPTH:
            return value
        value = fix(value, node_schema)
        if isinstance(value, dict):
            properties = node_schema.get("properties")
            properties = properties if isinstance(properties, dict) else {}
            extra = node_schema.get("additionalProperties")
            changed: dict[str, Any] | None = None
            for key, child in value.items():
                sub = None
                if key in properties:
                    sub = properties[key]
                elif properties:
                    name = _normalised_names(properties, names_cache).get(normalise_key(key))
                    sub = properties[name] if name is not None else None
                if sub is None and isinstance(extra, dict):
                    sub = extra
                if sub is None:
                    continue
                new = visit(child, sub, depth + 1)
                if new is not child:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = new
            return value if changed is None else changed
        if isinstance(value, list):
            prefix = node_schema.get("prefixItems")
            prefix = prefix if isinstance(prefix, list) else []
            items = node_schema.get("items")
            new_items: list[Any] | None = None
            for index, child in enumerate(value):
                sub = prefix[index] if index < len(prefix) else items
                if not isinstance(sub, dict):
                    continue
                new = visit(child, sub, depth + 1)
                if new is not child:
                    if new_items is None:
                        new_items = list(value)
                    new_items[index] = new
            return value if new_items is None else new_items
        return value

    return visit(value, schema, 0)


# -- node fixes: (value, resolved schema) -> value, same object if unchanged --


def _wrap_node(value: Any, schema: Schema) -> Any:
    types = types_of(schema)
    if isinstance(value, dict) and "array" in types and "object" not in types:
        items = schema.get("items")
        item_types = types_of(items) if isinstance(items, dict) else frozenset()
        if not item_types or "object" in item_types:
            return [value]
    return value


def _unwrap_node(value: Any, schema: Schema) -> Any:
    types = types_of(schema)
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and "object" in types
        and "array" not in types
    ):
        return value[0]
    return value


def _key_case_node(value: Any, schema: Schema) -> Any:
    properties = schema.get("properties")
    if not isinstance(value, dict) or not isinstance(properties, dict) or not properties:
        return value
    if all(key in properties for key in value):
        return value
    by_norm = _normalised_names(properties, {})
    renamed: dict[str, Any] = {}
    changed = False
    for key, child in value.items():
        target = key
        if key not in properties:
            candidate = by_norm.get(normalise_key(key))
            if candidate is not None and candidate not in value and candidate not in renamed:
                target = candidate
                changed = True
        renamed[target] = child
    return renamed if changed else value


def _number_node(value: Any, schema: Schema) -> Any:
    types = types_of(schema)
    if not isinstance(value, str) or "string" in types:
        return value
    text = value.strip()
    if "integer" in types and _INT_RE.fullmatch(text):
        return int(text)
    if "number" in types and _NUMBER_RE.fullmatch(text):
        if _INT_RE.fullmatch(text):
            return int(text)
        number = float(text)
        return number if math.isfinite(number) else value  # "1e999" stays a string
    return value


def _boolean_node(value: Any, schema: Schema) -> Any:
    types = types_of(schema)
    if isinstance(value, str) and "boolean" in types and "string" not in types:
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return value


def wrap_in_list(value: Any, schema: Schema) -> Any:
    """An object where the schema wants an array of objects -> ``[object]``."""
    return walk(value, schema, _wrap_node)


def unwrap_single_item_list(value: Any, schema: Schema) -> Any:
    """``[object]`` where the schema wants an object -> ``object``."""
    return walk(value, schema, _unwrap_node)


def fix_key_case(value: Any, schema: Schema) -> Any:
    """Rename keys to the schema's property names (see module doc)."""
    return walk(value, schema, _key_case_node)


def number_from_string(value: Any, schema: Schema) -> Any:
    """``"3"`` -> ``3`` where the schema wants a number/integer and no string."""
    return walk(value, schema, _number_node)


def boolean_from_string(value: Any, schema: Schema) -> Any:
    """``"true"`` -> ``true`` where the schema wants a boolean and no string."""
    return walk(value, schema, _boolean_node)


#: The schema-aware repairs in pipeline order: structure first (so the key
#: and scalar walks see the right shape), then keys, then scalars.
SCHEMA_REPAIRS: Final[tuple[tuple[str, Callable[[Any, Schema], Any]], ...]] = (
    ("wrap_in_list", wrap_in_list),
    ("unwrap_single_item_list", unwrap_single_item_list),
    ("key_case", fix_key_case),
    ("number_from_string", number_from_string),
    ("boolean_from_string", boolean_from_string),
)


def conform(value: Any, schema: Schema) -> tuple[Any, list[str]]:
    """Run every schema-aware repair; returns (value, kinds that changed it)."""
    kinds: list[str] = []
    for kind, repair in SCHEMA_REPAIRS:
        new = repair(value, schema)
        if new is not value:
            kinds.append(kind)
            value = new
    return value, kinds


def preferred_container(schema: Any) -> str | None:
    """"{" or "[" when the schema's top level wants exactly an object or array."""
    if not isinstance(schema, dict):
        return None
    types = types_of(resolve(schema, schema))
    if types == {"object"}:
        return "{"
    if types == {"array"}:
        return "["
    return None
