"""The `harness` command: argument parsing and dispatch only, no logic.

Exit codes: 0 success, 1 a failed check (gate regression, invalid repair),
2 a usage or data error, 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Callable

from . import __version__
from .backends.base import BackendError
from .config import KIND_ALIASES, ConfigError, load_config, select_backend
from .models import GenerationParams
from .results import RunFolderError
from .tasks import TaskFileError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _common_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="backends.yaml, or a MetaGPT config2.yaml (default: config/backends.yaml)")
    parser.add_argument("--backend", "-b", help=f"configured backend name, or a kind: {', '.join(KIND_ALIASES)}")
    parser.add_argument("--model", "-m", action="append", help="model name (repeat for several models)")
    parser.add_argument("--base-url", help="server URL (OpenAI-compatible: ends in /v1; ollama: http://HOST:11434)")
    parser.add_argument("--api-key", help="API key (better: OPENAI_API_KEY or api_key_env in config)")
    parser.add_argument("--model-path", help="local backend: run this GGUF file instead of the bundled model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate a model on the task suite")
    _common_backend_args(run)
    run.add_argument("--tasks-dir", default="tasks", help="folder of task files (default: tasks)")
    run.add_argument("--tasks", "-t", action="append", help="only these task ids (glob patterns allowed)")
    run.add_argument("--mode", choices=["free", "constrained", "both"], default="free",
                     help="free generation, schema-constrained decoding, or both on the same cases")
    run.add_argument("--repeat", type=int, default=1, help="samples per case (default 1)")
    run.add_argument("--limit", type=int, help="at most this many cases per task")
    run.add_argument("--concurrency", "-j", type=int, help="requests in flight (default: server's slots, else 4)")
    run.add_argument("--temperature", type=float)
    run.add_argument("--max-tokens", type=int)
    run.add_argument("--seed", type=int)
    run.add_argument("--no-repair", action="store_true", help="score raw output only")
    run.add_argument("--results", default="results", help="results folder (default: results)")
    run.add_argument("--resume", metavar="RUN", help="continue an interrupted run (folder or run id)")
    run.add_argument("--cache", nargs="?", const=".harness-cache/responses.sqlite", metavar="PATH",
                     help="reuse identical responses from an on-disk cache (opt-in)")
    run.add_argument("--no-cache", action="store_true", help="do not use the response cache")
    run.add_argument("--deadline", type=float, metavar="SECONDS", help="stop the whole run after this long (resumable)")
    run.add_argument("--retries", type=int, default=3, help="retries per call on transient errors (default 3)")
    run.add_argument("--timeout", type=float, help="per-request timeout in seconds (default 600)")
    run.add_argument("--scoring", choices=["auto", "inline", "process"], default="auto",
                     help="score answers in a child process, keeping this one on I/O "
                          "(default auto: for runs of 200+ samples on 2+ cores)")
    run.add_argument("--format", "-f", default="table", choices=["table", "markdown", "csv", "json"])
    run.set_defaults(handler=cmd_run)

    report = sub.add_parser("report", help="tabulate a run folder")
    report.add_argument("run", help="run folder or run id")
    report.add_argument("--format", "-f", default="table", choices=["table", "markdown", "csv", "json", "html", "junit"])
    report.add_argument("--min-valid", type=float, metavar="PERCENT",
                        help="junit: a (task, model) case fails below this repaired schema-valid rate "
                             "(default 100, or HARNESS_JUNIT_MIN_VALID)")
    report.add_argument("--out", "-o", help="write to this file instead of stdout")
    report.add_argument("--results", default="results", help="where run ids are looked up (default: results)")
    report.set_defaults(handler=cmd_report)

    rescore = sub.add_parser("rescore", help="re-score a stored run with the current scorer, without calling a model")
    rescore.add_argument("run")
    rescore.add_argument("--results", default="results", help="where run ids are looked up (default: results)")
    rescore.add_argument("--no-repair", action="store_true")
    rescore.add_argument("--format", "-f", default="table", choices=["table", "markdown", "csv", "json"])
    rescore.set_defaults(handler=cmd_rescore)

    repair = sub.add_parser("repair", help="repair one raw model output: JSON on stdout, repairs on stderr")
    repair.add_argument("file", nargs="?", default="-", help="file with the raw output, or - for stdin")
    repair.add_argument("--schema", help="JSON Schema file (JSON or YAML) to validate against and repair towards")
    repair.add_argument("--wrapper", choices=["content", "fence", "none"], default="none",
                        help="what the output was asked to be wrapped in")
    repair.set_defaults(handler=cmd_repair)

    backends = sub.add_parser("backends", help="list configured backends and check each one")
    backends.add_argument("--config")
    backends.set_defaults(handler=cmd_backends)

    compare = sub.add_parser("compare", help="compare runs side by side, with confidence intervals")
    compare.add_argument("runs", nargs="+")
    compare.add_argument("--format", "-f", default="table", choices=["table", "markdown", "json"])
    compare.set_defaults(handler=_lazy("harness.report.compare", "compare_command"))

    gate = sub.add_parser("gate", help="exit 1 when the current run regressed significantly from the baseline")
    gate.add_argument("--baseline", required=True, help="baseline run folder or baseline.json")
    gate.add_argument("--current", required=True, help="current run folder")
    gate.add_argument("--metric", help="metric to gate on (default repaired_schema_valid)")
    gate.add_argument("--max-drop", type=float, help="allowed drop in percentage points (default 2.0)")
    gate.add_argument("--latency-p95-max-increase", help="allowed p95 latency increase, e.g. 20%%")
    gate.add_argument("--config")
    gate.set_defaults(handler=_lazy("harness.report.gate", "gate_command"))

    baseline = sub.add_parser("baseline", help="write a compact baseline of a run to commit")
    baseline.add_argument("run")
    baseline.add_argument("--out", default="results/baseline.json")
    baseline.set_defaults(handler=_lazy("harness.report.gate", "baseline_command"))

    cache = sub.add_parser("cache", help="manage the response cache")
    cache.add_argument("action", choices=["clear", "info"])
    cache.add_argument("--path", default=".harness-cache/responses.sqlite")
    cache.set_defaults(handler=_lazy("harness.cache", "cache_command"))
    return parser


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return handler


def cmd_run(args: argparse.Namespace) -> int:
    from .evaluate import RunInterrupted, RunOptions, options_from_manifest, report_text, run_sync
    from .results import read_manifest, resolve_run_dir

    if args.resume:
        run_dir = resolve_run_dir(args.resume, Path(args.results))
        manifest = read_manifest(run_dir)
        if "options" not in manifest:
            raise RunFolderError(f"{run_dir} has no resumable manifest")
        options = options_from_manifest(manifest, run_dir)
        # Credentials and connection details are not stored; let the resume supply them again.
        updates = {"api_key": args.api_key, "base_url": args.base_url, "timeout": args.timeout}
        options.backend = options.backend.model_copy(update={k: v for k, v in updates.items() if v})
    else:
        config = load_config(args.config)
        backend = select_backend(config, args.backend, models=args.model, base_url=args.base_url,
                                 api_key=args.api_key, model_path=args.model_path)
        if args.timeout:
            backend = backend.model_copy(update={"timeout": args.timeout})
        options = RunOptions(
            backend=backend,
            tasks_dir=Path(args.tasks_dir),
            task_filter=args.tasks,
            modes=["free", "constrained"] if args.mode == "both" else [args.mode],
            repeat=args.repeat,
            limit=args.limit,
            params=GenerationParams(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed),
            results_root=Path(args.results),
            repair=config.repair and not args.no_repair,
        )
    options.concurrency = args.concurrency or options.concurrency
    options.deadline_s = args.deadline
    options.max_retries = args.retries
    options.scoring = args.scoring
    if args.cache and not args.no_cache:
        options.cache_path = Path(args.cache)
    try:
        run_dir = run_sync(options)
    except RunInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted before the run started; nothing to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(report_text(run_dir, args.format))
    print(f"results: {run_dir}", file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .results import read_samples, resolve_run_dir

    run_dir = resolve_run_dir(args.run, Path(args.results))
    if args.format in ("html", "junit"):
        from .report import export

        text = export.render_file(run_dir, args.format, junit_min_valid_pct=args.min_valid)
    else:
        from .report import render

        text = render(read_samples(run_dir), args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return EXIT_OK


def cmd_rescore(args: argparse.Namespace) -> int:
    from .rescore import rescore_run

    from .results import resolve_run_dir

    run_dir, changed = rescore_run(resolve_run_dir(args.run, Path(args.results)), repair=not args.no_repair)
    from .evaluate import report_text

    print(report_text(run_dir, args.format))
    print(f"rescored {run_dir}: {changed} samples changed verdict", file=sys.stderr)
    return EXIT_OK


def cmd_repair(args: argparse.Namespace) -> int:
    from .repair.command import run

    return run(args.file, args.schema, args.wrapper)


def cmd_backends(args: argparse.Namespace) -> int:
    from .probe import check_backends

    config = load_config(args.config)
    text, ok = asyncio.run(check_backends(config))
    print(text)
    return EXIT_OK if ok else EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (TaskFileError, ConfigError, RunFolderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:  # e.g. the embedded server could not start
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
