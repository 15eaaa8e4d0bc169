"""`harness backends`: reachability, models served, and constrained support actually tried."""

from __future__ import annotations

import json
from pathlib import Path

from harness.cli import main
from servers import Behaviour, closed_port_url, ollama_server, openai_server


def _config(tmp_path: Path, backends: dict) -> Path:
    path = tmp_path / "backends.yaml"
    path.write_text(json.dumps({"default": next(iter(backends)), "backends": backends}), encoding="utf-8")
    return path


def test_backends_lists_models_and_verifies_constrained_output(tmp_path: Path, capsys) -> None:
    with openai_server(Behaviour(outputs=['{"ok": true}']), models=("qwen-a", "qwen-b")) as obeys, \
            ollama_server(Behaviour(outputs=["Sure! Here is your JSON: ok"])) as ignores:
        config = _config(tmp_path, {
            "vllm": {"kind": "vllm", "base_url": f"{obeys.url}/v1", "models": ["qwen-a"]},
            "ollama": {"kind": "ollama", "base_url": ignores.url, "models": ["llama2"]},
        })
        code = main(["backends", "--config", str(config)])
        constrained_bodies = [r for r in obeys.requests if "response_format" in r]
        ollama_bodies = [r for r in ignores.requests if "format" in r]
    out = capsys.readouterr().out
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in ("vllm", "ollama")}
    assert "reachable" in rows["vllm"] and "qwen-a, qwen-b" in rows["vllm"] and rows["vllm"].rstrip().endswith("yes")
    # The ollama server answered prose although a schema was sent: the constraint was ignored.
    assert "llama2:latest" in rows["ollama"] and rows["ollama"].rstrip().endswith("ignored")
    assert constrained_bodies and constrained_bodies[0]["response_format"]["type"] == "json_schema"
    assert ollama_bodies and ollama_bodies[0]["format"]["required"] == ["ok"]


def test_unreachable_backend_is_named_with_what_to_try(tmp_path: Path, capsys) -> None:
    url = closed_port_url()
    config = _config(tmp_path, {"ollama": {"kind": "ollama", "base_url": url, "models": ["llama2"]}})
    code = main(["backends", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 1
    assert "unreachable" in out
    assert f"ollama: cannot reach {url}/api/tags" in out and "ollama serve" in out
