"""Credentials never leave memory: not into results, logs, reports or error messages.

A distinctive key is planted through every route a user has (--api-key, the
OPENAI_API_KEY environment variable, api_key_env in a config file, api_key in a
config file) and sent to fake servers whose error bodies echo the request's
headers back, Authorization included. Then everything the runs wrote (the whole
results tree and cache, stdout, stderr, every report format) is searched for
the key. The server must have received the key, or the test would prove nothing.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Behaviour, OllamaServer, OpenAIServer  # noqa: E402

from harness.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-PLANTED-abc123XYZ"
USER, PASSWORD = "alice", "hunter2-PLANTED-pw"
CASES = 6


class _Echo:
    """Error bodies that quote every request header back (a server that helpfully shows
    what it got, including the Authorization header)."""

    def _error(self, h, status, message, headers=None):
        # Authorization first: error snippets are cut after a couple of hundred characters.
        items = sorted(h.headers.items(), key=lambda kv: kv[0].lower() != "authorization")
        seen = "; ".join(f"{k}: {v}" for k, v in items)
        super()._error(h, status, f"{message}. You sent: {seen}", headers)  # type: ignore[misc]


class EchoOpenAI(_Echo, OpenAIServer):
    pass


class EchoOllama(_Echo, OllamaServer):
    pass


def behaviour() -> Behaviour:
    # Two auth failures, some server errors (retried; maybe given up on), the rest fine: at most
    # three samples can fail, whatever order the concurrent requests take the statuses in.
    return Behaviour(outputs=['{"n": 1}'], statuses=[401, 500, 500, 403])


def write_task(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "id": "tiny",
        "description": "A tiny task for secrets tests.",
        "prompt": "Reply with the JSON object for number {{ n }}.",
        "output_format": "json",
        "schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "cases": [{"id": f"c{i}", "vars": {"n": i}} for i in range(CASES)],
    }
    (folder / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def harness(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OLLAMA_"))}
    full["PYTHONPATH"] = str(ROOT) + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def written_text(root: Path, skip: set[Path]) -> dict[str, bytes]:
    """Every file under root (but the inputs we wrote ourselves), as bytes."""
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and p not in skip}


def assert_absent(needles: list[str], blobs: dict[str, bytes | str]) -> None:
    for needle in needles:
        for where, blob in blobs.items():
            data = blob.encode("utf-8") if isinstance(blob, str) else blob
            assert needle.encode("utf-8") not in data, f"{needle!r} leaked into {where}"


def reports(run_dir: Path, out_dir: Path, capsys) -> dict[str, str]:
    """Every report format of a run, via the CLI, to stdout and to a file."""
    formats = ["table", "markdown", "csv", "json"]
    if importlib.util.find_spec("harness.report.export") is not None:
        formats += ["html", "junit"]
    texts: dict[str, str] = {}
    capsys.readouterr()
    for fmt in formats:
        assert main(["report", str(run_dir), "-f", fmt]) == 0
        captured = capsys.readouterr()
        texts[f"report {fmt} stdout"] = captured.out + captured.err
        target = out_dir / f"report.{fmt}"
        assert main(["report", str(run_dir), "-f", fmt, "-o", str(target)]) == 0
        texts[f"report {fmt} file"] = target.read_text(encoding="utf-8")
    return texts


ROUTES = ["cli-openai", "env-openai", "config-env", "config-inline", "cli-ollama"]


@pytest.mark.parametrize("route", ROUTES)
def test_api_key_never_written(tmp_path, capsys, route):
    work = tmp_path / "work"
    write_task(work / "tasks")
    server_class = EchoOllama if route == "cli-ollama" else EchoOpenAI
    models = ("llama2:latest",) if route == "cli-ollama" else ("test-model",)
    inputs: set[Path] = set()
    with server_class(behaviour(), models=models) as server:
        common = ["--tasks-dir", "tasks", "--results", "results", "-j", "2", "--retries", "1",
                  "--cache", "cache/responses.sqlite", "-f", "table"]
        env: dict[str, str] = {}
        if route == "cli-openai":
            args = ["-b", "openai", "--base-url", server.url + "/v1", "-m", "test-model", "--api-key", KEY]
        elif route == "cli-ollama":
            args = ["-b", "ollama", "--base-url", server.url, "-m", "llama2:latest", "--api-key", KEY]
        elif route == "env-openai":
            args = ["-b", "openai", "--base-url", server.url + "/v1", "-m", "test-model"]
            env = {"OPENAI_API_KEY": KEY}
        else:
            entry = {"kind": "vllm", "base_url": server.url + "/v1", "models": ["test-model"]}
            if route == "config-env":
                entry["api_key_env"] = "MY_HARNESS_KEY"
                env = {"MY_HARNESS_KEY": KEY}
            else:
                entry["api_key"] = KEY
            config = work / "config" / "backends.yaml"
            config.parent.mkdir()
            config.write_text(yaml.safe_dump({"default": "srv", "backends": {"srv": entry}}), encoding="utf-8")
            inputs.add(config)
            args = ["--config", str(config), "-b", "srv"]

        first = harness(work, "run", *args, *common, env=env)
        assert first.returncode == 0, first.stderr
        (run_dir,) = [p for p in (work / "results").iterdir() if p.is_dir()]
        records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
        errors = [r["error"] for r in records if r["error"]]
        oks = [r for r in records if not r["error"]]
        assert errors and oks, "the server should have failed some requests and answered others"
        auth_errors = [e for e in errors if e["status"] in (401, 403)]
        assert auth_errors
        # The echo happened, and was scrubbed: the error still says what was wrong.
        assert any("Bearer ***" in e["message"] or "***" in e["message"] for e in auth_errors), auth_errors
        assert any("API key" in e["message"] for e in auth_errors)

        # Resuming re-runs the failed samples (the key must be given again when it came from the CLI).
        resume_args = ["--api-key", KEY] if route.startswith("cli") else []
        if route == "config-inline":
            resume_args = ["--api-key", KEY]  # the manifest keeps no key: the user repeats it
        server.behaviour.statuses = [401, 500]
        second = harness(work, "run", "--resume", str(run_dir), "--results", "results", "--retries", "0",
                         *resume_args, env=env)
        assert second.returncode == 0, second.stderr

        # The key did reach the server, every time.
        auths = [h.get("authorization") for h in server.headers]
        assert auths and all(a == f"Bearer {KEY}" for a in auths), set(auths)

    blobs: dict[str, bytes | str] = {
        "run stdout": first.stdout, "run stderr": first.stderr,
        "resume stdout": second.stdout, "resume stderr": second.stderr,
    }
    blobs.update(reports(run_dir, tmp_path, capsys))
    capsys.readouterr()
    main(["cache", "info", "--path", str(work / "cache" / "responses.sqlite")])
    captured = capsys.readouterr()
    blobs["cache info"] = captured.out + captured.err
    blobs.update(written_text(work, inputs))
    assert any(name.endswith("manifest.json") for name in blobs)
    assert_absent([KEY, KEY[3:]], blobs)


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_password_in_base_url_never_written(tmp_path, capsys, kind):
    work = tmp_path / "work"
    write_task(work / "tasks")
    server_class, model = (EchoOpenAI, "test-model") if kind == "openai" else (EchoOllama, "llama2:latest")
    with server_class(behaviour(), models=(model,)) as server:
        host = server.url.removeprefix("http://")
        url = f"http://{USER}:{PASSWORD}@{host}" + ("/v1" if kind == "openai" else "")
        run = harness(work, "run", "-b", kind, "--base-url", url, "-m", model, "--tasks-dir", "tasks",
                      "--results", "results", "-j", "2", "--retries", "1", "-f", "json")
        assert run.returncode == 0, run.stderr
        auths = {h.get("authorization") for h in server.headers}
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    # The credentials in the URL were used (HTTP basic auth), so there was something to leak.
    assert f"Basic {basic}" in auths, auths
    (run_dir,) = [p for p in (work / "results").iterdir() if p.is_dir()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["backend"]["base_url"].startswith("http://127.0.0.1:")
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert any(r["error"] and r["error"]["status"] == 401 for r in records)
    blobs: dict[str, bytes | str] = {"stdout": run.stdout, "stderr": run.stderr}
    blobs.update(reports(run_dir, tmp_path, capsys))
    blobs.update(written_text(work, set()))
    assert_absent([PASSWORD, basic, f"{USER}:"], blobs)


def test_task_files_cannot_run_code_or_read_outside_their_folder(tmp_path, capsys):
    """Task files go through yaml.safe_load, and schema_file stays inside the tasks folder
    (no `..`, no absolute path, no symlink pointing out)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"type": "object"}', encoding="utf-8")
    marker = tmp_path / "pwned"
    header = "id: t\ndescription: d\nprompt: hi\ncases:\n  - id: a\n"
    attempts = {
        "python-tag": header + f"schema: !!python/object/apply:os.system ['touch {marker}']\n",
        "dotdot": header + "schema_file: ../outside/secret.json\n",
        "absolute": header + f"schema_file: {json.dumps(str(outside / 'secret.json'))}\n",
        "symlink": header + "schema_file: link/secret.json\n",
    }
    for name, text in attempts.items():
        tasks = tmp_path / f"tasks-{name}"
        tasks.mkdir()
        (tasks / "t.yaml").write_text(text, encoding="utf-8")
        if name == "symlink":
            (tasks / "link").symlink_to(outside, target_is_directory=True)
        code = main(["run", "-b", "openai", "--base-url", "http://127.0.0.1:9/v1", "-m", "m",
                     "--tasks-dir", str(tasks), "--results", str(tmp_path / "results")])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert "t.yaml" in err, (name, err)
        if name != "python-tag":
            assert "leaves the tasks folder" in err, (name, err)
    assert not marker.exists()
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
