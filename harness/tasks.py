"""Task files: loading, validation and prompt rendering.

A broken task file must say *where* it is broken. PyYAML's composer keeps the
line of every node, so we compose the document once, remember the line of each
path (`cases[3].vars`), and translate pydantic's error locations into
`file:line: field: message`. Task files are parsed with the safe loader only.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .models import ChatRequest, GenerationParams, Mode

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class TaskFileError(ValueError):
    """A task file is unusable; the message names file, line and field."""

    def __init__(self, path: Path | str, line: int | None, field_path: str, message: str):
        self.path, self.line, self.field_path = str(path), line, field_path
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {field_path or '(file)'}: {message}")


class ParamsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    seed: int | None = None
    top_p: float | None = Field(default=None, gt=0, le=1)

    def to_params(self) -> GenerationParams:
        return GenerationParams(**self.model_dump())


class CaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    vars: dict[str, Any] = Field(default_factory=dict)


class TaskSpec(BaseModel):
    """The validated content of one task file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str = Field(pattern=ID_PATTERN)
    description: str
    role: str | None = None
    system: str | None = None
    prompt: str
    output_format: Literal["json", "content", "fence"] = "json"
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    schema_file: str | None = None
    params: ParamsSpec = Field(default_factory=ParamsSpec)
    cases: list[CaseSpec] = Field(min_length=1)

    @field_validator("json_schema")
    @classmethod
    def _schema_is_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value


class Task:
    """A loaded task: spec plus resolved schema, source path and content hash."""

    def __init__(self, spec: TaskSpec, schema: dict[str, Any], path: Path, sha256: str):
        self.spec = spec
        self.schema = schema
        self.path = path
        self.sha256 = sha256

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def output_format(self) -> str:
        return self.spec.output_format

    def case(self, case_id: str) -> CaseSpec:
        for case in self.spec.cases:
            if case.id == case_id:
                return case
        raise KeyError(case_id)

    def messages(self, case: CaseSpec) -> tuple[dict[str, str], ...]:
        """Render the system and user prompts for one case."""
        out: list[dict[str, str]] = []
        if self.spec.system:
            out.append({"role": "system", "content": render(self.spec.system, case.vars)})
        out.append({"role": "user", "content": render(self.spec.prompt, case.vars)})
        return tuple(out)

    def request(self, case: CaseSpec, model: str, mode: Mode, override: GenerationParams | None) -> ChatRequest:
        return ChatRequest(
            model=model,
            messages=self.messages(case),
            params=self.spec.params.to_params().merged(override),
            schema=self.schema if mode == "constrained" else None,
            schema_name=re.sub(r"[^A-Za-z0-9_-]", "_", self.id)[:64],
        )


def render(template: str, variables: dict[str, Any]) -> str:
    """Fill `{{ name }}` placeholders; JSON braces in prompts are left alone.

    Mappings and lists are inserted as JSON, not Python reprs, because a model
    shown single-quoted pseudo-JSON learns to answer in it.
    """

    def value(match: re.Match[str]) -> str:
        item = variables[match.group(1)]
        if isinstance(item, (dict, list)):
            return json.dumps(item, ensure_ascii=False, indent=2)
        return str(item)

    return PLACEHOLDER.sub(value, template)


# --- loading ---------------------------------------------------------------


def _line_index(node: yaml.Node, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every path in a composed YAML document to its 1-based line."""
    lines: dict[tuple[Any, ...], int] = {prefix: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[prefix + (key,)] = key_node.start_mark.line + 1
            sub = _line_index(value_node, prefix + (key,))
            sub.pop(prefix + (key,), None)
            lines.update(sub)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_line_index(item, prefix + (index,)))
    return lines


def _refuse_duplicate_keys(path: Path, node: yaml.Node, prefix: tuple[Any, ...] = ()) -> None:
    """PyYAML silently keeps the last of two equal keys; a task file must not lose one that way."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                raise TaskFileError(path, key_node.start_mark.line + 1, _dotted(prefix + (key,)),
                                    f"duplicate key (first given on line {seen[key]})")
            if key is not None:
                seen[key] = key_node.start_mark.line + 1
            _refuse_duplicate_keys(path, value_node, prefix + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(path, item, prefix + (index,))


def _line_for(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    """Line of the deepest existing prefix of `loc` (a missing field -> its parent)."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _safe_child(root: Path, relative: str) -> Path:
    """Resolve a task-provided path and refuse anything outside the tasks folder."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise ValueError(f"path {relative!r} leaves the tasks folder {root}")
    return candidate


def load_task(path: Path | str, tasks_root: Path | str | None = None) -> Task:
    """Load and validate one task file; raise TaskFileError naming file, line and field."""
    path = Path(path)
    root = Path(tasks_root) if tasks_root else path.parent
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise TaskFileError(path, None, "", f"cannot read: {exc.strerror}") from None
    text = raw_bytes.decode("utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise TaskFileError(path, line, "", f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or node is None:
        raise TaskFileError(path, 1, "", "a task file must be a mapping with id, prompt, schema and cases")
    _refuse_duplicate_keys(path, node)
    lines = _line_index(node)
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        loc = tuple("schema" if part == "json_schema" else part for part in loc)
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown field (check its spelling)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise TaskFileError(path, _line_for(lines, loc), _dotted(loc), message + more) from None

    schema = spec.json_schema
    if spec.schema_file:
        if schema is not None:
            raise TaskFileError(path, lines.get(("schema_file",)), "schema_file", "give schema or schema_file, not both")
        try:
            schema_path = _safe_child(root, spec.schema_file)
            schema = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
            jsonschema.Draft202012Validator.check_schema(schema)
        except (OSError, ValueError, yaml.YAMLError, jsonschema.SchemaError) as exc:
            detail = getattr(exc, "message", None) or str(exc)
            raise TaskFileError(path, lines.get(("schema_file",)), "schema_file", detail) from None
    if schema is None:
        raise TaskFileError(path, 1, "schema", "missing: every task needs the JSON Schema of its expected output")

    needed = set(PLACEHOLDER.findall(spec.prompt)) | set(PLACEHOLDER.findall(spec.system or ""))
    seen: set[str] = set()
    for index, case in enumerate(spec.cases):
        if case.id in seen:
            raise TaskFileError(path, lines.get(("cases", index, "id")), f"cases[{index}].id", f"duplicate case id {case.id!r}")
        seen.add(case.id)
        missing = sorted(needed - set(case.vars))
        if missing:
            line = lines.get(("cases", index, "vars")) or lines.get(("cases", index))
            raise TaskFileError(path, line, f"cases[{index}].vars", f"missing variable(s) used by the prompt: {', '.join(missing)}")
    return Task(spec, schema, path, hashlib.sha256(raw_bytes).hexdigest())


def load_tasks(folder: Path | str, only: list[str] | None = None) -> list[Task]:
    """Load every `*.yaml`/`*.yml` in `folder` (sorted), optionally filtered by id or glob."""
    folder = Path(folder)
    if folder.is_file():
        files = [folder]
        folder = folder.parent
    else:
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise TaskFileError(folder, None, "", "no task files (*.yaml) found")
    tasks = [load_task(f, folder) for f in files]
    ids: dict[str, Path] = {}
    for task in tasks:
        if task.id in ids:
            raise TaskFileError(task.path, 1, "id", f"duplicate task id {task.id!r} (also in {ids[task.id]})")
        ids[task.id] = task.path
    if only:
        import fnmatch

        tasks = [t for t in tasks if any(fnmatch.fnmatchcase(t.id, pat) for pat in only)]
        if not tasks:
            raise TaskFileError(folder, None, "--tasks", f"no task matches {', '.join(only)}; known: {', '.join(ids)}")
    return tasks
