"""`harness repair`: repaired JSON on stdout, repairs and schema verdict on stderr."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from harness.repair.command import json_path, run

SCHEMA = {
    "type": "object",
    "required": ["Project Name", "Product Goals"],
    "properties": {
        "Project Name": {"type": "string", "pattern": "^[a-z_]+$"},
        "Product Goals": {"type": "array", "items": {"type": "string"}},
    },
}
SCHEMA_YAML = """\
type: object
required: [Project Name, Product Goals]
properties:
  Project Name: {type: string, pattern: "^[a-z_]+$"}
  Product Goals: {type: array, items: {type: string}}
"""


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_repairs_a_file_and_reports_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path, "out.txt", '[CONTENT]\n{"Project Name": "cli", "Product Goals": ["a",],}\n')
    assert run(source, None, "content") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"Project Name": "cli", "Product Goals": ["a"]}
    assert "repairs: content_tag_missing_close, trailing_commas" in captured.err


def test_valid_output_reports_no_repairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path, "out.json", '{"Project Name": "cli", "Product Goals": []}')
    schema = _write(tmp_path, "schema.json", json.dumps(SCHEMA))
    assert run(source, schema, "none") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["Project Name"] == "cli"
    assert "repairs: none" in captured.err and "schema: valid" in captured.err


@pytest.mark.parametrize("schema_name", ["schema.json", "schema.yaml"])
def test_schema_violations_are_printed_with_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  schema_name: str) -> None:
    text = "```json\n{'project name': 'Not Snake', 'Product Goals': ['a', 3]}\n```"
    source = _write(tmp_path, "out.txt", text)
    schema = _write(tmp_path, schema_name, json.dumps(SCHEMA) if schema_name.endswith("json") else SCHEMA_YAML)
    assert run(source, schema, "fence") == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"Project Name": "Not Snake", "Product Goals": ["a", 3]}
    assert "repairs: single_quotes, key_case" in captured.err
    assert '$["Project Name"]: ' in captured.err and "does not match" in captured.err
    assert '$["Product Goals"][1]: 3 is not of type' in captured.err


def test_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('Here you go: {"a": True}'))
    assert run("-", None, "none") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"a": True}
    assert "repairs: json_extracted_from_prose, python_literals" in captured.err


def test_unrepairable_output_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path, "out.txt", "I am sorry, I cannot do that.")
    assert run(source, None, "none") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "repairs: none" in captured.err and "no valid JSON" in captured.err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing_source", "cannot read"),
        ("missing_schema", "cannot read schema"),
        ("bad_schema", "not a valid JSON Schema"),
        ("bad_yaml", "neither JSON nor YAML"),
        ("scalar_schema", "must be a mapping"),
        ("bad_wrapper", "--wrapper"),
    ],
)
def test_usage_errors_return_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str) -> None:
    source = _write(tmp_path, "out.txt", '{"a": 1}')
    schema: str | None = None
    wrapper = "none"
    if setup == "missing_source":
        source = str(tmp_path / "nope.txt")
    elif setup == "missing_schema":
        schema = str(tmp_path / "nope.json")
    elif setup == "bad_schema":
        schema = _write(tmp_path, "s.json", '{"type": 12}')
    elif setup == "bad_yaml":
        schema = _write(tmp_path, "s.yaml", "a: [1\n")
    elif setup == "scalar_schema":
        schema = _write(tmp_path, "s.yaml", "just text")
    else:
        wrapper = "xml"
    assert run(source, schema, wrapper) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_json_path_rendering() -> None:
    assert json_path([]) == "$"
    assert json_path(["a", 0, "B c", "_x1"]) == '$.a[0]["B c"]._x1'
