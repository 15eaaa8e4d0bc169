"""The starting task suite in tasks/: it loads, every case renders, and every
schema means what its prompt says.

For each task a hand-written valid answer lives here (task files may not carry
unknown fields). The tests check that the answer validates, that removing any
required key at any depth makes it invalid, and that typical wrong answers
(a bad enum, a date in the wrong format, a number sent as a string) fail too.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "tasks"


def _import_load_tasks() -> Callable[..., list[Any]]:
    """`harness.tasks.load_tasks`; if the package itself fails to import (another
    module mid-edit), load harness/tasks.py and harness/models.py on their own."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from harness.tasks import load_tasks

        return load_tasks
    except Exception:  # noqa: BLE001 - any breakage elsewhere in the package
        name = "_harness_tasks_isolated"
        package = types.ModuleType(name)
        package.__path__ = [str(ROOT / "harness")]
        sys.modules[name] = package
        return importlib.import_module(f"{name}.tasks").load_tasks


load_tasks = _import_load_tasks()
TASKS = {task.id: task for task in load_tasks(TASKS_DIR)}

# Minimum number of cases per task, as agreed for the starting suite.
MIN_CASES = {
    "prd": 6,
    "system_design": 5,
    "task_breakdown": 5,
    "contact_card": 5,
    "invoice": 5,
    "meeting_actions": 5,
    "ticket_classification": 6,
    "nested_order": 4,
}

# Matches the JSON object of a format example: [CONTENT] {...} [/CONTENT].
CONTENT_EXAMPLE = re.compile(r"\[CONTENT\]\s*(\{.*?\})\s*\[/CONTENT\]", re.S)
NODE_LINE = re.compile(r"^- (?P<key>[^:\n]+): (?P<type>[^#\n]+?)\s+# ", re.M)


# --- hand-written valid answers, one per task ---------------------------------

EXAMPLES: dict[str, dict[str, Any]] = {
    "prd": {
        "Language": "en_us",
        "Programming Language": "Python",
        "Original Requirements": "A classic snake game in the terminal, steered with the arrow keys, getting faster as the score rises.",
        "Project Name": "terminal_snake",
        "Product Goals": ["Smooth, responsive play in any terminal", "Clear score and high score", "Difficulty that rises with the score"],
        "User Stories": [
            "As a player, I want to steer with the arrow keys so that the controls feel natural",
            "As a player, I want to see my score at the top so that I know how well I am doing",
            "As a player, I want the game to speed up so that it stays challenging",
        ],
        "Competitive Analysis": [
            "nSnake: mature terminal snake, dated look",
            "Google Snake: polished, needs a browser",
            "Snake '97 apps: nostalgic, full of ads",
            "PyGame tutorials: easy to modify, not a finished game",
            "Nokia phones: iconic, not available on a PC",
        ],
        "Competitive Quadrant Chart": 'quadrantChart\n    title Reach and polish\n    x-axis Low reach --> High reach\n    y-axis Low polish --> High polish\n    quadrant-1 Leaders\n    quadrant-2 Hidden gems\n    quadrant-3 Hobby projects\n    quadrant-4 Popular but rough\n    "nSnake": [0.3, 0.4]\n    "Google Snake": [0.9, 0.8]\n    "Our Target Product": [0.4, 0.7]',
        "Requirement Analysis": "The game loop must read keys without blocking and redraw without flicker; speed increases must keep the game playable.",
        "Requirement Pool": [
            ["P0", "Move the snake with the arrow keys"],
            ["P0", "Grow on eating food; game over on wall or self collision"],
            ["P1", "Score and persistent high score"],
            ["P2", "Pause with the space bar"],
        ],
        "UI Design draft": "Score line at the top, bordered play field below, 'Game over - press r to restart' centred at the end.",
        "Anything UNCLEAR": "",
    },
    "system_design": {
        "Implementation approach": "Python with the standard curses module; no third-party packages.",
        "File list": ["main.py", "game.py", "snake.py", "food.py", "scores.py"],
        "Data structures and interfaces": "classDiagram\n    class Game {\n        +run() None\n        +step(key: int) bool\n    }\n    class Snake {\n        +move(direction: tuple) None\n        +grow() None\n    }\n    Game --> Snake",
        "Program call flow": "sequenceDiagram\n    participant M as main\n    participant G as Game\n    participant S as Snake\n    M->>G: run()\n    G->>S: move(direction)",
        "Anything UNCLEAR": "Whether the snake may wrap around the edges is not stated; this design ends the game at the wall.",
    },
    "task_breakdown": {
        "Required packages": [],
        "Logic Analysis": [
            ["snake.py", "Snake class: body as a deque of cells; move, grow and self-collision"],
            ["food.py", "Spawns food on a free cell"],
            ["scores.py", "Loads and saves the high score in ~/.snake_score.json"],
            ["game.py", "Game loop; imports snake, food and scores"],
            ["main.py", "Starts curses and runs Game"],
        ],
        "Task list": ["snake.py", "food.py", "scores.py", "game.py", "main.py"],
        "Shared Knowledge": "Coordinates are (row, column) tuples with (0, 0) at the top left of the play field.",
        "Anything UNCLEAR": "",
    },
    "contact_card": {
        "name": "Marcus Lindqvist",
        "email": "marcus.lindqvist@northwind-robotics.se",
        "phone": "+46 70 123 45 67",
        "company": "Northwind Robotics AB",
        "title": "Head of Partnerships",
    },
    "invoice": {
        "invoice_number": "CM-2024-00318",
        "date": "2024-03-04",
        "vendor": "Cloudmeter Inc.",
        "currency": "USD",
        "line_items": [
            {"description": "Pro plan seats (monthly)", "quantity": 12, "unit_price": 29.0},
            {"description": "Additional storage, 100 GB block", "quantity": 3, "unit_price": 15.0},
            {"description": "Priority support add-on", "quantity": 1, "unit_price": 99},
        ],
        "total": 535.67,
    },
    "meeting_actions": {
        "summary": "The team planned sprint 14 around CSV contact import. The audit log moves to the next sprint.",
        "action_items": [
            {"owner": "Omar", "action": "Build the CSV import backend", "due": "end of sprint"},
            {"owner": "Lena", "action": "Send the final import wizard designs to Grace", "due": "Thursday"},
            {"owner": "unassigned", "action": "Update the runbook", "due": None},
        ],
    },
    "ticket_classification": {"label": "billing", "priority": "high", "confidence": 0.92},
    "nested_order": {
        "customer": {
            "name": "MIT Outing Club",
            "address": {"street": "84 Massachusetts Ave", "city": "Cambridge", "postcode": "02139", "country": "US"},
        },
        "items": [
            {"sku": "HL-300", "name": "Headlamp, 300 lumen", "quantity": 10},
            {"sku": None, "name": "Spare battery pack", "quantity": 10},
        ],
        "shipping": {"method": "standard", "express": False},
    },
    "api_endpoint_spec": {
        "method": "DELETE",
        "path": "/articles/{slug}/comments/{comment_id}",
        "summary": "Delete one of the caller's own comments on an article.",
        "auth_required": True,
        "path_parameters": [
            {"name": "slug", "type": "string", "description": "Article slug"},
            {"name": "comment_id", "type": "integer", "description": "Comment id"},
        ],
        "query_parameters": [],
        "responses": [
            {"status": 204, "description": "Deleted"},
            {"status": 403, "description": "Not the caller's comment"},
            {"status": 404, "description": "Article or comment not found"},
        ],
    },
}


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Any], None]:
    def mutate(obj: Any) -> None:
        for part in path[:-1]:
            obj = obj[part]
        obj[path[-1]] = value

    return mutate


def _append(path: tuple[Any, ...], value: Any) -> Callable[[Any], None]:
    def mutate(obj: Any) -> None:
        for part in path:
            obj = obj[part]
        obj.append(value)

    return mutate


# (task, what, mutation applied to a copy of the example, still valid?)
VARIANTS: list[tuple[str, str, Callable[[Any], None], bool]] = [
    ("prd", "priority outside P0-P2", _set(("Requirement Pool", 0, 0), "P3"), False),
    ("prd", "pool item with three entries", _set(("Requirement Pool", 0), ["P0", "Move", "extra"]), False),
    ("prd", "pool item as an object", _set(("Requirement Pool", 0), {"priority": "P0", "text": "Move"}), False),
    ("prd", "project name not snake_case", _set(("Project Name",), "Terminal Snake"), False),
    ("prd", "goals as one string", _set(("Product Goals",), "Smooth play; clear score"), False),
    ("prd", "no goals at all", _set(("Product Goals",), []), False),
    ("prd", "lowercase key variant added", _set(("language",), "en_us"), False),
    ("system_design", "file list as one string", _set(("File list",), "main.py, game.py"), False),
    ("system_design", "diagram as a list of lines", _set(("Program call flow",), ["sequenceDiagram"]), False),
    ("task_breakdown", "analysis item as an object", _set(("Logic Analysis", 0), {"file": "snake.py", "logic": "x"}), False),
    ("task_breakdown", "analysis pair missing its description", _set(("Logic Analysis", 0), ["snake.py"]), False),
    ("task_breakdown", "packages listed", _set(("Required packages",), ["windows-curses==2.3.2"]), True),
    ("contact_card", "no phone given", _set(("phone",), None), True),
    ("contact_card", "email left obfuscated", _set(("email",), "marcus (at) northwind-robotics (dot) se"), False),
    ("contact_card", "email with display name", _set(("email",), "Marcus <marcus@northwind-robotics.se>"), False),
    ("contact_card", "name missing as null", _set(("name",), None), False),
    ("invoice", "date as printed, not ISO", _set(("date",), "12.02.2024"), False),
    ("invoice", "currency as a symbol", _set(("currency",), "$"), False),
    ("invoice", "quantity as a string", _set(("line_items", 0, "quantity"), "12"), False),
    ("invoice", "fractional quantity", _set(("line_items", 0, "quantity"), 1.5), False),
    ("invoice", "total as a formatted string", _set(("total",), "$535.67"), False),
    ("invoice", "no line items", _set(("line_items",), []), False),
    ("invoice", "extra key in a line item", _set(("line_items", 0, "amount"), 348.0), False),
    ("meeting_actions", "no action items", _set(("action_items",), []), True),
    ("meeting_actions", "owner null instead of 'unassigned'", _set(("action_items", 2, "owner"), None), False),
    ("meeting_actions", "action items as strings", _set(("action_items",), ["Omar: build CSV import"]), False),
    ("ticket_classification", "label outside the enum", _set(("label",), "Billing"), False),
    ("ticket_classification", "confidence above 1", _set(("confidence",), 1.5), False),
    ("ticket_classification", "confidence as a word", _set(("confidence",), "high"), False),
    ("ticket_classification", "confidence exactly 0", _set(("confidence",), 0), True),
    ("ticket_classification", "extra reasoning key", _set(("reason",), "duplicate charge"), False),
    ("nested_order", "country spelled out", _set(("customer", "address", "country"), "United States"), False),
    ("nested_order", "postcode as a number", _set(("customer", "address", "postcode"), 2139), False),
    ("nested_order", "express as a string", _set(("shipping", "express"), "yes"), False),
    ("nested_order", "shipping method outside the enum", _set(("shipping", "method"), "ups"), False),
    ("nested_order", "address flattened into a string", _set(("customer", "address"), "84 Massachusetts Ave, Cambridge"), False),
    ("nested_order", "zero quantity", _set(("items", 0, "quantity"), 0), False),
    ("api_endpoint_spec", "path without leading slash", _set(("path",), "articles/{slug}"), False),
    ("api_endpoint_spec", "status as a string", _set(("responses", 0, "status"), "204"), False),
    ("api_endpoint_spec", "lowercase method", _set(("method",), "delete"), False),
    ("api_endpoint_spec", "query parameter added", _append(("query_parameters",), {"name": "dry_run", "type": "boolean", "required": False, "description": "Only check"}), True),
]


def _validator(task_id: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(TASKS[task_id].schema)


def _required_paths(schema: Any, instance: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every required key present in `instance`, at every depth."""
    out: list[tuple[Any, ...]] = []
    if not isinstance(schema, dict):
        return out
    if isinstance(instance, dict):
        out += [path + (key,) for key in schema.get("required", [])]
        for key, sub in schema.get("properties", {}).items():
            if key in instance:
                out += _required_paths(sub, instance[key], path + (key,))
    elif isinstance(instance, list):
        prefix = schema.get("prefixItems", [])
        for index, item in enumerate(instance):
            sub = prefix[index] if index < len(prefix) else schema.get("items")
            out += _required_paths(sub, item, path + (index,))
    return out


def _object_schemas(schema: Any, where: str = "schema") -> list[tuple[str, dict[str, Any]]]:
    """Every subschema that describes an object, with a readable location."""
    out: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(schema, dict):
        return out
    if schema.get("type") == "object":
        out.append((where, schema))
    for key, sub in schema.get("properties", {}).items():
        out += _object_schemas(sub, f"{where}.{key}")
    if isinstance(schema.get("items"), dict):
        out += _object_schemas(schema["items"], f"{where}[]")
    for index, sub in enumerate(schema.get("prefixItems", [])):
        out += _object_schemas(sub, f"{where}[{index}]")
    return out


def _patterns(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        found = [schema["pattern"]] if isinstance(schema.get("pattern"), str) else []
        return found + [p for value in schema.values() for p in _patterns(value)]
    if isinstance(schema, list):
        return [p for value in schema for p in _patterns(value)]
    return []


REMOVALS = [
    pytest.param(task_id, path, id=f"{task_id}-{'/'.join(map(str, path))}")
    for task_id in sorted(EXAMPLES)
    if task_id in TASKS
    for path in _required_paths(TASKS[task_id].schema, EXAMPLES[task_id])
]
ALL_CASES = [
    pytest.param(task_id, case.id, id=f"{task_id}-{case.id}")
    for task_id, task in sorted(TASKS.items())
    for case in task.spec.cases
]


# --- the suite as a whole -------------------------------------------------------


def test_suite_has_enough_tasks_and_cases() -> None:
    assert len(TASKS) >= 8, sorted(TASKS)
    assert sum(len(t.spec.cases) for t in TASKS.values()) >= 40


@pytest.mark.parametrize("task_id", sorted(MIN_CASES))
def test_required_task_present_with_enough_cases(task_id: str) -> None:
    assert task_id in TASKS, f"missing task {task_id}"
    assert len(TASKS[task_id].spec.cases) >= MIN_CASES[task_id]


def test_every_task_has_a_hand_written_example() -> None:
    assert set(EXAMPLES) == set(TASKS), "add (or drop) the valid example object in this file"


# --- rendering ----------------------------------------------------------------


@pytest.mark.parametrize("task_id, case_id", ALL_CASES)
def test_case_renders_without_leftover_placeholders(task_id: str, case_id: str) -> None:
    task = TASKS[task_id]
    case = task.case(case_id)
    messages = task.messages(case)
    assert messages[-1]["role"] == "user"
    for message in messages:
        assert "{{" not in message["content"], f"{message['role']} message keeps a placeholder"
        assert message["content"].strip()
    # Every variable a case sets must be used, or it is a typo for one that is.
    used = set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", task.spec.prompt + (task.spec.system or "")))
    assert set(case.vars) <= used, f"unused vars: {sorted(set(case.vars) - used)}"
    for value in case.vars.values():
        assert str(value).strip() and str(value).strip() in messages[-1]["content"]


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_generation_params(task_id: str) -> None:
    params = TASKS[task_id].spec.params
    assert params.temperature == 0.0
    assert params.seed == 7
    assert params.max_tokens is not None and 128 <= params.max_tokens <= 2048


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_prompt_states_its_output_format(task_id: str) -> None:
    task = TASKS[task_id]
    prompt = task.spec.prompt
    if task.output_format == "content":
        assert "[CONTENT]" in prompt and "[/CONTENT]" in prompt
    elif task.output_format == "fence":
        assert "```json" in prompt
    else:
        assert "JSON object" in prompt


# --- content-format prompts: format example and node list agree with the schema --


CONTENT_TASKS = sorted(t.id for t in TASKS.values() if t.output_format == "content")


@pytest.mark.parametrize("task_id", CONTENT_TASKS)
def test_content_prompt_sections(task_id: str) -> None:
    prompt = TASKS[task_id].spec.prompt
    headings = [line for line in prompt.splitlines() if line.startswith("## ")]
    names = [h[3:].split(":")[0].strip() for h in headings]
    assert names == ["context", "format example", "nodes", "constraint", "action"]
    assert "output wrapped inside [CONTENT][/CONTENT]" in prompt


@pytest.mark.parametrize("task_id", CONTENT_TASKS)
def test_content_format_example_is_valid(task_id: str) -> None:
    task = TASKS[task_id]
    match = CONTENT_EXAMPLE.search(task.spec.prompt)
    assert match, "no [CONTENT] {...} [/CONTENT] format example in the prompt"
    example = json.loads(match.group(1))
    errors = [e.message for e in _validator(task_id).iter_errors(example)]
    assert not errors, errors
    assert list(example) == task.schema["required"], "example keys must follow the schema's order"


@pytest.mark.parametrize("task_id", CONTENT_TASKS)
def test_content_nodes_match_schema(task_id: str) -> None:
    task = TASKS[task_id]
    nodes_section = task.spec.prompt.split("## nodes", 1)[1].split("## constraint", 1)[0]
    nodes = [(m["key"].strip(), m["type"].strip()) for m in NODE_LINE.finditer(nodes_section)]
    assert [key for key, _ in nodes] == task.schema["required"]
    expected_type = {"string": "str"}
    for key, declared in nodes:
        prop = task.schema["properties"][key]
        if prop["type"] == "array":
            inner = prop["items"]
            want = "list[list[str]]" if inner.get("type") == "array" else "list[str]"
        else:
            want = expected_type[prop["type"]]
        assert declared == want, f"{key}: node says {declared}, schema says {want}"


# --- schemas ------------------------------------------------------------------


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_schema_compiles_and_is_closed(task_id: str) -> None:
    schema = TASKS[task_id].schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema.get("type") == "object"
    for where, sub in _object_schemas(schema):
        assert sub.get("required"), f"{where}: no required keys"
        assert sub.get("additionalProperties") is False, f"{where}: should forbid unknown keys"
        assert set(sub["required"]) <= set(sub.get("properties", {})), f"{where}: required key without a property"


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_schema_patterns_are_grammar_friendly(task_id: str) -> None:
    """llama.cpp's schema-to-grammar converter rejects unanchored patterns and
    chokes on class escapes such as \\s and \\d; constrained runs need both right."""
    for pattern in _patterns(TASKS[task_id].schema):
        assert pattern.startswith("^") and pattern.endswith("$"), pattern
        assert not re.search(r"\\[sSdDwW]", pattern), pattern


@pytest.mark.parametrize("task_id", sorted(EXAMPLES))
def test_hand_written_example_is_valid(task_id: str) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in _validator(task_id).iter_errors(EXAMPLES[task_id])]
    assert not errors, errors


@pytest.mark.parametrize("task_id, path", REMOVALS)
def test_removing_a_required_key_is_invalid(task_id: str, path: tuple[Any, ...]) -> None:
    broken = copy.deepcopy(EXAMPLES[task_id])
    parent = broken
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    assert not _validator(task_id).is_valid(broken)


@pytest.mark.parametrize("task_id", sorted(EXAMPLES))
def test_every_top_level_required_key_is_checked(task_id: str) -> None:
    paths = {p for p in _required_paths(TASKS[task_id].schema, EXAMPLES[task_id]) if len(p) == 1}
    assert paths == {(k,) for k in TASKS[task_id].schema["required"]}


@pytest.mark.parametrize("task_id", sorted(EXAMPLES))
def test_unknown_top_level_key_is_invalid(task_id: str) -> None:
    broken = {**copy.deepcopy(EXAMPLES[task_id]), "notes": "extra"}
    assert not _validator(task_id).is_valid(broken)


@pytest.mark.parametrize(
    "task_id, what, mutate, valid",
    [pytest.param(*v, id=f"{v[0]}-{v[1]}") for v in VARIANTS],
)
def test_schema_variants(task_id: str, what: str, mutate: Callable[[Any], None], valid: bool) -> None:
    instance = copy.deepcopy(EXAMPLES[task_id])
    mutate(instance)
    assert _validator(task_id).is_valid(instance) is valid, what
