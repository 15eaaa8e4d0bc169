"""`harness backends`: is each configured server reachable, what does it serve, can it constrain?"""

from __future__ import annotations

import asyncio
from typing import Any

from tabulate import tabulate

from .backends import create_backend
from .backends.base import BackendError
from .config import HarnessConfig
from .runner import backend_secrets, scrub

PROBE_TIMEOUT_S = 10.0


async def _probe_one(config: Any) -> list[str]:
    if config.protocol == "local":
        from .backends.local import local_status

        return [config.name, "local", "(embedded)", *local_status(config)]
    backend = create_backend(config.model_copy(update={"timeout": PROBE_TIMEOUT_S}))
    try:
        models = await asyncio.wait_for(backend.list_models(), PROBE_TIMEOUT_S)
        shown = ", ".join(models[:5]) + (f" (+{len(models) - 5})" if len(models) > 5 else "")
        return [config.name, config.kind, backend.public_base_url, "reachable", shown or "-",
                "yes" if backend.supports_constrained else "no"]
    except (BackendError, asyncio.TimeoutError) as exc:
        message = getattr(exc, "message", None) or f"no answer within {PROBE_TIMEOUT_S:.0f}s"
        message = scrub(message, backend_secrets(backend))
        return [config.name, config.kind, backend.public_base_url, "UNREACHABLE", message[:120], "?"]
    finally:
        await backend.aclose()


async def check_backends(config: HarnessConfig) -> tuple[str, bool]:
    """A table of every configured backend; ok when at least one is usable."""
    entries = list(config.backends.values())
    if not entries:
        from .config import BackendConfig

        entries = [BackendConfig(name="local", kind="local")]
    rows = await asyncio.gather(*(_probe_one(entry) for entry in entries))
    marker = f"default: {config.default or 'local'}"
    table = tabulate(rows, ["name", "kind", "url", "status", "models", "constrained"], tablefmt="simple")
    return f"{table}\n{marker}", any(row[3] in ("reachable", "ready") for row in rows)
