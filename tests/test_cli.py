"""The `harness` command end to end, against real local servers, via `harness.cli.main([...])`."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from conftest import VALID_OUTPUT, write_task
from harness.cli import main
from harness.results import MANIFEST, SAMPLES, SUMMARY, iter_samples, read_manifest
from servers import Behaviour, closed_port_url, ollama_server, openai_server

TABLE_COLUMNS = ("raw parse%", "raw valid%", "p50", "ttft", "tok/s")
BROKEN_OUTPUT = '{"name": "pear", "qty": 4,}'  # a trailing comma: raw fails, repair rescues


def overall_row(out: str, model: str | None = None) -> dict[str, str]:
    """The last '(all tasks)' row of the printed table, as {header: cell}."""
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("model") and "raw parse%" in line)
    rows = [line for line in lines if "(all tasks)" in line and (model is None or line.startswith(model))]
    return dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", rows[-1].strip())))


def run_dirs(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if p.is_dir()) if results.exists() else []


def only_run(results: Path) -> Path:
    (run_dir,) = run_dirs(results)
    return run_dir


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    tasks = tmp_path / "tasks"
    write_task(tasks, "items", cases=3)
    return tasks, tmp_path / "results"


def test_run_ollama_prints_table_and_writes_run(folders, capsys) -> None:
    tasks, results = folders
    with ollama_server(Behaviour(outputs=[VALID_OUTPUT, BROKEN_OUTPUT, VALID_OUTPUT], chunk_delay_s=0.005)) as server:
        code = main(["run", "--backend", "ollama", "--model", "llama2", "--base-url", server.url,
                     "--tasks-dir", str(tasks), "--results", str(results)])
        assert server.calls == 3
        assert all(r["model"] == "llama2" and r["stream"] is True for r in server.requests)
    out, err = capsys.readouterr()
    assert code == 0
    for column in TABLE_COLUMNS:
        assert column in out
    row = overall_row(out, "ollama:llama2")
    assert (row["n"], row["err"], row["raw parse%"], row["raw valid%"]) == ("3", "0", "66.7", "66.7")
    assert (row["rep parse%"], row["rep valid%"], row["rescued"]) == ("100.0", "100.0", "1")
    assert float(row["tok/s"]) > 0 and float(row["ttft p50"]) >= 0
    assert "trailing_commas" in out
    run_dir = only_run(results)
    assert f"results: {run_dir}" in err
    assert {MANIFEST, SAMPLES, SUMMARY} <= {p.name for p in run_dir.iterdir()}
    assert read_manifest(run_dir)["backend"] == {"name": "ollama", "kind": "ollama", "base_url": server.url}


def test_run_openai_compatible(folders, capsys) -> None:
    tasks, results = folders
    with openai_server(Behaviour(outputs=[VALID_OUTPUT], chunk_delay_s=0.005)) as server:
        code = main(["run", "--backend", "openai", "--base-url", server.url + "/v1", "--model", "test-model",
                     "--tasks-dir", str(tasks), "--results", str(results), "--temperature", "0.7", "--seed", "3"])
        assert server.calls == 3
        assert all(r["temperature"] == 0.7 and r["seed"] == 3 and r["max_tokens"] == 64 for r in server.requests)
    out, _ = capsys.readouterr()
    assert code == 0
    for column in TABLE_COLUMNS:
        assert column in out
    assert "openai:test-model" in out
    samples = list(iter_samples(only_run(results)))
    assert len(samples) == 3
    assert all(s["timing"]["ttft_s"] is not None and s["timing"]["ttft_s"] <= s["timing"]["total_s"] for s in samples)


def test_run_both_modes_sends_constraint_and_shows_constrained_column(folders, capsys) -> None:
    tasks, results = folders
    with openai_server(Behaviour(outputs=[VALID_OUTPUT])) as server:
        code = main(["run", "-b", "vllm", "--base-url", server.url + "/v1", "-m", "test-model", "--mode", "both",
                     "--tasks-dir", str(tasks), "--results", str(results), "-j", "2"])
        constrained = [r for r in server.requests if "response_format" in r]
        assert len(server.requests) == 6 and len(constrained) == 3
        assert constrained[0]["response_format"]["json_schema"]["schema"]["required"] == ["name", "qty"]
        assert server.max_in_flight <= 2
    out, _ = capsys.readouterr()
    assert code == 0 and "constr valid%" in out


def test_two_quick_runs_get_separate_folders(folders) -> None:
    tasks, results = folders
    with openai_server(Behaviour(outputs=[VALID_OUTPUT])) as server:
        args = ["run", "--backend", "openai", "--base-url", server.url + "/v1", "--model", "test-model",
                "--tasks-dir", str(tasks), "--results", str(results)]
        assert main(args) == 0 and main(args) == 0
    dirs = run_dirs(results)
    assert len(dirs) == 2
    assert [len(list(iter_samples(d))) for d in dirs] == [3, 3]


def test_report_formats(folders, capsys) -> None:
    tasks, results = folders
    with ollama_server(Behaviour(outputs=[VALID_OUTPUT, BROKEN_OUTPUT])) as server:
        assert main(["run", "-b", "ollama", "-m", "llama2", "--base-url", server.url, "--tasks-dir", str(tasks),
                     "--results", str(results)]) == 0
    run_dir = only_run(results)
    capsys.readouterr()

    assert main(["report", str(run_dir), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "| model" in markdown and "raw valid%" in markdown and "|---" in markdown.replace(" ", "").replace(":", "")

    assert main(["report", str(run_dir), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    overall = next(r for r in rows if r["task"] == "(all tasks)")
    assert overall["model"] == "ollama:llama2" and overall["samples"] == "3"
    assert float(overall["raw_schema_valid_pct"]) == pytest.approx(66.7, abs=0.1)

    assert main(["report", str(run_dir), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    group = next(g for g in data["groups"] if g["task"] == "(all tasks)")
    assert group["rescued"] == 1 and group["failures"] == {"not_json": 1}

    out_file = run_dir.parent / "report.md"
    assert main(["report", str(run_dir), "-f", "markdown", "-o", str(out_file)]) == 0
    assert out_file.read_text().strip() == markdown.strip()


def test_broken_task_file_exits_2_with_file_and_line(tmp_path: Path, capsys) -> None:
    tasks = tmp_path / "tasks"
    write_task(tasks, "good", cases=1)
    bad = tasks / "bad.yaml"
    bad.write_text("id: bad\ndescription: d\nprompt: hi\nschema: {type: object}\ncases:\n  - id: a\n    vars: [1]\n")
    with openai_server() as server:
        code = main(["run", "-b", "openai", "--base-url", server.url + "/v1", "-m", "test-model",
                     "--tasks-dir", str(tasks), "--results", str(tmp_path / "results")])
        assert server.calls == 0
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}:7: cases[0].vars" in err


def test_unknown_backend_and_missing_model_exit_2(folders, capsys) -> None:
    tasks, results = folders
    assert main(["run", "-b", "nosuch", "-m", "x", "--tasks-dir", str(tasks), "--results", str(results)]) == 2
    assert "unknown backend 'nosuch'" in capsys.readouterr().err
    assert main(["run", "-b", "ollama", "--tasks-dir", str(tasks), "--results", str(results)]) == 2
    assert "--model" in capsys.readouterr().err


def test_unreachable_backend_gives_error_samples_and_names_the_url(folders, capsys) -> None:
    tasks, results = folders
    url = closed_port_url() + "/v1"
    code = main(["run", "-b", "openai", "--base-url", url, "-m", "test-model", "--retries", "0",
                 "--tasks-dir", str(tasks), "--results", str(results)])
    out, err = capsys.readouterr()
    assert code == 0
    samples = list(iter_samples(only_run(results)))
    assert len(samples) == 3
    assert all(s["error"]["kind"] == "connection" and url in s["error"]["message"] for s in samples)
    assert url in err and "3 of 3 samples failed" in err
    row = overall_row(out)
    assert (row["n"], row["err"], row["raw parse%"], row["p50 s"]) == ("3", "3", "-", "-")


def test_metagpt_config2_open_llm(folders, tmp_path: Path, capsys) -> None:
    tasks, results = folders
    with openai_server(Behaviour(outputs=[VALID_OUTPUT])) as server:
        config = tmp_path / "config2.yaml"
        config.write_text(f"llm:\n  api_type: open_llm\n  base_url: {server.url}/v1\n  model: test-model\n"
                          f"  api_key: sk-metagpt-1234\n")
        code = main(["run", "--config", str(config), "--tasks-dir", str(tasks), "--results", str(results)])
        assert server.calls == 3
        assert all(r["model"] == "test-model" for r in server.requests)
        assert all(h["authorization"] == "Bearer sk-metagpt-1234" for h in server.headers)
    assert code == 0
    assert "open_llm:test-model" in capsys.readouterr().out
    run_dir = only_run(results)
    manifest = read_manifest(run_dir)
    assert manifest["backend"]["name"] == "open_llm" and manifest["backend"]["kind"] == "openai"
    assert "sk-metagpt-1234" not in (run_dir / MANIFEST).read_text()
    assert "sk-metagpt-1234" not in (run_dir / SAMPLES).read_text()


def test_metagpt_config2_ollama_with_api_suffix_and_no_repair(folders, tmp_path: Path, capsys) -> None:
    tasks, results = folders
    with ollama_server(Behaviour(outputs=[BROKEN_OUTPUT])) as server:
        config = tmp_path / "config2.yaml"
        config.write_text(f"llm:\n  api_type: ollama\n  base_url: {server.url}/api\n  model: llama2\n"
                          "repair_llm_output: false\n")
        assert main(["run", "--config", str(config), "--tasks-dir", str(tasks), "--results", str(results)]) == 0
        assert server.calls == 3
    samples = list(iter_samples(only_run(results)))
    assert all(s["score"]["repaired"]["repairs_applied"] == [] for s in samples)
    assert all(not s["score"]["repaired"]["schema_valid"] for s in samples)


def test_rescore_rejudges_stored_outputs_without_calling_a_model(folders, capsys) -> None:
    tasks, results = folders
    with openai_server(Behaviour(outputs=[VALID_OUTPUT, BROKEN_OUTPUT, VALID_OUTPUT])) as server:
        assert main(["run", "-b", "openai", "--base-url", server.url + "/v1", "-m", "test-model",
                     "--tasks-dir", str(tasks), "--results", str(results)]) == 0
        calls = server.calls
    run_dir = only_run(results)
    # tamper with one stored verdict: rescore must put it right from the stored output alone
    lines = (run_dir / SAMPLES).read_text().splitlines()
    record = json.loads(lines[0])
    truth = record["score"]["raw"]["schema_valid"]
    record["score"]["raw"]["schema_valid"] = not truth
    lines[0] = json.dumps(record)
    (run_dir / SAMPLES).write_text("\n".join(lines) + "\n")
    capsys.readouterr()

    assert main(["rescore", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert "rescored" in err and "1 samples changed verdict" in err
    assert "raw valid%" in out
    assert server.calls == calls  # (the server is stopped anyway: any call would have failed)
    fixed = {r["key"]: r for r in iter_samples(run_dir)}[record["key"]]
    assert fixed["score"]["raw"]["schema_valid"] is truth
    summary = json.loads((run_dir / SUMMARY).read_text())
    assert next(g for g in summary["groups"] if g["task"] == "(all tasks)")["rescued"] == 1

    assert main(["rescore", str(run_dir), "--no-repair", "-f", "json"]) == 0
    out, err = capsys.readouterr()
    assert "1 samples changed verdict" in err  # without repair, the rescued sample is invalid again
    assert json.loads(out)["groups"][0]["rescued"] == 0


def test_resume_reruns_failed_samples(folders, capsys) -> None:
    tasks, results = folders
    with openai_server(Behaviour(outputs=[VALID_OUTPUT], statuses=[400])) as server:
        args = ["--tasks-dir", str(tasks), "--results", str(results)]
        assert main(["run", "-b", "openai", "--base-url", server.url + "/v1", "-m", "test-model", "-j", "1",
                     *args]) == 0
        run_dir = only_run(results)
        assert sum(1 for s in iter_samples(run_dir) if s["error"]) == 1
        server.reset_counters()
        assert main(["run", "--resume", str(run_dir), *args]) == 0
        assert server.calls == 1
    assert run_dirs(results) == [run_dir]
    out = capsys.readouterr().out
    row = overall_row(out)
    assert (row["n"], row["err"], row["raw valid%"]) == ("3", "0", "100.0")


def test_report_on_missing_run_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no run folder" in capsys.readouterr().err
