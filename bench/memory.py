"""Memory: peak RSS of the harness process for a 5,000- and a 50,000-sample run.

Each run is the real `harness run` (the CLI entry point: plan, backend, runner, scoring
with repair, samples.jsonl, summary, the printed table) in its own subprocess, against the
instant server (bench/instant_server.py, another process); the child reports its own
resource.getrusage(RUSAGE_SELF).ru_maxrss, and RUSAGE_CHILDREN for its scoring process
(harness/scorers.py). Samples stream to disk, so neither peak may grow with the number of
samples.

    python bench/memory.py                      # 5,000 vs 50,000 samples (about 5 minutes)
    python bench/memory.py --samples 1000,10000 # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, InstantServer, command_line, fmt_table, machine_line, write_bench_task

CASES = 10


def child(argv: list[str]) -> int:
    """In the subprocess: `harness run ...` in-process, then print our own peak RSS."""
    import resource

    from harness.cli import main

    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink  # the table: not wanted here
        try:
            code = main(argv)
        finally:
            sys.stdout = stdout
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    scorer_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the scoring process, if any
    print(json.dumps({"code": code, "peak_kb": peak_kb, "scorer_kb": scorer_kb, "elapsed_s": elapsed}))
    return 0


def run_child(server: InstantServer, tasks: Path, results: Path, samples: int, protocol: str,
              concurrency: int) -> dict:
    base_url = server.url + ("/v1" if protocol == "openai" else "")
    argv = ["run", "-b", protocol, "--base-url", base_url, "-m", "bench-model", "--tasks-dir", str(tasks),
            "--results", str(results), "--repeat", str(math.ceil(samples / CASES)), "-j", str(concurrency),
            "-f", "csv"]
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *argv], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    result = json.loads(lines[-1])
    run_dir = max(results.iterdir(), key=lambda p: p.stat().st_mtime)
    with (run_dir / "samples.jsonl").open("rb") as handle:
        result["samples"] = sum(1 for _ in handle)
    result["file_mb"] = (run_dir / "samples.jsonl").stat().st_size / 1e6
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="5000,50000", help="comma list of run sizes (default 5000,50000)")
    parser.add_argument("--protocol", default="openai", choices=["openai", "ollama"])
    parser.add_argument("--concurrency", "-j", type=int, default=8)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.samples.split(",") if s.strip()]

    print(machine_line())
    rows, peaks, scorer_peaks = [], [], []
    with tempfile.TemporaryDirectory(prefix="harness-bench-mem-") as tmp, InstantServer() as server:
        tasks = write_bench_task(Path(tmp) / "tasks", CASES)
        for size in sizes:
            results = Path(tmp) / f"results-{size}"
            result = run_child(server, tasks, results, size, args.protocol, args.concurrency)
            peaks.append(result["peak_kb"] / 1024)
            scorer_peaks.append(result["scorer_kb"] / 1024)
            rows.append([f"{result['samples']:,}", f"{result['peak_kb'] / 1024:.1f}",
                         f"{result['scorer_kb'] / 1024:.1f}", f"{result['file_mb']:.1f}",
                         f"{result['elapsed_s']:.1f}", f"{result['samples'] / result['elapsed_s']:.0f}",
                         result["code"]])
            print(f"  {size:,} samples: peak RSS {result['peak_kb'] / 1024:.1f} MiB", file=sys.stderr, flush=True)
    print(f"\n`harness run` ({args.protocol}, concurrency {args.concurrency}) in a subprocess against the instant server")
    print(fmt_table(["samples", "peak RSS MiB", "scoring process MiB", "samples.jsonl MB", "wall s", "samples/s",
                     "exit"], rows))
    if len(peaks) > 1:
        growth = peaks[-1] - peaks[0]
        factor = sizes[-1] / sizes[0]
        print(f"peak RSS {peaks[0]:.1f} -> {peaks[-1]:.1f} MiB for x{factor:.0f} samples: "
              f"{growth:+.1f} MiB ({growth * 1024 / max(sizes[-1] - sizes[0], 1):.2f} KiB per extra sample); "
              f"scoring process {scorer_peaks[0]:.1f} -> {scorer_peaks[-1]:.1f} MiB")
    print(machine_line())
    print(f"reproduce: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
