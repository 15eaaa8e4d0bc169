"""Task files: every validation error names the file, the line and the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.models import GenerationParams
from harness.tasks import TaskFileError, load_task, load_tasks, render

HEADER = [
    "id: t",  # 1
    "description: a test task",  # 2
    "prompt: 'Describe {{ x }} as JSON'",  # 3
    "schema: {type: object}",  # 4
]


def write(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def error_of(path: Path, root: Path | None = None) -> TaskFileError:
    with pytest.raises(TaskFileError) as info:
        load_task(path, root)
    return info.value


def assert_where(err: TaskFileError, path: Path, line: int, field: str) -> None:
    assert (err.path, err.line, err.field_path) == (str(path), line, field)
    assert str(err).startswith(f"{path}:{line}: {field}: ")


def test_valid_task_loads_with_hash_and_renders(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "system: 'You answer about {{ x }}.'", "params: {temperature: 0.5}",
                                      "cases:", "  - id: a", "    vars: {x: apples}"])
    task = load_task(path)
    assert task.id == "t" and task.schema == {"type": "object"}
    assert task.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    request = task.request(task.case("a"), "m", "constrained", GenerationParams(max_tokens=9))
    assert request.messages == ({"role": "system", "content": "You answer about apples."},
                                {"role": "user", "content": "Describe apples as JSON"})
    assert request.schema == {"type": "object"}
    assert request.params == GenerationParams(temperature=0.5, max_tokens=9)
    assert task.request(task.case("a"), "m", "free", None).schema is None


def test_render_leaves_json_braces_alone() -> None:
    assert render('Example: {"a": {"b": 1}} for {{name}}', {"name": "x"}) == 'Example: {"a": {"b": 1}} for x'


def test_bad_yaml_syntax_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [
        "id: t",
        "description: d",
        "prompt: hi",
        "schema: {type: object",  # 4: unclosed flow mapping
        "cases:",  # 5: where the parser notices
        "  - id: a",
    ])
    err = error_of(path)
    assert err.line == 5
    assert str(err).startswith(f"{path}:5: ")
    assert "invalid YAML" in str(err)


def test_bad_indentation_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "cases:", "  - id: a", "    vars: {x: 1}", "   oops: 2"])
    err = error_of(path)
    assert err.line == 8 and "invalid YAML" in str(err)


def test_unknown_top_level_field_names_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "temprature: 0.2", "cases:", "  - id: a", "    vars: {x: 1}"])
    err = error_of(path)
    assert_where(err, path, 5, "temprature")
    assert "unknown field" in str(err)


def test_unknown_nested_field_names_line_and_dotted_field(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "params:", "  temperature: 0.1", "  max_token: 5",
                                      "cases:", "  - id: a", "    vars: {x: 1}"])
    assert_where(error_of(path), path, 7, "params.max_token")


def test_unknown_field_in_a_case(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "cases:", "  - id: a", "    vars: {x: 1}",
                                      "  - id: b", "    varz: {x: 1}"])
    assert_where(error_of(path), path, 9, "cases[1].varz")


def test_wrong_type_in_third_case_vars(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [
        *HEADER,
        "cases:",  # 5
        "  - id: a",  # 6
        "    vars: {x: 1}",  # 7
        "  - id: b",  # 8
        "    vars: {x: 2}",  # 9
        "  - id: c",  # 10
        "    vars: [x, 3]",  # 11: a list, not a mapping
    ])
    err = error_of(path)
    assert_where(err, path, 11, "cases[2].vars")
    assert "dictionary" in str(err)


def test_out_of_range_param_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "params:", "  temperature: 9", "cases:", "  - id: a", "    vars: {x: 1}"])
    assert_where(error_of(path), path, 6, "params.temperature")


def test_missing_variable_for_placeholder_names_case_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [
        "id: t",
        "description: d",
        "prompt: 'Compare {{ x }} with {{y}}'",
        "schema: {type: object}",
        "cases:",
        "  - id: a",
        "    vars: {x: 1, y: 2}",
        "  - id: b",
        "    vars:",  # 9
        "      x: 2",
    ])
    err = error_of(path)
    assert_where(err, path, 9, "cases[1].vars")
    assert "y" in str(err).split("prompt:")[-1]


def test_missing_variable_in_system_prompt_when_case_has_no_vars(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [
        "id: t", "description: d", "system: 'Role: {{ role }}'", "prompt: hi", "schema: {type: object}",
        "cases:",
        "  - id: a",  # 7: no vars at all -> the case's own line
    ])
    err = error_of(path)
    assert_where(err, path, 7, "cases[0].vars")
    assert "role" in str(err)


def test_invalid_json_schema(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", ["id: t", "description: d", "prompt: hi",
                                      "schema:", "  type: objekt", "cases:", "  - id: a"])
    err = error_of(path)
    assert_where(err, path, 4, "schema")
    assert "not a valid JSON Schema" in str(err) and "objekt" in str(err)


def test_duplicate_case_id(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "cases:", "  - {id: a, vars: {x: 1}}", "  - {id: b, vars: {x: 1}}",
                                      "  - id: a", "    vars: {x: 1}"])
    err = error_of(path)
    assert_where(err, path, 8, "cases[2].id")
    assert "duplicate case id 'a'" in str(err)


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "cases:", "  - id: a", "    vars: {x: 1}",
                                      "prompt: 'a second prompt silently replacing the first'"])
    err = error_of(path)
    assert_where(err, path, 8, "prompt")
    assert "duplicate key" in str(err) and "line 3" in str(err)


def test_schema_file_escaping_the_tasks_folder_is_refused(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    (tmp_path / "secret.json").write_text('{"type": "object"}')
    path = write(tasks, "t.yaml", ["id: t", "description: d", "prompt: hi", "schema_file: ../secret.json",
                                   "cases:", "  - id: a"])
    err = error_of(path, tasks)
    assert_where(err, path, 4, "schema_file")
    assert "leaves the tasks folder" in str(err)


def test_schema_file_absolute_path_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text('{"type": "object"}')
    path = write(tmp_path / "tasks", "t.yaml", ["id: t", "description: d", "prompt: hi",
                                                f"schema_file: {json.dumps(str(outside))}", "cases:", "  - id: a"])
    assert "leaves the tasks folder" in str(error_of(path, tmp_path / "tasks"))


def test_schema_file_inside_folder_loads(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    (tasks / "schemas").mkdir(parents=True)
    (tasks / "schemas" / "s.json").write_text('{"type": "object", "required": ["a"]}')
    path = write(tasks, "t.yaml", ["id: t", "description: d", "prompt: hi", "schema_file: schemas/s.json",
                                   "cases:", "  - id: a"])
    assert load_task(path, tasks).schema == {"type": "object", "required": ["a"]}


def test_schema_file_missing_or_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", ["id: t", "description: d", "prompt: hi", "schema_file: nothere.json",
                                      "cases:", "  - id: a"])
    err = error_of(path)
    assert_where(err, path, 4, "schema_file")
    (tmp_path / "bad.json").write_text('{"type": 12}')
    path2 = write(tmp_path, "t2.yaml", ["id: t", "description: d", "prompt: hi", "schema_file: bad.json",
                                        "cases:", "  - id: a"])
    assert_where(error_of(path2), path2, 4, "schema_file")


def test_missing_schema(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", ["id: t", "description: d", "prompt: hi", "cases:", "  - id: a"])
    err = error_of(path)
    assert err.field_path == "schema" and err.line == 1
    assert "missing" in str(err)


def test_missing_required_field_points_at_file_start(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", ["id: t", "description: d", "schema: {type: object}", "cases:", "  - id: a"])
    assert_where(error_of(path), path, 1, "prompt")


def test_empty_cases_and_non_mapping_file(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [*HEADER, "cases: []"])
    assert_where(error_of(path), path, 5, "cases")
    listing = write(tmp_path, "l.yaml", ["- just", "- a list"])
    assert error_of(listing).line == 1


def test_load_tasks_refuses_duplicate_task_ids_across_files(tmp_path: Path) -> None:
    one = write(tmp_path, "a.yaml", [*HEADER, "cases:", "  - {id: a, vars: {x: 1}}"])
    two = write(tmp_path, "b.yaml", [*HEADER, "cases:", "  - {id: a, vars: {x: 1}}"])
    with pytest.raises(TaskFileError) as info:
        load_tasks(tmp_path)
    assert str(two) in str(info.value) and str(one) in str(info.value)


def test_load_tasks_filters_by_glob_and_reports_unknown(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", ["id: alpha", *HEADER[1:], "cases:", "  - {id: a, vars: {x: 1}}"])
    write(tmp_path, "b.yml", ["id: beta", *HEADER[1:], "cases:", "  - {id: a, vars: {x: 1}}"])
    assert [t.id for t in load_tasks(tmp_path)] == ["alpha", "beta"]
    assert [t.id for t in load_tasks(tmp_path, ["b*"])] == ["beta"]
    with pytest.raises(TaskFileError) as info:
        load_tasks(tmp_path, ["gamma"])
    assert "alpha" in str(info.value)
    with pytest.raises(TaskFileError):
        load_tasks(tmp_path / "empty-folder-does-not-exist")


def test_repository_task_files_all_load() -> None:
    tasks = load_tasks(Path(__file__).resolve().parent.parent / "tasks")
    assert len(tasks) >= 5
    for task in tasks:
        for case in task.spec.cases:
            assert "{{" not in task.messages(case)[-1]["content"]
