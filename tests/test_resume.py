"""Interrupt and resume, for real: `python -m harness run` in a subprocess against a
slow fake server, stopped by SIGKILL (a crash), SIGINT (Ctrl-C), SIGTERM or the
run's own deadline, then `harness run --resume RUN` to completion.

After the resume every planned key is on disk exactly once, and the server was
never asked again for a sample that had finished before the stop.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Behaviour, openai_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = 30
MODEL = "test-model"


def write_task(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "id": "tiny",
        "description": "A tiny task for resume tests.",
        "prompt": "Reply with the JSON object for number {{ n }}.",
        "output_format": "json",
        "schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "params": {"temperature": 0.0, "max_tokens": 32},
        "cases": [{"id": f"c{i:03d}", "vars": {"n": i}} for i in range(CASES)],
    }
    (folder / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def case_of(body: dict) -> int:
    return int(re.search(r"number (\d+)", body["messages"][-1]["content"]).group(1))


def answer(body: dict) -> str:
    return json.dumps({"n": case_of(body)})


def key(case: int) -> str:
    return f"tiny/c{case:03d}/openai:{MODEL}/free/0"


PLANNED = {key(i) for i in range(CASES)}


def _default_sigint() -> None:
    # A child inherits an *ignored* SIGINT (e.g. from a non-interactive shell); Ctrl-C must reach it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OLLAMA_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_run(tmp_path: Path, url: str, *extra: str) -> tuple[subprocess.Popen, Path, Path]:
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    cmd = [sys.executable, "-m", "harness", "run", "-b", "openai", "--base-url", url + "/v1", "-m", MODEL,
           "--tasks-dir", str(tmp_path / "tasks"), "--results", str(tmp_path / "results"), "-j", "3",
           "--retries", "0", "-f", "csv", *extra]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=out.open("w"), stderr=err.open("w"),
                            stdin=subprocess.DEVNULL, preexec_fn=_default_sigint)
    return proc, out, err


def resume(tmp_path: Path, run_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "run", "--resume", str(run_dir), "--results",
           str(tmp_path / "results"), "-j", "6", "-f", "csv"]
    return subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def wait_for_run_dir(results: Path, proc: subprocess.Popen, timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(results.glob("*/samples.jsonl"))
        if found:
            return found[0].parent
        assert proc.poll() is None, "the run ended before it wrote anything"
        time.sleep(0.05)
    raise AssertionError("no run folder appeared")


def complete_lines(run_dir: Path) -> list[dict]:
    data = (run_dir / "samples.jsonl").read_bytes()
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].decode().splitlines()]


def wait_for_lines(run_dir: Path, proc: subprocess.Popen, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(complete_lines(run_dir)) >= count:
            return
        assert proc.poll() is None, "the run ended too early"
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} samples after {timeout}s")


def strict_lines(run_dir: Path) -> list[dict]:
    text = (run_dir / "samples.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n"), "samples.jsonl ends in a torn line"
    return [json.loads(line) for line in text.splitlines()]


def check_resumed(server, run_dir: Path, finished_before: set[str], requests_before: int) -> None:
    records = strict_lines(run_dir)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), "a key is on disk twice"
    assert set(keys) == PLANNED
    assert all(r["error"] is None for r in records)
    asked_again = {key(case_of(body)) for body in server.requests[requests_before:]}
    assert not asked_again & finished_before, "the server was called again for finished samples"
    assert asked_again == PLANNED - finished_before
    assert len(server.requests) - requests_before == len(PLANNED - finished_before)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert (run_dir / "summary.json").exists()


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def gone(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] == "Z"


@pytest.mark.parametrize("scoring", ["inline", "process"])
def test_sigkill_then_resume_with_torn_line(tmp_path, scoring):
    write_task(tmp_path / "tasks")
    behaviour = Behaviour(outputs=answer, delay_s=0.25)
    with openai_server(behaviour) as server:
        proc, _, _ = start_run(tmp_path, server.url, "--scoring", scoring)
        try:
            run_dir = wait_for_run_dir(tmp_path / "results", proc)
            wait_for_lines(run_dir, proc, 6)
            helpers = children_of(proc.pid)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        assert len(helpers) == (1 if scoring == "process" else 0)
        deadline = time.monotonic() + 5
        while not all(gone(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(pid) for pid in helpers), "the scoring process outlived a killed harness"
        finished_before = {r["key"] for r in complete_lines(run_dir)}
        assert 6 <= len(finished_before) < CASES
        # A crash in the middle of writing a line leaves half of it behind.
        with (run_dir / "samples.jsonl").open("a", encoding="utf-8") as handle:
            handle.write('{"key": "' + key(CASES - 1) + '", "task": "tiny", "output": "{\\"n\\": 2')
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"

        behaviour.delay_s = 0.0
        requests_before = len(server.requests)
        done = resume(tmp_path, run_dir)
        assert done.returncode == 0, done.stderr
        assert f"{CASES - len(finished_before)} of {CASES} samples to go" in done.stderr
        check_resumed(server, run_dir, finished_before, requests_before)


@pytest.mark.parametrize("scoring", ["inline", "process"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_then_resume(tmp_path, signum, scoring):
    write_task(tmp_path / "tasks")
    behaviour = Behaviour(outputs=answer, delay_s=0.2)
    with openai_server(behaviour) as server:
        proc, _, err = start_run(tmp_path, server.url, "--scoring", scoring)
        try:
            run_dir = wait_for_run_dir(tmp_path / "results", proc)
            wait_for_lines(run_dir, proc, 4)
            # From now on the server hangs: the requests in flight at the signal would take 30 s.
            behaviour.delay_s = 30.0
            time.sleep(0.4)
            assert server.in_flight >= 1
            signalled = time.monotonic()
            proc.send_signal(signum)
            proc.wait(timeout=15)
            stop_s = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = err.read_text()
        assert proc.returncode == 130, stderr
        assert stop_s < 5, "in-flight requests were waited for instead of cancelled"
        assert f"harness run --resume {run_dir}" in stderr
        assert "Traceback" not in stderr
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "interrupted"
        finished_before = {r["key"] for r in strict_lines(run_dir)}  # every line complete
        assert f"{len(finished_before)} of {CASES} samples are on disk" in stderr
        assert len(finished_before) < CASES

        behaviour.delay_s = 0.0
        requests_before = len(server.requests)
        done = resume(tmp_path, run_dir)
        assert done.returncode == 0, done.stderr
        check_resumed(server, run_dir, finished_before, requests_before)


def test_deadline_stops_resumably(tmp_path):
    write_task(tmp_path / "tasks")
    behaviour = Behaviour(outputs=answer, delay_s=0.3)
    with openai_server(behaviour) as server:
        proc, _, err = start_run(tmp_path, server.url, "--deadline", "1")
        proc.wait(timeout=30)
        stderr = err.read_text()
        assert proc.returncode == 130, stderr
        assert "deadline" in stderr and "--resume" in stderr
        (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
        finished_before = {r["key"] for r in strict_lines(run_dir)}
        assert 0 < len(finished_before) < CASES

        behaviour.delay_s = 0.0
        requests_before = len(server.requests)
        done = resume(tmp_path, run_dir)
        assert done.returncode == 0, done.stderr
        check_resumed(server, run_dir, finished_before, requests_before)


def test_resume_reruns_error_samples_and_last_record_wins(tmp_path):
    from harness.results import read_samples

    write_task(tmp_path / "tasks")
    behaviour = Behaviour(outputs=answer, statuses=[500, 500, 500])
    with openai_server(behaviour) as server:
        proc, _, err = start_run(tmp_path, server.url)
        assert proc.wait(timeout=30) == 0, err.read_text()
        (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
        failed = {r["key"] for r in strict_lines(run_dir) if r["error"]}
        assert len(failed) == 3
        requests_before = len(server.requests)
        done = resume(tmp_path, run_dir)
        assert done.returncode == 0, done.stderr
        assert {key(case_of(b)) for b in server.requests[requests_before:]} == failed
        assert len(server.requests) - requests_before == 3
    records = read_samples(run_dir)
    assert sorted(r["key"] for r in records) == sorted(PLANNED)
    assert all(r["error"] is None for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    overall = [g for g in summary["groups"] if g["task"] == "(all tasks)"][0]
    assert overall["samples"] == CASES and overall["errors"] == 0


def test_second_ctrl_c_quits_at_once(tmp_path):
    write_task(tmp_path / "tasks")
    behaviour = Behaviour(outputs=answer, delay_s=0.2)
    with openai_server(behaviour) as server:
        proc, _, err = start_run(tmp_path, server.url, "--api-key", "sk-test-not-stored")
        try:
            run_dir = wait_for_run_dir(tmp_path / "results", proc)
            wait_for_lines(run_dir, proc, 3)
            behaviour.delay_s = 30.0
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)  # two signals sent back to back would arrive as one
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = err.read_text()
        assert proc.returncode == 130, stderr
        assert f"harness run --resume {run_dir} --api-key" in stderr  # the key is not stored: say so
        assert "sk-test-not-stored" not in stderr
        assert "Traceback" not in stderr
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
        finished_before = {r["key"] for r in strict_lines(run_dir)}
        behaviour.delay_s = 0.0
        requests_before = len(server.requests)
        done = resume(tmp_path, run_dir)
        assert done.returncode == 0, done.stderr
        check_resumed(server, run_dir, finished_before, requests_before)


def test_sample_writer_keeps_what_orjson_refuses(tmp_path) -> None:
    """A lone surrogate in a model's output or a huge int in server timings must not lose the sample."""
    from harness.results import SampleWriter, iter_samples

    writer = SampleWriter(tmp_path)
    writer.append({"key": "a", "output": "half a pair: \ud800", "timing": {"server": {"n": 2**70}}})
    writer.append({"key": "b", "output": "Grüße", "x": float("nan")})
    writer.close()
    records = list(iter_samples(tmp_path))
    assert [r["key"] for r in records] == ["a", "b"]
    assert records[0]["output"] == "half a pair: \ud800" and records[0]["timing"]["server"]["n"] == 2**70
    assert records[1]["output"] == "Grüße"
