"""Client overhead: harness (Runner + scoring + repair + SampleWriter) vs a bare asyncio+httpx loop.

Both send the same requests at the same concurrency to an *instant* server running in a
separate process (bench/instant_server.py: canned SSE / NDJSON streams of a small
contact card, one output in three broken and needing repair). The harness side is the
real `harness run` path in-process (`harness.evaluate.run_evaluation`: plan, backend,
runner, scoring with repair, samples.jsonl, summary). The bare side only POSTs and reads
the streamed body to the end.

    python bench/client_overhead.py                      # 5,000 samples per protocol, concurrency 8
    python bench/client_overhead.py --samples 500 --rounds 1   # quick

Goals: harness >= 0.8 x the bare loop, and > 1,000 samples/s with scoring and repair on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from _common import (InstantServer, command_line, fmt_table, machine_line, server_cpu, wait_for_low_load,
                     write_bench_task)

import httpx

from harness.backends.ollama import OllamaBackend
from harness.backends.openai_compat import OpenAICompatBackend
from harness.config import BackendConfig
from harness.evaluate import RunOptions, run_evaluation
from harness.results import MANIFEST, iter_samples
from harness.runner import plan_jobs
from harness.tasks import load_tasks

CASES = 10
MODEL = "bench-model"


def bodies(tasks_dir: Path, protocol: str, samples: int) -> list[dict]:
    """The exact request bodies the harness backend would send, built the backend's own way."""
    tasks = load_tasks(tasks_dir)
    repeat = math.ceil(samples / CASES)
    jobs = list(plan_jobs(tasks, "bench", [MODEL], ["free"], repeat=repeat))[:samples]
    if protocol == "openai":
        backend = OpenAICompatBackend("bench", "http://127.0.0.1:1/v1")
        out = [backend._arguments(job.request) for job in jobs]
    else:
        backend = OllamaBackend("bench", "http://127.0.0.1:1")
        out = [backend._body(job.request, True) for job in jobs]
    return out


async def bare_loop(url: str, payloads: list[dict], concurrency: int) -> float:
    """POST each body and read its stream to the end; nothing else. Returns seconds."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), limits=limits, trust_env=False) as client:
        iterator = iter(payloads)

        async def worker() -> None:
            for body in iterator:
                async with client.stream("POST", url, json=body) as response:
                    async for _ in response.aiter_bytes():
                        pass

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def harness_run(base_url: str, protocol: str, tasks_dir: Path, results: Path, samples: int, concurrency: int,
                repair: bool = True) -> tuple[float, float, dict]:
    """The whole `harness run` path in-process. Returns (end-to-end s, runner-phase s, counts)."""
    config = BackendConfig(name="bench", kind=protocol, base_url=base_url, models=[MODEL])
    repeat = math.ceil(samples / CASES)
    options = RunOptions(backend=config, tasks_dir=tasks_dir, repeat=repeat, concurrency=concurrency,
                         results_root=results, repair=repair, progress=False)
    started = time.perf_counter()
    run_dir = asyncio.run(run_evaluation(options, notice=lambda message: None))
    total = time.perf_counter() - started
    manifest = json.loads((run_dir / MANIFEST).read_text())
    counts = {"samples": 0, "errors": 0, "raw_valid": 0, "repaired_valid": 0}
    for record in iter_samples(run_dir):
        counts["samples"] += 1
        counts["errors"] += bool(record["error"])
        score = record["score"] or {}
        counts["raw_valid"] += bool(score.get("raw", {}).get("schema_valid"))
        counts["repaired_valid"] += bool(score.get("repaired", {}).get("schema_valid"))
    return total, manifest["elapsed_s"], counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", "-n", type=int, default=5000, help="samples per protocol and client (default 5000)")
    parser.add_argument("--concurrency", "-j", type=int, default=8, help="requests in flight, both clients (default 8)")
    parser.add_argument("--protocols", default="openai,ollama", help="comma list: openai,ollama")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/harness rounds; best of each (default 3)")
    parser.add_argument("--no-repair", action="store_true", help="harness without repair (raw scoring only)")
    parser.add_argument("--pieces", type=int, default=0,
                        help="streamed events per answer (default 0: one per token, ~90, as llama.cpp/ollama send)")
    parser.add_argument("--valid-per-broken", type=int, default=2,
                        help="valid answers per broken one (default 2: one in three needs repair)")
    parser.add_argument("--max-load", type=float, default=1.0,
                        help="wait (up to --load-wait s) for the 1-min load to drop below this first; 0: don't")
    parser.add_argument("--load-wait", type=float, default=120)
    args = parser.parse_args(argv)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]

    wait_for_low_load(args.max_load, args.load_wait)
    print(machine_line())
    rows = []
    ratio_met = rate_met = True
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp, InstantServer(
            "--pieces", str(args.pieces), "--valid-per-broken", str(args.valid_per_broken)) as server:
        tmp_path = Path(tmp)
        tasks_dir = write_bench_task(tmp_path / "tasks", CASES)
        for protocol in protocols:
            base_url = server.url + ("/v1" if protocol == "openai" else "")
            path = server.url + ("/v1/chat/completions" if protocol == "openai" else "/api/chat")
            payloads = bodies(tasks_dir, protocol, args.samples)
            # Warm-up: imports, connection pool, the server's first answers.
            asyncio.run(bare_loop(path, payloads[:200], args.concurrency))
            harness_run(base_url, protocol, tasks_dir, tmp_path / "warm", 50, args.concurrency, not args.no_repair)
            best_bare, best_harness, best_runner = math.inf, math.inf, math.inf
            busy_bare, busy_harness, cpu_bare, cpu_harness, counts = 0.0, 0.0, 0.0, 0.0, {}
            for r in range(args.rounds):
                with server_cpu(server) as cpu:
                    mine = time.process_time()
                    seconds = asyncio.run(bare_loop(path, payloads, args.concurrency))
                    mine = time.process_time() - mine
                if seconds < best_bare:
                    best_bare, busy_bare, cpu_bare = seconds, cpu["busy"], mine / args.samples
                with server_cpu(server) as cpu:
                    mine = time.process_time()
                    total, runner_s, counts = harness_run(base_url, protocol, tasks_dir, tmp_path / f"r{r}",
                                                          args.samples, args.concurrency, not args.no_repair)
                    mine = time.process_time() - mine
                if total < best_harness:
                    best_harness, best_runner, busy_harness = total, runner_s, cpu["busy"]
                    cpu_harness = mine / max(counts["samples"], 1)
                print(f"  {protocol} round {r + 1}: bare {args.samples / seconds:7.0f}/s   harness "
                      f"{counts['samples'] / total:7.0f}/s (runner phase {counts['samples'] / runner_s:7.0f}/s)",
                      file=sys.stderr, flush=True)
            n = counts["samples"]
            if counts["errors"] or n < args.samples:
                print(f"  warning: {counts['errors']} error samples, {n} of {args.samples} written", file=sys.stderr)
            bare_rate, harness_rate = args.samples / best_bare, n / best_harness
            ratio = harness_rate / bare_rate
            ratio_met &= ratio >= 0.8
            rate_met &= harness_rate > 1000
            rows.append([protocol, f"{bare_rate:,.0f}", f"{harness_rate:,.0f}", f"{n / best_runner:,.0f}",
                         f"{ratio:.2f}", f"{cpu_bare * 1e6:,.0f} / {cpu_harness * 1e6:,.0f}",
                         f"{busy_bare:.0%} / {busy_harness:.0%}",
                         f"{counts['raw_valid']}/{n} -> {counts['repaired_valid']}/{n}"])
    events = f"{args.pieces} events" if args.pieces else "one event per token (~90)"
    print(f"\n{args.samples} samples per client, concurrency {args.concurrency}, best of {args.rounds}, repair "
          f"{'off' if args.no_repair else 'on'}; instant server in its own process: {events} per answer, "
          f"1 in {args.valid_per_broken + 1} answers broken")
    print(fmt_table(["protocol", "bare samples/s", "harness samples/s", "(runner phase)", "ratio",
                     "client CPU us/sample bare/harness", "server CPU bare/harness", "schema-valid raw -> repaired"],
                    rows))
    print(f"goals: ratio >= 0.80: {'met' if ratio_met else 'NOT met'}; harness > 1,000 samples/s: "
          f"{'met' if rate_met else 'NOT met'}")
    print(machine_line())
    print(f"reproduce: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
