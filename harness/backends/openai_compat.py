"""Any OpenAI-compatible `/v1` server (vLLM, llama.cpp, FastChat, LLaMA-Factory, OpenAI).

We use the official openai SDK, always streaming, so time-to-first-token is
measured the same way on every server. The SDK's own retries are switched off:
the runner retries, with one policy for every backend.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai

from ..models import ChatRequest, Completion
from .base import Backend, BackendError, connection_error, dropped_error, redact, status_error


class OpenAICompatBackend(Backend):
    kind = "openai"
    supports_constrained = True

    def __init__(self, name: str, base_url: str, **kwargs: Any):
        super().__init__(name, base_url, **kwargs)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "sk-no-key-required",
            max_retries=0,
            timeout=self.timeout,
            http_client=self._http,
        )
        self._stream_options_ok = True

    def _what_to_try(self) -> str:
        return ("Is the server running? Check --base-url (it should end in /v1, e.g. http://127.0.0.1:8000/v1) "
                "and that the port is right.")

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        args: dict[str, Any] = {"model": request.model, "messages": list(request.messages), "stream": True}
        if self._stream_options_ok:
            args["stream_options"] = {"include_usage": True}
        for key in ("temperature", "max_tokens", "seed", "top_p"):
            value = getattr(p, key)
            if value is not None:
                args[key] = value
        if request.schema is not None:
            # The nested form: llama.cpp silently ignores the flat {"type","schema"} form.
            args["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.schema, "strict": True},
            }
        return args

    def _error(self, exc: Exception, url: str) -> BackendError:
        secrets = [self.api_key]
        if isinstance(exc, openai.APITimeoutError):
            return BackendError("timeout", f"no answer from {url} within {self.timeout:.0f}s", url=url, retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            if isinstance(cause, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
                err = dropped_error(url, cause)
            else:
                err = connection_error(url, cause, self._what_to_try())
            err.message = redact(err.message, secrets)
            return err
        if isinstance(exc, openai.APIStatusError):
            body = redact(exc.response.text if exc.response is not None else str(exc), secrets)
            return status_error(exc.status_code, url, body, exc.response.headers.get("retry-after"))
        if isinstance(exc, (httpx.HTTPError, openai.APIError)):
            return BackendError("connection", redact(f"{url}: {type(exc).__name__}: {exc}", secrets), url=url,
                                retryable=True)
        return BackendError("protocol", redact(f"{url}: unexpected reply ({type(exc).__name__}: {exc})", secrets),
                            url=url, retryable=False)

    async def complete(self, request: ChatRequest) -> Completion:
        url = f"{self.public_base_url}/chat/completions"
        started = time.perf_counter()
        ttft: float | None = None
        pieces: list[str] = []
        size = 0
        capped = False
        finish: str | None = None
        usage: Any = None
        timings: dict[str, Any] = {}
        server_model: str | None = None
        events = 0
        try:
            try:
                stream = await self._client.chat.completions.create(**self._arguments(request))
            except openai.BadRequestError as exc:
                if not (self._stream_options_ok and "stream_options" in str(exc)):
                    raise
                self._stream_options_ok = False  # older FastChat / LLaMA-Factory builds
                stream = await self._client.chat.completions.create(**self._arguments(request))
            async with stream:
                async for chunk in stream:
                    events += 1
                    server_model = server_model or getattr(chunk, "model", None)
                    extra = getattr(chunk, "model_extra", None) or {}
                    if isinstance(extra.get("timings"), dict):
                        timings = extra["timings"]
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices or []:
                        piece = getattr(choice.delta, "content", None) if choice.delta else None
                        if piece:
                            if ttft is None:
                                ttft = time.perf_counter() - started
                            size += len(piece.encode("utf-8"))
                            if size > self.max_output_bytes:
                                capped = True
                                break
                            pieces.append(piece)
                        if choice.finish_reason:
                            finish = choice.finish_reason
                    if capped:
                        break
        except BackendError:
            raise
        except Exception as exc:  # the SDK raises many types; map each to an actionable error
            raise self._error(exc, url) from None
        if events == 0:
            raise BackendError(
                "protocol",
                f"{url} answered without any streamed event; is this an OpenAI-compatible server? {self._what_to_try()}",
                url=url,
            )
        return Completion(
            text="".join(pieces),
            finish_reason="length" if capped else finish,
            total_s=time.perf_counter() - started,
            ttft_s=ttft,
            prompt_tokens=getattr(usage, "prompt_tokens", None) or timings.get("prompt_n"),
            output_tokens=getattr(usage, "completion_tokens", None) or timings.get("predicted_n"),
            server_timings=timings,
            capped=capped,
            server_model=server_model,
        )

    def _root_url(self) -> str:
        root = self.base_url
        return root[: -len("/v1")] if root.endswith("/v1") else root

    async def list_models(self) -> list[str]:
        try:
            page = await self._client.models.list()
        except Exception as exc:
            raise self._error(exc, f"{self.public_base_url}/models") from None
        return [m.id for m in page.data]

    async def model_identity(self, model: str) -> dict[str, Any]:
        try:
            page = await self._client.models.list()
        except Exception:
            return {}
        for entry in page.data:
            if entry.id == model or len(page.data) == 1:
                info = entry.model_dump()
                return {k: info[k] for k in ("id", "owned_by", "created", "meta") if info.get(k) is not None}
        return {}

    async def parallel_slots(self) -> int | None:
        """llama.cpp reports its slots at /props; other servers don't say."""
        try:
            response = await self._http.get(f"{self._root_url()}/props", timeout=5.0)
            if response.status_code == 200:
                slots = response.json().get("total_slots")
                return int(slots) if slots else None
        except (httpx.HTTPError, ValueError, TypeError):
            return None
        return None

    async def aclose(self) -> None:
        await self._client.close()
