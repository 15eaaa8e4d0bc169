"""The result type of a repair, and the one exception that may escape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RepairError(Exception):
    """Raised only for a wrong call (bad ``output_format``, non-text input,
    unusable schema); broken model output is never an exception but an
    outcome with ``ok=False``."""


@dataclass(frozen=True)
class RepairOutcome:
    """What `repair_output` made of one raw model output.

    ``text`` is ``json.dumps(value, ensure_ascii=False)`` when ``ok``;
    ``repairs`` names, in pipeline order (`REPAIR_KINDS`), every repair that
    changed something, also when the result is not ok; ``error`` says why
    no JSON value came out.
    """

    text: str | None
    value: Any
    ok: bool
    repairs: list[str] = field(default_factory=list)
    error: str | None = None
