"""The runner: fan jobs out to a backend with bounded concurrency, retries and a breaker.

A fixed pool of `concurrency` workers pulls jobs from a lazy iterator: the
server's parallel slots stay busy, memory does not grow with the number of
jobs, and no more than `concurrency` requests are ever in flight. A failed call
becomes an error sample; nothing short of cancellation stops the run.
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Protocol
from urllib.parse import unquote, urlsplit

from .backends.base import Backend, BackendError, redact
from .models import CallError, Completion, GenerationParams, Job, Mode
from .scorers import ScoringProcess, score_completion
from .tasks import Task

# Answers handed to the scoring process and not scored yet, per worker, before the workers
# wait for it (it only falls behind on pathological repairs).
SCORING_BACKLOG_PER_WORKER = 16
# A scoring process that answers nothing for this long while answers wait is given up on (one
# answer takes at most ~1 s to score: json_repair has a 0.5 s deadline, inputs are capped).
SCORING_STALL_SECONDS = 20.0


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one call: exponential backoff with full jitter, Retry-After honoured."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # Never sooner than the server asked; up to 10% later, so that workers told the
            # same Retry-After do not all come back at the same instant.
            wait = min(retry_after, self.max_delay)
            return wait + random.uniform(0, 0.1 * wait)
        return random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


class CircuitBreaker:
    """Stop hammering a backend that is down, without giving up on one that blipped.

    After `threshold` consecutive *connection* failures the breaker opens and one
    probe is let through every `cooldown` seconds. Calls wait while it is open, so
    a server that restarts mid-run costs a pause, not a run full of errors. Calls
    fail fast instead (kind `circuit_open`, re-run by `--resume`) when the server
    never answered at all in this run (wrong URL, not started) or has stayed down
    for `give_up_after` seconds. Timeouts do not count: a server that is slow is
    not down, and tripping on it would fail every queued sample of a busy CPU box.
    """

    def __init__(self, threshold: int = 8, cooldown: float = 10.0, give_up_after: float = 120.0):
        self.threshold = threshold
        self.cooldown = cooldown
        self.give_up_after = give_up_after
        self.failures = 0
        self.opened_at: float | None = None  # start of the current probe window
        self.open_since: float | None = None  # when the breaker last went from closed to open
        self.ever_ok = False
        self.times_opened = 0
        self.last_error: str | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at >= self.cooldown:
            self.opened_at = time.monotonic()  # one probe per cooldown window
            return True
        return False

    def should_give_up(self) -> bool:
        """Whether waiting for the backend is pointless (never seen up, or down too long)."""
        if self.open_since is None:
            return False
        return not self.ever_ok or time.monotonic() - self.open_since >= self.give_up_after

    def wait_hint(self) -> float:
        """How long a waiting call should sleep before asking again."""
        if self.opened_at is None:
            return 0.0
        return max(0.05, min(1.0, self.cooldown - (time.monotonic() - self.opened_at)))

    def record(self, ok: bool, error: BackendError | None = None) -> bool:
        """Record an outcome; return True when this failure just opened the breaker."""
        if ok:
            self.failures, self.opened_at, self.open_since, self.ever_ok = 0, None, None, True
            return False
        if error is None or error.kind != "connection":
            return False
        self.failures += 1
        self.last_error = error.message
        if self.failures >= self.threshold and self.opened_at is None:
            self.opened_at = self.open_since = time.monotonic()
            self.times_opened += 1
            return True
        return False


class ResponseCache(Protocol):
    def get(self, job: Job) -> Completion | None: ...
    def put(self, job: Job, completion: Completion) -> None: ...


def plan_jobs(
    tasks: Iterable[Task],
    backend: str,
    models: list[str],
    modes: list[Mode],
    repeat: int = 1,
    limit: int | None = None,
    override: GenerationParams | None = None,
    skip: set[str] | None = None,
) -> Iterator[Job]:
    """Every (task, case, model, mode, sample) not in `skip`, in a stable order."""
    skip = skip or set()
    for task in tasks:
        cases = task.spec.cases[:limit] if limit else task.spec.cases
        for case in cases:
            for model in models:
                for mode in modes:
                    request = task.request(case, model, mode, override)
                    for index in range(repeat):
                        job = Job(task.id, case.id, backend, model, mode, index, request)
                        if job.key not in skip:
                            yield job


def count_jobs(tasks: Iterable[Task], models: int, modes: int, repeat: int, limit: int | None) -> int:
    return sum(len(t.spec.cases[:limit] if limit else t.spec.cases) for t in tasks) * models * modes * repeat


def backend_secrets(backend: Backend) -> list[str]:
    """Every credential a backend holds: the API key, and user:password from its base URL
    (raw, percent-decoded and as the base64 a Basic Authorization header would carry)."""
    secrets = [getattr(backend, "api_key", None)]
    try:
        parts = urlsplit(getattr(backend, "base_url", "") or "")
        user, password = parts.username, parts.password
    except ValueError:
        user = password = None
    if password:
        secrets += [password, unquote(password)]
    if user or password:
        pair = f"{unquote(user or '')}:{unquote(password or '')}"
        secrets.append(base64.b64encode(pair.encode()).decode())
    return [s for s in secrets if s]


_BASIC = re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=._\-]+")


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every credential (and any bearer or basic token) replaced by ***."""
    return _BASIC.sub(r"\1***", redact(text, secrets)) if text else text


async def _attempt(backend: Backend, job: Job) -> Completion:
    """One call with a wall-clock limit of `backend.timeout` for the whole answer: the HTTP
    client's timeout is per read, so a server dripping a byte a second would never hit it."""
    limit = getattr(backend, "timeout", None)
    try:
        if not limit:
            return await backend.complete(job.request)
        async with asyncio.timeout(limit):
            return await backend.complete(job.request)
    except BackendError:
        raise
    except TimeoutError:
        raise BackendError("timeout", f"no complete answer from {backend.public_base_url} within {limit:g}s "
                           "(per-request timeout; raise it with --timeout)",
                           url=backend.public_base_url, retryable=True) from None
    except Exception as exc:  # a backend bug or an exotic transport error must not end the run
        import httpx

        transport = isinstance(exc, httpx.HTTPError)
        raise BackendError("connection" if transport else "internal",
                           f"{backend.public_base_url}: {type(exc).__name__}: {exc}",
                           url=backend.public_base_url, retryable=transport) from None


async def call_with_retries(
    backend: Backend, job: Job, policy: RetryPolicy, breaker: CircuitBreaker, on_open: Callable[[str], None]
) -> tuple[Completion | None, CallError | None, int]:
    """One job's model call, retried on transient failures; never raises BackendError.
    No credential of the backend survives into an error message or an output."""
    secrets = backend_secrets(backend)
    attempt = 0
    while True:
        while not breaker.allow():
            if breaker.should_give_up():
                return None, CallError("circuit_open", f"backend {backend.name} looks down; not called "
                                       f"(last error: {breaker.last_error})", url=backend.public_base_url), attempt
            await asyncio.sleep(breaker.wait_hint())
        attempt += 1
        try:
            completion = await _attempt(backend, job)
            breaker.record(True)
            if secrets and completion.text and any(s in completion.text for s in secrets):
                completion = replace(completion, text=scrub(completion.text, secrets))
            return completion, None, attempt
        except BackendError as exc:
            exc.message = scrub(exc.message, secrets)
            if breaker.record(False, exc):
                on_open(f"backend {backend.name} failed {breaker.failures} times in a row; pausing calls: {exc.message}")
            if exc.kind == "connection" and breaker.opened_at is not None and not breaker.should_give_up():
                continue  # the backend is down for now: wait for it with the others, keep this job
            if not exc.retryable or attempt > policy.max_retries:
                return None, CallError(exc.kind, exc.message, exc.status, exc.url), attempt
            await asyncio.sleep(policy.delay(attempt - 1, exc.retry_after))


def sample_record(
    job: Job,
    task: Task,
    completion: Completion | None,
    error: CallError | None,
    attempts: int,
    *,
    repair: bool,
    cached: bool = False,
    backend_kind: str = "",
    score_now: bool = True,
) -> dict[str, Any]:
    """The JSON-lines record of one sample: request, output, timings, error and score (None
    for now when not `score_now`: the scoring process fills it in)."""
    record: dict[str, Any] = {
        "key": job.key,
        "task": job.task_id,
        "case": job.case_id,
        "backend": job.backend,
        "backend_kind": backend_kind,
        "model": job.model,
        "mode": job.mode,
        "sample": job.sample_index,
        "output_format": task.output_format,
        "params": job.request.params.to_dict(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "attempts": attempts,
        "cached": cached,
    }
    if completion is None:
        record.update(output=None, finish_reason=None, timing=None,
                      error={"kind": error.kind, "message": error.message, "status": error.status} if error else None,
                      score=None)
        return record
    score = score_completion(task.output_format, task.schema, completion.text, completion.finish_reason,
                             job.mode == "constrained", repair) if score_now else None
    record.update(
        output=completion.text,
        finish_reason=completion.finish_reason,
        capped=completion.capped,
        timing={
            "total_s": round(completion.total_s, 6),
            "ttft_s": None if completion.ttft_s is None else round(completion.ttft_s, 6),
            "prompt_tokens": completion.prompt_tokens,
            "output_tokens": completion.output_tokens,
            "tokens_per_s": None if completion.tokens_per_s is None else round(completion.tokens_per_s, 3),
            "load_s": completion.load_s,
            "server": completion.server_timings,
        },
        server_model=completion.server_model,
        error=None,
        score=score,
    )
    return record


class Runner:
    """Runs jobs against one backend and hands each finished record to `sink`."""

    def __init__(
        self,
        backend: Backend,
        tasks: dict[str, Task],
        sink: Callable[[dict[str, Any]], None],
        *,
        concurrency: int = 4,
        policy: RetryPolicy = RetryPolicy(),
        breaker: CircuitBreaker | None = None,
        repair: bool = True,
        cache: ResponseCache | None = None,
        score_in_process: bool = False,
        on_notice: Callable[[str], None] = lambda message: None,
        on_progress: Callable[[dict[str, Any]], None] = lambda record: None,
    ):
        self.backend = backend
        self.tasks = tasks
        self.sink = sink
        self.concurrency = max(1, concurrency)
        self.policy = policy
        self.breaker = breaker or CircuitBreaker()
        self.repair = repair
        self.cache = cache
        self.on_notice = on_notice
        self.on_progress = on_progress
        self.in_flight = 0
        self.max_in_flight = 0
        self.score_in_process = score_in_process
        self.scoring: ScoringProcess | None = None
        self.scoring_stall_s = SCORING_STALL_SECONDS
        # Records whose answer is with the scoring process: number -> (record, task, completion).
        self._unscored: dict[int, tuple[dict[str, Any], Task, Completion]] = {}
        self._numbers = 0
        self._late_error: BaseException | None = None  # raised by the sink from a scoring callback

    def _finish(self, record: dict[str, Any]) -> None:
        self.sink(record)
        self.on_progress(record)

    def _scored(self, number: int, score: dict[str, Any] | None) -> None:
        """A score is back from the scoring process (None: it could not; score it here)."""
        entry = self._unscored.pop(number, None)
        if entry is None:
            return
        record, task, completion = entry
        if score is None:
            score = score_completion(task.output_format, task.schema, completion.text, completion.finish_reason,
                                     record["mode"] == "constrained", self.repair)
        record["score"] = score
        try:
            self._finish(record)
        except BaseException as exc:  # noqa: BLE001 - called from a pipe callback: re-raised by the run
            self._late_error = self._late_error or exc

    def _raise_late_error(self) -> None:
        if self._late_error is not None:
            error, self._late_error = self._late_error, None
            raise error

    def _score_the_rest_here(self) -> None:
        for number in list(self._unscored):
            self._scored(number, None)

    async def _record(self, job: Job, task: Task, completion: Completion | None, error: CallError | None,
                      attempts: int, cached: bool = False) -> None:
        """Write the sample's record: at once, or once the scoring process has scored it."""
        self._raise_late_error()
        scoring = self.scoring
        if completion is None or scoring is None or not scoring.alive:
            self._finish(sample_record(job, task, completion, error, attempts, repair=self.repair, cached=cached,
                                       backend_kind=self.backend.kind))
            return
        record = sample_record(job, task, completion, error, attempts, repair=self.repair, cached=cached,
                               backend_kind=self.backend.kind, score_now=False)
        self._numbers += 1
        self._unscored[self._numbers] = (record, task, completion)
        if not scoring.submit(self._numbers, task.id, completion.text, completion.finish_reason,
                              job.mode == "constrained"):
            self._scored(self._numbers, None)
        elif len(self._unscored) > SCORING_BACKLOG_PER_WORKER * self.concurrency:
            if not await scoring.wait_idle(self.scoring_stall_s) and self.scoring is scoring:
                self._give_up_scoring(scoring)

    def _give_up_scoring(self, scoring: ScoringProcess) -> None:
        self.on_notice(f"the scoring process answered nothing for {self.scoring_stall_s:g}s; "
                       "scoring in this process from now on")
        self.scoring = None
        scoring.abandon()
        self._score_the_rest_here()

    async def _start_scoring(self) -> None:
        formats = {task_id: (task.output_format, task.schema) for task_id, task in self.tasks.items()}
        scoring = ScoringProcess(formats, self.repair, self._scored, self.on_notice)
        try:
            await scoring.start()
        except OSError as exc:
            self.on_notice(f"could not start the scoring process ({exc}); scoring in this process")
            return
        self.scoring = scoring

    async def _stop_scoring(self, cancelled: bool) -> None:
        """Every answer gets its record: waited for from the child after a normal end; scored here
        at once when the run was cancelled (the child's copy is then dropped)."""
        scoring, self.scoring = self.scoring, None
        if scoring is None:
            return
        if not cancelled and not await scoring.wait_idle(self.scoring_stall_s):
            self._give_up_scoring(scoring)
            cancelled = True
        self._score_the_rest_here()
        if cancelled:
            scoring.abandon()
        else:
            await scoring.aclose()
        self._raise_late_error()

    async def _one(self, job: Job) -> None:
        task = self.tasks[job.task_id]
        cached = self.cache.get(job) if self.cache else None
        if cached is not None:
            await self._record(job, task, cached, None, 0, cached=True)
            return
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            completion, error, attempts = await call_with_retries(
                self.backend, job, self.policy, self.breaker, self.on_notice)
        finally:
            self.in_flight -= 1
        if completion is not None and self.cache is not None:
            self.cache.put(job, completion)
        await self._record(job, task, completion, error, attempts)

    async def _worker(self, jobs: Iterator[Job]) -> None:
        for job in jobs:  # a shared iterator: each job is taken by exactly one worker
            await self._one(job)

    async def run(self, jobs: Iterable[Job], deadline_s: float | None = None) -> None:
        """Run every job; on cancellation or deadline, in-flight calls are cancelled and
        everything already finished is already in the sink."""
        iterator = iter(jobs)
        if self.score_in_process:
            await self._start_scoring()
        workers = [asyncio.create_task(self._worker(iterator)) for _ in range(self.concurrency)]
        finished = False
        try:
            done, pending = await asyncio.wait(workers, timeout=deadline_s, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if pending:
                raise TimeoutError(f"run deadline of {deadline_s:.0f}s reached")
            finished = True
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._stop_scoring(cancelled=not finished)
