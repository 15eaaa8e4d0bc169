"""Saturation: does harness keep a real llama.cpp server (--parallel 4) as busy as a bare client?

One llama-server with the bundled gemma-3-270m (started like `harness run -b local` does),
the same prompts (a few tasks' cases), temperature 0 and a fixed max_tokens:
  * bare client, concurrency 4: asyncio + httpx, POST and read each SSE stream, nothing else;
  * harness, concurrency 4: the real run path in-process (kind llamacpp, scoring and repair on);
  * harness, concurrency 1: the sequential baseline.
Output tokens/s = completion tokens (the server's usage) / wall time of the pass.

    python bench/saturation.py                    # 3 tasks x 4 cases x 2, max_tokens 64, 4 rounds: ~5 minutes
    python bench/saturation.py --cases 2 --repeat 1 --rounds 1   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, LlamaServer, command_line, fmt_table, machine_line, wait_for_low_load

import httpx

from harness.backends.openai_compat import OpenAICompatBackend
from harness.config import BackendConfig
from harness.evaluate import RunOptions, run_evaluation
from harness.models import GenerationParams
from harness.results import MANIFEST, iter_samples
from harness.runner import plan_jobs
from harness.tasks import load_tasks

_USAGE = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def request_bodies(tasks_dir: Path, task_ids: list[str], cases: int, repeat: int, model: str,
                   params: GenerationParams) -> list[dict]:
    """The exact bodies harness sends for these jobs (built by the backend itself)."""
    tasks = load_tasks(tasks_dir, task_ids)
    backend = OpenAICompatBackend("bench", "http://127.0.0.1:1/v1")
    return [backend._arguments(job.request)
            for job in plan_jobs(tasks, "bench", [model], ["free"], repeat=repeat, limit=cases, override=params)]


async def bare(url: str, bodies: list[dict], concurrency: int) -> tuple[float, int]:
    """POST every body, read its stream to the end; count completion tokens from the final usage."""
    tokens = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0), trust_env=False,
                                 limits=httpx.Limits(max_connections=None, max_keepalive_connections=64)) as client:
        iterator = iter(bodies)

        async def worker() -> None:
            nonlocal tokens
            for body in iterator:
                for attempt in range(3):  # a keep-alive connection the server just closed: send again
                    tail = b""
                    try:
                        async with client.stream("POST", url, json=body,
                                                 headers={"Authorization": "Bearer sk-no-key-required"}) as response:
                            async for chunk in response.aiter_bytes():
                                tail = (tail + chunk)[-2048:]
                        break
                    except httpx.RemoteProtocolError:
                        if attempt == 2:
                            raise
                found = _USAGE.findall(tail)
                tokens += int(found[-1]) if found else 0

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, tokens


def harness(url: str, tasks_dir: Path, task_ids: list[str], cases: int, repeat: int, model: str,
            params: GenerationParams, concurrency: int, results: Path) -> tuple[float, float, int, int]:
    """The real run path. Returns (end-to-end s, runner-phase s, output tokens, error samples)."""
    config = BackendConfig(name="bench", kind="llamacpp", base_url=url + "/v1", models=[model], timeout=600)
    options = RunOptions(backend=config, tasks_dir=tasks_dir, task_filter=task_ids, limit=cases, repeat=repeat,
                         params=params, concurrency=concurrency, results_root=results, progress=False)
    started = time.perf_counter()
    run_dir = asyncio.run(run_evaluation(options, notice=lambda message: None))
    total = time.perf_counter() - started
    runner_s = json.loads((run_dir / MANIFEST).read_text())["elapsed_s"]
    tokens = errors = retried = 0
    for record in iter_samples(run_dir):
        errors += bool(record["error"])
        retried += record["attempts"] > 1
        tokens += ((record.get("timing") or {}).get("output_tokens") or 0)
    if retried:
        print(f"  note: {retried} harness samples needed a retry", file=sys.stderr)
    return total, runner_s, tokens, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="contact_card,ticket_classification,invoice",
                        help="comma list of task ids from tasks/ (default contact_card,ticket_classification,invoice)")
    parser.add_argument("--cases", type=int, default=4, help="cases per task (default 4)")
    parser.add_argument("--repeat", type=int, default=2, help="samples per case (default 2)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=4, help="llama-server slots and concurrency (default 4)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, alternating which client goes first; best of each (default 4)")
    parser.add_argument("--no-sequential", action="store_true", help="skip the harness concurrency-1 pass")
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--load-wait", type=float, default=120)
    args = parser.parse_args(argv)
    task_ids = [t.strip() for t in args.tasks.split(",") if t.strip()]
    params = GenerationParams(temperature=0.0, max_tokens=args.max_tokens)
    tasks_dir = ROOT / "tasks"

    wait_for_low_load(args.max_load, args.load_wait)
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="harness-bench-sat-") as tmp, LlamaServer(args.parallel) as server:
        print(f"  llama.cpp server: {server.how}: {' '.join(server.command[1:])}", file=sys.stderr)
        url = server.url
        bodies = request_bodies(tasks_dir, task_ids, args.cases, args.repeat, server.model, params)
        chat = url + "/v1/chat/completions"
        asyncio.run(bare(chat, bodies, args.parallel))  # warm-up: model pages, prompt caches of every slot
        best: dict[str, tuple[float, int]] = {}
        errors = 0

        def keep(name: str, seconds: float, tokens: int) -> None:
            if name not in best or tokens / seconds > best[name][1] / best[name][0]:
                best[name] = (seconds, tokens)

        ratios = []
        pooled = {"bare": [0.0, 0], "harness": [0.0, 0]}  # seconds, tokens over every round
        for r in range(args.rounds):  # alternate which goes first: the server's speed drifts with the machine
            for name in (("bare", "harness") if r % 2 == 0 else ("harness", "bare")):
                if name == "bare":
                    seconds, tokens = asyncio.run(bare(chat, bodies, args.parallel))
                    keep("bare", seconds, tokens)
                    pooled["bare"][0] += seconds
                    pooled["bare"][1] += tokens
                else:
                    total, runner_s, h_tokens, errs = harness(url, tasks_dir, task_ids, args.cases, args.repeat,
                                                              server.model, params, args.parallel, Path(tmp) / f"h{r}")
                    errors += errs
                    keep("harness", total, h_tokens)
                    pooled["harness"][0] += total
                    pooled["harness"][1] += h_tokens
            ratios.append((h_tokens / total) / (tokens / seconds))
            print(f"  round {r + 1}: bare {tokens / seconds:6.1f} tok/s   harness {h_tokens / total:6.1f} tok/s   "
                  f"ratio {ratios[-1]:.2f}", file=sys.stderr, flush=True)
        if not args.no_sequential:
            total, runner_s, h_tokens, errs = harness(url, tasks_dir, task_ids, args.cases, args.repeat, server.model,
                                                      params, 1, Path(tmp) / "seq")
            errors += errs
            keep("harness-1", total, h_tokens)
            print(f"  sequential: harness {h_tokens / total:6.1f} tok/s", file=sys.stderr, flush=True)
    n = len(bodies)
    rate = {name: tokens / seconds for name, (seconds, tokens) in best.items()}
    rows = [[f"bare client, concurrency {args.parallel}", f"{rate['bare']:.1f}", best["bare"][1],
             f"{best['bare'][0]:.1f}", "1.00"],
            [f"harness, concurrency {args.parallel}", f"{rate['harness']:.1f}", best["harness"][1],
             f"{best['harness'][0]:.1f}", f"{rate['harness'] / rate['bare']:.2f}"]]
    if "harness-1" in rate:
        rows.append(["harness, concurrency 1", f"{rate['harness-1']:.1f}", best["harness-1"][1],
                     f"{best['harness-1'][0]:.1f}", f"{rate['harness-1'] / rate['bare']:.2f}"])
    print(f"\nllama.cpp --parallel {args.parallel}, gemma-3-270m Q4_K_M; {n} requests per pass ({', '.join(task_ids)}: "
          f"{args.cases} cases x {args.repeat}), max_tokens {args.max_tokens}, temperature 0; best of {args.rounds}")
    print(fmt_table(["client", "output tok/s", "tokens", "wall s", "vs bare"], rows))
    ratio = rate["harness"] / rate["bare"]
    pooled_ratio = (pooled["harness"][1] / pooled["harness"][0]) / (pooled["bare"][1] / pooled["bare"][0])
    print(f"per-round harness/bare ratios: {', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}); "
          f"all rounds pooled (tokens / seconds of every pass): {pooled_ratio:.3f}")
    print(f"harness / bare at concurrency {args.parallel}: {ratio:.3f} (goal >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})"
          + (f"; concurrency {args.parallel} vs 1: x{rate['harness'] / rate['harness-1']:.2f}" if "harness-1" in rate else ""))
    if errors:
        print(f"warning: {errors} harness samples were errors")
    print(machine_line())
    print(f"reproduce: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
