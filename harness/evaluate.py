"""One evaluation run end to end: plan, start backend, run, record, summarise.

This is the `harness run` command minus argument parsing. It owns the run
folder's lifecycle: the manifest is written before the first call (so an
interrupted run can be resumed from it), samples stream to disk, and the
summary is written at the end.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .backends import create_backend
from .backends.base import Backend, BackendError
from .config import BackendConfig
from .models import GenerationParams, Mode
from .report import render, summarize
from .results import SampleWriter, iter_latest_samples, new_run_id, read_manifest, write_json, MANIFEST, SUMMARY
from .runner import CircuitBreaker, RetryPolicy, Runner, count_jobs, plan_jobs
from .tasks import Task, load_tasks

DEFAULT_CONCURRENCY = 4
# From this many samples on, `scoring="auto"` scores in a child process (on two cores or more):
# starting it costs ~0.15 s of CPU, which a short run would not win back.
PROCESS_SCORING_MIN_SAMPLES = 200


@dataclass
class RunOptions:
    """Everything that decides which samples a run contains and how they are produced."""

    backend: BackendConfig
    tasks_dir: Path = Path("tasks")
    task_filter: list[str] | None = None
    modes: list[Mode] = field(default_factory=lambda: ["free"])
    repeat: int = 1
    limit: int | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    concurrency: int | None = None
    results_root: Path = Path("results")
    run_dir: Path | None = None
    repair: bool = True
    cache_path: Path | None = None
    deadline_s: float | None = None
    max_retries: int = 3
    progress: bool = True
    # Where answers are scored: "process" (a child process: the client's core stays on I/O, see
    # harness/scorers.py), "inline" (on the event loop), or "auto": process for runs of
    # PROCESS_SCORING_MIN_SAMPLES or more on a machine with two cores or more.
    scoring: str = "auto"


class RunInterrupted(Exception):
    """Raised after a clean stop; carries the folder to resume."""

    def __init__(self, run_dir: Path, done: int, total: int, reason: str, hint: str = ""):
        self.run_dir, self.done, self.total, self.reason = run_dir, done, total, reason
        super().__init__(
            f"{reason}: {done} of {total} samples are on disk in {run_dir}.\n"
            f"Resume with: harness run --resume {run_dir}{hint}"
        )


def _resume_hint(options: RunOptions) -> str:
    # Keys are never written to the run folder, so one given on the command line must be given again.
    return " --api-key KEY  (the key is not stored)" if options.backend.api_key else ""


def options_to_manifest(options: RunOptions) -> dict[str, Any]:
    backend = options.backend.model_dump(exclude={"api_key"})
    from .backends.base import public_url

    if backend.get("base_url"):
        backend["base_url"] = public_url(backend["base_url"])
    return {
        "backend_config": backend,
        "tasks_dir": str(options.tasks_dir),
        "task_filter": options.task_filter,
        "modes": options.modes,
        "repeat": options.repeat,
        "limit": options.limit,
        "params_override": options.params.to_dict(),
        "repair": options.repair,
    }


def options_from_manifest(manifest: dict[str, Any], run_dir: Path) -> RunOptions:
    """Rebuild a run's options to resume it exactly as it was started."""
    saved = manifest["options"]
    return RunOptions(
        backend=BackendConfig(**saved["backend_config"]),
        tasks_dir=Path(saved["tasks_dir"]),
        task_filter=saved.get("task_filter"),
        modes=saved["modes"],
        repeat=saved["repeat"],
        limit=saved.get("limit"),
        params=GenerationParams(**saved.get("params_override", {})),
        repair=saved.get("repair", True),
        run_dir=run_dir,
    )


def _default_model_label(config: BackendConfig) -> str:
    """The model name a run folder is named after when none was given (local backend)."""
    if config.model_path:
        return Path(config.model_path).stem
    return "gemma-3-270m" if config.protocol == "local" else "default"


def _models_for(backend: Backend, config: BackendConfig) -> list[str]:
    if config.models:
        return config.models
    return [getattr(backend, "model_label", "default")]


async def _choose_concurrency(options: RunOptions, backend: Backend) -> int:
    if options.concurrency:
        return options.concurrency
    if options.backend.concurrency:
        return options.backend.concurrency
    slots = await backend.parallel_slots()
    return slots or DEFAULT_CONCURRENCY


def _task_manifest(tasks: list[Task]) -> dict[str, Any]:
    return {
        t.id: {
            "path": str(t.path),
            "sha256": t.sha256,
            "output_format": t.output_format,
            "cases": len(t.spec.cases),
            "schema": t.schema,
            "params": t.spec.params.to_params().to_dict(),
        }
        for t in tasks
    }


async def run_evaluation(
    options: RunOptions,
    notice: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    on_start: Callable[[Path, int], None] = lambda run_dir, total: None,
) -> Path:
    """Run (or resume) an evaluation and return its run folder. `on_start(run_dir, total)` is
    called once the manifest is written, i.e. from when on the run can be resumed."""
    tasks = load_tasks(options.tasks_dir, options.task_filter)
    by_id = {t.id: t for t in tasks}
    resuming = options.run_dir is not None and (options.run_dir / MANIFEST).exists()
    concurrency_hint = options.concurrency or options.backend.concurrency or DEFAULT_CONCURRENCY
    models_hint = options.backend.models or [_default_model_label(options.backend)]
    if options.run_dir is not None:
        run_dir = options.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = _fresh_run_dir(options.results_root, new_run_id(options.backend.name, models_hint[0]))

    backend = create_backend(options.backend, parallel=concurrency_hint, log_dir=run_dir)
    writer: SampleWriter | None = None
    try:
        await backend.start()
        models = _models_for(backend, options.backend)
        concurrency = await _choose_concurrency(options, backend)
        identities: dict[str, Any] = {}
        for model in models:
            try:
                identities[model] = await backend.model_identity(model)
            except BackendError:
                identities[model] = {}

        manifest = read_manifest(run_dir) if resuming else {}
        done_keys = {r["key"] for r in iter_latest_samples(run_dir) if not r.get("error")} if resuming else set()
        if resuming:
            old = manifest.get("tasks", {})
            changed = [t.id for t in tasks if t.id in old and old[t.id]["sha256"] != t.sha256]
            if changed:
                notice(f"warning: task files changed since this run started: {', '.join(changed)}")
        manifest.update(
            run_id=run_dir.name,
            harness_version=__version__,
            created_at=manifest.get("created_at") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            status="running",
            backend=backend.describe(),
            models=models,
            model_identity=identities,
            concurrency=concurrency,
            options=options_to_manifest(options),
            tasks=_task_manifest(tasks),
            # Every sample key is written once (never resumed, no repeated model or mode): the
            # summary can then stream samples.jsonl in one pass, with no per-key index in memory.
            unique_keys=not resuming and len(set(models)) == len(models)
            and len(set(options.modes)) == len(options.modes),
        )
        write_json(run_dir / MANIFEST, manifest)

        total = count_jobs(tasks, len(models), len(options.modes), options.repeat, options.limit)
        on_start(run_dir, total)
        jobs = plan_jobs(tasks, options.backend.name, models, options.modes, options.repeat, options.limit,
                         options.params, skip=done_keys)
        remaining = total - len(done_keys & _all_keys(tasks, options, models)) if done_keys else total
        notice(f"run {run_dir.name}: {remaining} of {total} samples to go on {backend.name} "
               f"({', '.join(models)}), concurrency {concurrency}")

        writer = SampleWriter(run_dir)
        cache = _open_cache(options, backend, identities)
        progress = _progress_bar(remaining, options.progress)
        runner = Runner(backend, by_id, writer.append, concurrency=concurrency,
                        policy=RetryPolicy(max_retries=options.max_retries), breaker=CircuitBreaker(),
                        repair=options.repair, cache=cache, on_notice=notice,
                        score_in_process=_score_in_process(options, remaining),
                        on_progress=lambda record: progress.update(1) if progress else None)
        started = time.perf_counter()
        try:
            await runner.run(jobs, options.deadline_s)
        except (asyncio.CancelledError, KeyboardInterrupt, TimeoutError) as exc:
            reason = "deadline reached" if isinstance(exc, TimeoutError) else "interrupted"
            manifest.update(status="interrupted")
            write_json(run_dir / MANIFEST, manifest)
            done = _count_samples(run_dir)
            raise RunInterrupted(run_dir, done, total, reason, _resume_hint(options)) from None
        finally:
            if progress:
                progress.close()
            if cache is not None:
                cache.close()
        elapsed = time.perf_counter() - started
        summary = _summarize(run_dir, notice, unique=manifest["unique_keys"])
        manifest.update(status="complete", finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        elapsed_s=round(elapsed, 3), max_in_flight=runner.max_in_flight)
        write_json(run_dir / MANIFEST, manifest)
        write_json(run_dir / SUMMARY, summary)
        return run_dir
    finally:
        if writer is not None:
            writer.close()
        await backend.aclose()


def _score_in_process(options: RunOptions, samples: int) -> bool:
    if options.scoring not in ("auto", "inline", "process"):
        raise ValueError(f"scoring must be auto, inline or process, not {options.scoring!r}")
    if options.scoring != "auto":
        return options.scoring == "process"
    return samples >= PROCESS_SCORING_MIN_SAMPLES and (os.cpu_count() or 1) >= 2


def _fresh_run_dir(root: Path, run_id: str) -> Path:
    """A new, empty run folder: run ids have one-second resolution, so a second run of the
    same backend and model within that second gets a suffix instead of sharing the folder."""
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = root / (run_id if attempt == 1 else f"{run_id}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a new run folder under {root}")


def _summarize(run_dir: Path, notice: Callable[[str], None], unique: bool = False) -> dict[str, Any]:
    """The summary of every sample on disk, in one streamed pass (the records are never all in
    memory at once: memory does not grow with the number of samples), and a notice of why
    samples failed (the table only counts them): the most common error, with its URL."""
    from collections import Counter

    counts: Counter = Counter()
    seen = 0

    def watched() -> Any:
        nonlocal seen
        for record in iter_latest_samples(run_dir, unique):
            seen += 1
            error = record.get("error")
            if error:
                counts[error.get("message") or error.get("kind") or "unknown error"] += 1
            yield record

    summary = summarize(watched())  # type: ignore[arg-type]  # one pass over any iterable
    if counts:
        message, count = counts.most_common(1)[0]
        more = f" ({len(counts) - 1} other error message(s) in samples.jsonl)" if len(counts) > 1 else ""
        notice(f"{sum(counts.values())} of {seen} samples failed; {count} with: {message}{more}")
    return summary


def _count_samples(run_dir: Path) -> int:
    return sum(1 for _ in iter_latest_samples(run_dir))


def _all_keys(tasks: list[Task], options: RunOptions, models: list[str]) -> set[str]:
    return {job.key for job in plan_jobs(tasks, options.backend.name, models, options.modes, options.repeat,
                                         options.limit, options.params)}


def _open_cache(options: RunOptions, backend: Backend, identities: dict[str, Any]):
    if options.cache_path is None:
        return None
    from .cache import ResponseCacheDB

    return ResponseCacheDB(options.cache_path, backend, identities)


def _progress_bar(total: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="sample", dynamic_ncols=True)


def run_sync(options: RunOptions) -> Path:
    """Run with Ctrl-C and SIGTERM handled alike: the first cancels the calls in flight and
    keeps everything finished (RunInterrupted: exit 130, resumable); a second one quits at
    once (every finished sample is already on disk, flushed line by line).

    The handlers are plain process signal handlers rather than the event loop's, so that a
    second signal arriving while asyncio shuts down, or after, still quits cleanly; they
    stay in place after a signal-stopped run (the process is on its way out)."""
    started: dict[str, Any] = {}
    state: dict[str, Any] = {"seen": 0, "loop": None, "task": None}

    def stop() -> None:
        print("stopping: cancelling the requests in flight (again to quit at once)", file=sys.stderr)
        state["task"].cancel()

    def on_signal(signum: int, frame: Any) -> None:
        state["seen"] += 1
        loop = state["loop"]
        if state["seen"] > 1:
            _quit_now(started.get("run_dir"), options)
        if loop is None or loop.is_closed() or state["task"] is None or state["task"].done():
            raise KeyboardInterrupt
        loop.call_soon_threadsafe(stop)

    async def main() -> Path:
        state["loop"], state["task"] = asyncio.get_running_loop(), asyncio.current_task()
        return await run_evaluation(options, on_start=lambda run_dir, total: started.update(run_dir=run_dir,
                                                                                             total=total))

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # started with the signal ignored (nohup, `cmd &` in a script): keep it so
            previous[signum] = signal.signal(signum, on_signal)
        except (ValueError, OSError):  # not the main thread: no signal handling of our own
            pass
    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        # Stopped outside the runner (while starting, or right after the manifest was written).
        run_dir = started.get("run_dir")
        if run_dir is None:
            raise KeyboardInterrupt from None
        if read_manifest(run_dir).get("status") == "complete":
            return run_dir  # the signal came while closing connections: nothing was lost
        _mark_interrupted(run_dir)
        done = _count_samples(run_dir)
        raise RunInterrupted(run_dir, done, started["total"], "interrupted", _resume_hint(options)) from None
    finally:
        if not state["seen"]:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        else:
            # Python resets handlers to the default while it shuts down: a late second
            # Ctrl-C would then kill the process (-SIGINT) instead of letting it exit 130.
            atexit.register(_ignore_signals, list(previous))


def _ignore_signals(signums: list[int]) -> None:
    for signum in signums:
        signal.signal(signum, signal.SIG_IGN)


def _mark_interrupted(run_dir: Path) -> None:
    manifest = read_manifest(run_dir)
    if manifest and manifest.get("status") == "running":
        manifest["status"] = "interrupted"
        write_json(run_dir / MANIFEST, manifest)


def _quit_now(run_dir: Path | None, options: RunOptions) -> None:
    """The second Ctrl-C: no more cleanup. Samples are flushed one line at a time and cache
    entries committed one put at a time, so nothing finished is lost."""
    try:
        if run_dir is None:
            message = "stopped before the run started; nothing to resume"
        else:
            _mark_interrupted(run_dir)
            message = (f"stopped at once: every finished sample is on disk in {run_dir}.\n"
                       f"Resume with: harness run --resume {run_dir}{_resume_hint(options)}")
        os.write(2, (message + "\n").encode("utf-8", "replace"))  # no print(): we may be inside one
    finally:
        os._exit(130)


def report_text(run_dir: Path, fmt: str = "table") -> str:
    unique = read_manifest(run_dir).get("unique_keys") is True
    return render(iter_latest_samples(run_dir, unique), fmt)  # type: ignore[arg-type]  # one pass, streamed
