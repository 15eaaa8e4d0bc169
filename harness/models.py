"""The records that flow one way through harness: Job -> Completion -> Sample.

Plain dataclasses rather than pydantic models: these are built once per model
call and once per sample, and the harness's own per-sample cost must stay far
below a model call. Validation of *user input* (task files, config) is done
with pydantic in `tasks.py` and `config.py`; these records are made by our own
code and only need to be cheap and serialisable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["free", "constrained"]
OutputFormat = Literal["json", "content", "fence"]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters sent with every request; a run may override a task's."""

    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    top_p: float | None = None

    def merged(self, override: "GenerationParams | None") -> "GenerationParams":
        """Return these params with every non-None field of `override` on top."""
        if override is None:
            return self
        values = asdict(self)
        values.update({k: v for k, v in asdict(override).items() if v is not None})
        return GenerationParams(**values)

    def to_dict(self) -> dict[str, Any]:
        # Once per sample record: spelled out, as `asdict` (a deep copy) cost ~10x as much.
        values = {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed,
                  "top_p": self.top_p}
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class ChatRequest:
    """What a backend is asked to do: backends never see tasks, only this."""

    model: str
    messages: tuple[dict[str, str], ...]
    params: GenerationParams
    # JSON Schema to constrain decoding with, or None for free generation.
    schema: dict[str, Any] | None = None
    schema_name: str = "output"


@dataclass
class Completion:
    """One model answer plus the timings needed to judge the server, not just the model."""

    text: str
    finish_reason: str | None = None
    total_s: float = 0.0
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    # Server-reported timings, in the server's own words (ollama ns durations,
    # llama.cpp `timings`), kept verbatim so nothing is lost in translation.
    server_timings: dict[str, Any] = field(default_factory=dict)
    # Seconds the server spent loading the model before generating (ollama).
    load_s: float | None = None
    # True when we stopped reading because the body exceeded our byte cap.
    capped: bool = False
    # Model identity as the server reports it on this very response.
    server_model: str | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens per second of generation (after the first token when known)."""
        if not self.output_tokens:
            return None
        gen = self.total_s - (self.ttft_s or 0.0)
        if gen <= 0:
            gen = self.total_s
        return self.output_tokens / gen if gen > 0 else None


@dataclass(frozen=True)
class Job:
    """One (task, case, backend/model, mode, sample index): the unit of work and of resume."""

    task_id: str
    case_id: str
    backend: str
    model: str
    mode: Mode
    sample_index: int
    request: ChatRequest

    @property
    def key(self) -> str:
        """Stable identity used to resume runs and to pair samples across runs."""
        return f"{self.task_id}/{self.case_id}/{self.backend}:{self.model}/{self.mode}/{self.sample_index}"


@dataclass
class CallError:
    """Why a model call failed, in words a user can act on (never containing secrets)."""

    kind: str  # connection | timeout | http_status | protocol | circuit_open | cancelled
    message: str
    status: int | None = None
    url: str | None = None


@dataclass
class ParseResult:
    """Outcome of parsing one text into a JSON value and checking it against the schema."""

    parse_ok: bool
    schema_valid: bool
    value: Any = None
    parse_error: str | None = None
    violations: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Score:
    """Raw and repaired verdicts on the same output text, side by side."""

    raw: ParseResult
    repaired: ParseResult
    repairs_applied: list[str] = field(default_factory=list)
    repaired_text: str | None = None
    # Failure taxonomy of the raw output (None when raw is schema-valid).
    failure: str | None = None
    # Constrained mode only: the output cannot have come from schema-constrained
    # decoding (the server dropped the constraint). None in free mode.
    constraint_ignored: bool | None = None
