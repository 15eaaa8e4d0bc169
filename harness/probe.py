"""`harness backends`: is each configured server reachable, what does it serve, can it constrain?

Constrained support is *tried*, not assumed: llama.cpp, for one, silently
ignores a response_format it does not understand, so the only honest answer
is a tiny constrained request whose output is checked against its schema.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from .backends import create_backend
from .backends.base import Backend, BackendError
from .config import BackendConfig, HarnessConfig
from .models import ChatRequest, GenerationParams
from .runner import backend_secrets, scrub
from .scoring import validate

PROBE_TIMEOUT_S = 10.0
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


@dataclass
class ProbeResult:
    name: str
    kind: str
    url: str
    status: str
    models: str
    constrained: str
    detail: str | None = None

    def row(self) -> list[str]:
        return [self.name, self.kind, self.url, self.status, self.models, self.constrained]


async def try_constrained(backend: Backend, model: str) -> str:
    """Send one schema-constrained request; 'yes' only if the answer obeys the schema."""
    request = ChatRequest(
        model=model,
        messages=({"role": "user", "content": "Reply with a JSON object whose key ok is true."},),
        params=GenerationParams(temperature=0.0, max_tokens=16),
        schema=PROBE_SCHEMA,
        schema_name="probe",
    )
    try:
        completion = await asyncio.wait_for(backend.complete(request), PROBE_TIMEOUT_S * 3)
    except asyncio.TimeoutError:
        return "untested (slow)"
    except BackendError as exc:
        return f"no (HTTP {exc.status})" if exc.status else "no"
    try:
        value = json.loads(completion.text)
    except ValueError:
        return "ignored"
    return "yes" if not validate(value, PROBE_SCHEMA) else "ignored"


async def _probe_one(config: BackendConfig) -> ProbeResult:
    if config.protocol == "local":
        from .backends.local import local_status

        return ProbeResult(config.name, "local", "(embedded)", *local_status(config))
    backend = create_backend(config.model_copy(update={"timeout": PROBE_TIMEOUT_S}))
    try:
        models = await asyncio.wait_for(backend.list_models(), PROBE_TIMEOUT_S)
        shown = ", ".join(models[:5]) + (f" (+{len(models) - 5})" if len(models) > 5 else "")
        wanted = config.models[0] if config.models else (models[0] if models else None)
        constrained = await try_constrained(backend, wanted) if wanted else "untested"
        return ProbeResult(config.name, config.kind, backend.public_base_url, "reachable", shown or "-", constrained)
    except (BackendError, asyncio.TimeoutError) as exc:
        message = getattr(exc, "message", None) or f"no answer within {PROBE_TIMEOUT_S:.0f}s"
        message = scrub(message, backend_secrets(backend))
        return ProbeResult(config.name, config.kind, backend.public_base_url, "unreachable", "-", "?", message)
    finally:
        await backend.aclose()


async def check_backends(config: HarnessConfig) -> tuple[str, bool]:
    """A table of every configured backend, then what to try for the unreachable ones;
    ok when at least one is usable."""
    entries = list(config.backends.values()) or [BackendConfig(name="local", kind="local")]
    results = await asyncio.gather(*(_probe_one(entry) for entry in entries))
    table = tabulate([r.row() for r in results], ["name", "kind", "url", "status", "models", "constrained"],
                     tablefmt="simple")
    lines = [table, f"default: {config.default or 'local'}"]
    lines += [f"{r.name}: {r.detail}" for r in results if r.detail]
    return "\n".join(lines), any(r.status in ("reachable", "ready") for r in results)
