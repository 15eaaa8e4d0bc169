"""The backend protocol: turn a ChatRequest into a Completion, nothing else.

A backend never scores and never retries; the runner owns retries, so that
every backend gets the same backoff, circuit breaker and error accounting.
Backends raise `BackendError` with a message a user can act on (the URL and
what to try), and never put credentials in it.
"""

from __future__ import annotations

import abc
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..models import ChatRequest, Completion

# A model that loops can emit megabytes; we stop reading past this and say so.
DEFAULT_MAX_OUTPUT_BYTES = 2_000_000


class BackendError(Exception):
    """A failed model call. `retryable` tells the runner whether to try again."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.url = url
        self.retryable = retryable
        self.retry_after = retry_after


def public_url(url: str) -> str:
    """A URL with any user:password removed, safe for results and logs."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=host)
    return urlunsplit(parts)


def redact(text: str, secrets: list[str | None]) -> str:
    """Remove every known secret (and bearer tokens) from a message."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+", r"\1***", text)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; dates are rare here)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def status_error(status: int, url: str, body: str, retry_after: str | None = None) -> BackendError:
    """Turn an HTTP error status into an actionable BackendError."""
    snippet = body.strip().replace("\n", " ")[:200]
    hint = ""
    if status == 404:
        if "model" in snippet.lower() and "not found" in snippet.lower():
            hint = " The server does not know this model: check --model (for ollama: `ollama pull MODEL`)."
        else:
            hint = (
                " Is the base URL right? OpenAI-compatible servers want it to end in /v1"
                " (e.g. http://127.0.0.1:8000/v1); ollama wants the bare host (http://127.0.0.1:11434)."
            )
    elif status in (401, 403):
        hint = " Check the API key (--api-key or the env variable named in config)."
    retryable = status in (408, 429) or status >= 500
    return BackendError(
        "http_status",
        f"HTTP {status} from {url}: {snippet!r}.{hint}",
        status=status,
        url=url,
        retryable=retryable,
        retry_after=parse_retry_after(retry_after),
    )


def connection_error(url: str, exc: BaseException, what_to_try: str) -> BackendError:
    return BackendError(
        "connection",
        f"cannot reach {url} ({type(exc).__name__}: {str(exc) or 'no detail'}). {what_to_try}",
        url=url,
        retryable=True,
    )


def dropped_error(url: str, exc: BaseException) -> BackendError:
    """The server was reached but the connection broke mid-answer (overload, crash, proxy)."""
    return BackendError(
        "connection",
        f"{url} dropped the connection mid-answer ({type(exc).__name__}: {str(exc) or 'no detail'}); "
        "the server may be overloaded or restarting",
        url=url,
        retryable=True,
    )


class Backend(abc.ABC):
    """One configured server. Subclasses implement `complete`."""

    kind: str = "base"
    supports_constrained: bool = False

    def __init__(self, name: str, base_url: str, *, api_key: str | None = None, timeout: float = 600.0,
                 max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes

    @property
    def public_base_url(self) -> str:
        return public_url(self.base_url)

    @abc.abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """Send one chat request and return its completion, or raise BackendError."""

    async def list_models(self) -> list[str]:
        """Models the server says it serves (may be empty when it cannot say)."""
        return []

    async def model_identity(self, model: str) -> dict[str, Any]:
        """What the server says about this model (digest, size...), for the manifest and cache key."""
        return {}

    async def parallel_slots(self) -> int | None:
        """How many requests the server decodes in parallel, when it reports it."""
        return None

    async def start(self) -> None:
        """Bring the backend up (only the embedded server has work to do here)."""

    async def aclose(self) -> None:
        """Release connections (and stop the embedded server)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "base_url": self.public_base_url}
