"""Repair cost: time per sample of the whole scoring + repair path (harness.scoring.score_text).

Three inputs:
  * a corpus of real model outputs (bench/corpus/*.jsonl: gemma-3-270m on the bundled tasks,
    each line {"task", "output_format", "finish_reason", "schema", "output"});
  * synthetic broken outputs of 10 KB ... 1 MB ([CONTENT] tag left open, trailing commas,
    single quotes, truncated), to show that the cost grows linearly with the output size;
  * optionally, fresh outputs: --collect runs the bundled model briefly (harness run -b local)
    and adds what it wrote to the corpus; --from-run RUN adds the outputs of any run folder.

    python bench/repair_cost.py                       # corpus + synthetic sizes
    python bench/repair_cost.py --repeat 3 --sizes 10K,1M  # quicker
    python bench/repair_cost.py --from-run results/<run-id> --write-corpus bench/corpus/more.jsonl
    python bench/repair_cost.py --collect --limit 1   # run the local model first (minutes)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BENCH, ROOT, command_line, machine_line

from harness.repair.lexer import MAX_REPAIR_CHARS
from harness.scoring import score_text

CORPUS = BENCH / "corpus"

SYNTHETIC_SCHEMA = {
    "type": "object",
    "required": ["project", "items"],
    "properties": {
        "project": {"type": "string"},
        "items": {"type": "array", "items": {
            "type": "object", "required": ["id", "name", "done"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "done": {"type": "boolean"},
                           "tags": {"type": "array", "items": {"type": "string"}}}}},
    },
}


def synthetic(size: int) -> str:
    """A broken [CONTENT] output of about `size` bytes: single-quoted keys and strings, trailing
    commas, Python booleans, the closing brackets and [/CONTENT] missing (cut off mid-list)."""
    head = "[CONTENT]\n{'project': 'bench', 'items': [\n"
    parts, n, total = [head], 0, len(head)
    while total < size:
        item = (f"  {{'id': {n}, 'name': 'task number {n} of the plan', 'done': {'True' if n % 2 else 'False'}, "
                f"'tags': ['alpha', 'beta',],}},\n")
        parts.append(item)
        total += len(item)
        n += 1
    return "".join(parts)[:size]


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


def load_corpus(paths: list[Path]) -> list[dict]:
    out = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def from_run(run_dir: Path) -> list[dict]:
    """Every scored output of a run folder, with its task's schema from the manifest."""
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    schemas = {task: info.get("schema") for task, info in (manifest.get("tasks") or {}).items()}
    out = []
    for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("output") is None or record.get("error"):
            continue
        out.append({"task": record["task"], "case": record.get("case"), "model": record.get("model"),
                    "output_format": record["output_format"], "finish_reason": record.get("finish_reason"),
                    "schema": schemas.get(record["task"]), "output": record["output"]})
    return out


def collect(limit: int, max_tokens: int | None) -> list[dict]:
    """Run the bundled model on the task suite (the local backend) and return its outputs."""
    with tempfile.TemporaryDirectory(prefix="harness-bench-collect-") as tmp:
        command = [sys.executable, "-m", "harness", "run", "-b", "local", "--limit", str(limit),
                   "--results", tmp, "-f", "csv"]
        if max_tokens:
            command += ["--max-tokens", str(max_tokens)]
        print("collecting: " + " ".join(command[1:]), file=sys.stderr, flush=True)
        subprocess.run(command, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
        runs = [p for p in Path(tmp).iterdir() if p.is_dir()]
        return from_run(runs[0]) if runs else []


def time_calls(text: str, fmt: str, schema: dict | None, finish: str | None, repeat: int) -> list[float]:
    score_text(text, fmt, schema, finish, repair=True)  # warm: validator compiled, caches filled
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        score_text(text, fmt, schema, finish, repair=True)
        out.append(time.perf_counter() - started)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", nargs="*", type=Path, help="corpus files (default: bench/corpus/*.jsonl)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per corpus output (default 20)")
    parser.add_argument("--sizes", default="10K,100K,250K,1M", help="synthetic broken output sizes (default 10K,100K,250K,1M)")
    parser.add_argument("--size-repeat", type=int, default=5, help="timed calls per synthetic size (default 5)")
    parser.add_argument("--from-run", type=Path, action="append", default=[], help="add the outputs of this run folder")
    parser.add_argument("--collect", action="store_true", help="run the bundled model first and add its outputs")
    parser.add_argument("--limit", type=int, default=1, help="--collect: cases per task (default 1)")
    parser.add_argument("--max-tokens", type=int, help="--collect: cap output tokens (default: the tasks')")
    parser.add_argument("--write-corpus", type=Path, help="save the added outputs (from --collect/--from-run) here")
    args = parser.parse_args(argv)

    corpus_files = args.corpus if args.corpus is not None else sorted(CORPUS.glob("*.jsonl"))
    corpus = load_corpus(corpus_files)
    added = [entry for run in args.from_run for entry in from_run(run)]
    if args.collect:
        added += collect(args.limit, args.max_tokens)
    if added and args.write_corpus:
        args.write_corpus.parent.mkdir(parents=True, exist_ok=True)
        with args.write_corpus.open("w", encoding="utf-8") as handle:
            for entry in added:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        print(f"wrote {len(added)} outputs to {args.write_corpus}", file=sys.stderr)
    corpus += added

    print(machine_line())
    if corpus:
        per_call: list[float] = []
        per_sample: list[tuple[float, dict, list[str]]] = []
        for entry in corpus:
            calls = time_calls(entry["output"], entry["output_format"], entry.get("schema"), entry.get("finish_reason"),
                               args.repeat)
            per_call += calls
            score = score_text(entry["output"], entry["output_format"], entry.get("schema"), entry.get("finish_reason"))
            per_sample.append((statistics.median(calls), entry, score.repairs_applied))
        sizes = [len(e["output"].encode()) for e in corpus]
        repaired = sum(1 for _, _, kinds in per_sample if kinds)
        sources = [str(p.relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p) for p in corpus_files]
        if added:
            sources.append(f"{len(added)} just added")
        print(f"\ncorpus: {len(corpus)} real outputs ({', '.join(sources)}); {min(sizes)}-{max(sizes)} bytes "
              f"(median {int(statistics.median(sizes))}); {repaired} took a repair; {args.repeat} calls each")
        print(f"score_text (raw + repaired), per call:   p50 {pct(per_call, 50) * 1e3:7.3f} ms   "
              f"p99 {pct(per_call, 99) * 1e3:7.3f} ms   max {max(per_call) * 1e3:7.3f} ms")
        slowest = sorted(per_sample, key=lambda item: item[0], reverse=True)[:3]
        for seconds, entry, kinds in slowest:
            print(f"  slowest: {seconds * 1e3:7.3f} ms  {entry['task']}/{entry.get('case')}  "
                  f"{len(entry['output'].encode())} bytes  repairs: {', '.join(kinds) or '-'}")
    else:
        print("\nno corpus (bench/corpus/*.jsonl missing): use --collect or --from-run")

    rows = []
    for label in [s for s in args.sizes.split(",") if s.strip()]:
        size = parse_size(label)
        text = synthetic(size)
        calls = time_calls(text, "content", SYNTHETIC_SCHEMA, "length", args.size_repeat)
        score = score_text(text, "content", SYNTHETIC_SCHEMA, "length")
        rows.append((label, len(text.encode()), statistics.median(calls), score))
    if rows:
        print(f"\nsynthetic broken outputs (median of {args.size_repeat} calls):")
        for label, size, seconds, score in rows:
            if score.repaired.schema_valid:
                outcome = "repaired, schema-valid"
            elif score.repaired.parse_ok:
                outcome = f"repaired, schema-invalid ({score.repaired.violations[0]['message'][:40]})"
            else:
                outcome = f"not repaired ({(score.repaired.parse_error or '')[:70]})"
            print(f"  {label:>5}  {size:>8} bytes  {seconds * 1e3:9.2f} ms  {seconds / size * 1e9:8.1f} ns/byte  "
                  f"{outcome}; repairs: {', '.join(score.repairs_applied) or '-'}")
        first, last = rows[0], rows[-1]
        print(f"growth {first[0]} -> {last[0]}: size x{last[1] / first[1]:.0f}, time x{last[2] / first[2]:.1f} "
              f"(linear would be x{last[1] / first[1]:.0f})")
        within = [row for row in rows if row[1] <= MAX_REPAIR_CHARS]
        if len(within) > 1 and within[-1] is not last:
            top = within[-1]
            print(f"growth {first[0]} -> {top[0]} (the largest size here within repair's {MAX_REPAIR_CHARS // 1024} KB limit): "
                  f"size x{top[1] / first[1]:.0f}, time x{top[2] / first[2]:.1f}; above it repair refuses at once")
    print(machine_line())
    print(f"reproduce: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
