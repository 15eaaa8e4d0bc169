"""Timing accuracy: harness-measured latency per sample vs the server's own timing of it.

  * llama.cpp (real server, bundled gemma-3-270m): timing.total_s vs the response's
    `timings` prompt_ms + predicted_ms;
  * ollama protocol (the instant server streaming with a real per-piece delay, in its own
    process): timing.total_s vs the final object's total_duration;
  * OpenAI protocol on the same instant server: vs its llama.cpp-style timings.
The difference is what harness adds on top of the server (HTTP, parsing, event loop): the
median should be a few ms at most. Scoring happens after the clock stops.

    python bench/timing_accuracy.py                   # llama.cpp 24 samples + 200 per instant protocol
    python bench/timing_accuracy.py --no-llama        # instant server only (seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
from pathlib import Path

from _common import (ROOT, InstantServer, LlamaServer, command_line, fmt_table, machine_line, wait_for_low_load,
                     write_bench_task)

from harness.config import BackendConfig
from harness.evaluate import RunOptions, run_evaluation
from harness.models import GenerationParams
from harness.results import iter_samples


def run(config: BackendConfig, tasks_dir: Path, results: Path, concurrency: int, **kwargs) -> list[dict]:
    options = RunOptions(backend=config, tasks_dir=tasks_dir, concurrency=concurrency, results_root=results,
                         progress=False, **kwargs)
    run_dir = asyncio.run(run_evaluation(options, notice=lambda message: None))
    return [r for r in iter_samples(run_dir) if not r["error"]]


def server_ms(record: dict, kind: str) -> float | None:
    server = (record.get("timing") or {}).get("server") or {}
    if kind == "ollama":
        return server["total_duration"] / 1e6 if "total_duration" in server else None
    if "prompt_ms" in server and "predicted_ms" in server:
        return server["prompt_ms"] + server["predicted_ms"]
    return None


async def bare(url: str, kind: str, samples: int, tasks_dir: Path, model: str = "bench-model",
               **plan: object) -> list[dict]:
    """The floor: a bare httpx client (POST, read the stream, nothing else) timed the same way,
    as records shaped like harness's (total_s from sending to the last chunk's arrival)."""
    import json
    import time

    import httpx

    from harness.backends.ollama import OllamaBackend
    from harness.backends.openai_compat import OpenAICompatBackend
    from harness.runner import plan_jobs
    from harness.tasks import load_tasks

    task_filter = plan.pop("task_filter", None)
    jobs = list(plan_jobs(load_tasks(tasks_dir, task_filter), "bare", [model], ["free"],  # type: ignore[arg-type]
                          **({"repeat": math.ceil(samples / 10)} if not plan else plan)))  # type: ignore[arg-type]
    if kind == "ollama":
        bodies, path = [OllamaBackend("b", url)._body(j.request, True) for j in jobs], "/api/chat"
    else:
        bodies, path = [OpenAICompatBackend("b", url + "/v1")._arguments(j.request) for j in jobs], "/v1/chat/completions"
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as client:
        for body in bodies:
            for attempt in range(3):  # a keep-alive connection the server just closed: send again
                started = time.perf_counter()
                tail = b""
                try:
                    async with client.stream("POST", path, json=body) as response:
                        async for chunk in response.aiter_bytes():
                            last = time.perf_counter()
                            tail = chunk if b"timings" in chunk or b"total_duration" in chunk else tail
                    break
                except httpx.RemoteProtocolError:
                    if attempt == 2:
                        raise
            line = [x for x in tail.decode().splitlines() if "timings" in x or "total_duration" in x][-1]
            line = line.strip().removeprefix("data: ")
            server = json.loads(line) if kind == "ollama" else json.loads(line)["timings"]
            out.append({"timing": {"total_s": last - started, "server": server}})
    return out


def row(label: str, records: list[dict], kind: str) -> list:
    pairs = [(r["timing"]["total_s"] * 1000, server_ms(r, kind)) for r in records]
    pairs = [(h, s) for h, s in pairs if s is not None]
    if not pairs:
        return [label, 0, "-", "-", "-", "-", "-"]
    diffs = sorted(h - s for h, s in pairs)
    q = lambda p: diffs[min(len(diffs) - 1, round(p / 100 * (len(diffs) - 1)))]  # noqa: E731
    return [label, len(pairs), f"{statistics.median(h for h, _ in pairs):.1f}",
            f"{statistics.median(s for _, s in pairs):.1f}", f"{statistics.median(diffs):.2f}",
            f"{q(10):.2f} / {q(90):.2f}", f"{statistics.median(diffs) / statistics.median(h for h, _ in pairs):.2%}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="samples per instant-server protocol (default 200)")
    parser.add_argument("--piece-delay-ms", type=float, default=1.0,
                        help="instant server: delay before each streamed piece (default 1 ms, ~90 pieces)")
    parser.add_argument("--concurrency", "-j", type=int, default=1, help="requests in flight (default 1)")
    parser.add_argument("--no-llama", action="store_true", help="skip the real llama.cpp server")
    parser.add_argument("--llama-tasks", default="contact_card,ticket_classification,invoice")
    parser.add_argument("--llama-cases", type=int, default=4, help="cases per task on llama.cpp (default 4)")
    parser.add_argument("--llama-repeat", type=int, default=2, help="samples per case on llama.cpp (default 2)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--load-wait", type=float, default=120)
    args = parser.parse_args(argv)

    wait_for_low_load(args.max_load, args.load_wait)
    print(machine_line())
    rows = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-timing-") as tmp:
        tmp_path = Path(tmp)
        if not args.no_llama:
            with LlamaServer(4) as server:
                config = BackendConfig(name="llama", kind="llamacpp", base_url=server.url + "/v1",
                                       models=[server.model], timeout=600)
                tasks = [t.strip() for t in args.llama_tasks.split(",") if t.strip()]
                params = GenerationParams(temperature=0.0, max_tokens=args.max_tokens)
                run(config, ROOT / "tasks", tmp_path / "warm", 4, task_filter=tasks, limit=args.llama_cases,
                    params=params)  # warm-up
                records = run(config, ROOT / "tasks", tmp_path / "llama", args.concurrency, task_filter=tasks,
                              limit=args.llama_cases, params=params, repeat=args.llama_repeat)
                rows.append(row("llama.cpp (real), OpenAI API", records, "openai"))
                if args.concurrency == 1:
                    records = asyncio.run(bare(server.url, "openai", 0, ROOT / "tasks", server.model,
                                               task_filter=tasks, limit=args.llama_cases, override=params,
                                               repeat=args.llama_repeat))
                    rows.append(row("  bare httpx client, same requests (the floor)", records, "openai"))
        tasks_dir = write_bench_task(tmp_path / "tasks", 10)
        with InstantServer("--piece-delay-ms", str(args.piece_delay_ms)) as server:
            for kind in ("ollama", "openai"):
                config = BackendConfig(name=kind, kind=kind, models=["bench-model"],
                                       base_url=server.url + ("/v1" if kind == "openai" else ""))
                run(config, tasks_dir, tmp_path / f"warm-{kind}", args.concurrency, repeat=2)
                records = run(config, tasks_dir, tmp_path / kind, args.concurrency,
                              repeat=math.ceil(args.samples / 10))
                label = ("instant server, ollama API (total_duration)" if kind == "ollama"
                         else "instant server, OpenAI API (timings)")
                rows.append(row(label, records, kind))
                if args.concurrency == 1:
                    records = asyncio.run(bare(server.url, kind, args.samples, tasks_dir))
                    rows.append(row("  bare httpx client, same requests (the floor)", records, kind))
    print(f"\nconcurrency {args.concurrency}; instant server: {args.piece_delay_ms:g} ms before each of ~90 pieces; "
          f"llama.cpp: max_tokens {args.max_tokens}, temperature 0")
    print(fmt_table(["server", "samples", "harness ms (p50)", "server ms (p50)", "diff ms (p50)", "diff p10 / p90",
                     "diff / latency"], rows))
    print(machine_line())
    print(f"reproduce: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
