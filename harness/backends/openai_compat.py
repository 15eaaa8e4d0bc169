"""Any OpenAI-compatible `/v1` server (vLLM, llama.cpp, FastChat, LLaMA-Factory, OpenAI).

Always streaming, so time-to-first-token is measured the same way on every
server. The chat stream (SSE) is read straight off httpx and parsed here: the
openai SDK builds a pydantic model per streamed event, which cost about ten
times the whole HTTP exchange on servers that send one token per event
(bench/client_overhead.py). The SDK (retries off) still lists models.
The runner retries, with one policy for every backend.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable

import httpx
import openai
import orjson

from ..models import ChatRequest, Completion
from .streaming import body_chunks, decode_batch, drain, read_capped, stamp_at
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
        if isinstance(exc, httpx.TimeoutException):
            return BackendError("timeout", f"no answer from {url} within {self.timeout:.0f}s", url=url, retryable=True)
        if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
            cause = (exc.__cause__ or exc) if isinstance(exc, openai.APIConnectionError) else exc
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

    async def _open_stream(self, request: ChatRequest, url: str) -> httpx.Response:
        """POST the request and return the open streaming response (status 2xx), or raise."""
        headers = {"Authorization": f"Bearer {self.api_key or 'sk-no-key-required'}"}
        for _ in range(2):
            sent = self._http.build_request("POST", f"{self.base_url}/chat/completions",
                                            json=self._arguments(request), headers=headers)
            try:
                response = await self._http.send(sent, stream=True)
            except httpx.RemoteProtocolError:
                # No response at all: a kept-alive connection the server closed just as we reused it
                # (llama.cpp does, now and then). Send once more at once, on a fresh connection,
                # instead of failing into the runner's retry with its backoff.
                response = await self._http.send(sent, stream=True)
            if 200 <= response.status_code < 300:
                return response
            try:
                body = (await read_capped(response, 8000)).decode("utf-8", "replace")
            finally:
                await response.aclose()
            if response.status_code == 400 and self._stream_options_ok and "stream_options" in body:
                self._stream_options_ok = False  # older FastChat / LLaMA-Factory builds
                continue
            raise status_error(response.status_code, url, redact(body, [self.api_key]),
                               response.headers.get("retry-after"))
        raise AssertionError("unreachable")

    async def complete(self, request: ChatRequest) -> Completion:
        """One streamed chat completion. The SSE stream is parsed here, straight off httpx: the
        SDK builds a pydantic model per event, which cost ~10x the whole HTTP exchange on
        servers that send one token per event (bench/client_overhead.py). Each chunk costs as
        little as possible: chunks are kept with their arrival times and decoded in batches, one
        json.loads per batch (a third of the cost of one per event), at [DONE] or an error event,
        at the end of the stream, or, once the output could exceed the byte cap, at every chunk.
        Time to first token is the arrival of the first event with content."""
        url = f"{self.public_base_url}/chat/completions"
        started = time.perf_counter()
        answer = _Answer(started, self.max_output_bytes)
        # An SSE event carries at most the whole (JSON-escaped) answer; past that, stop reading.
        line_limit = 6 * self.max_output_bytes + 65536
        last = 0.0  # when the last chunk with data arrived: the end of the answer
        try:
            response = await self._open_stream(request, url)
            try:
                buffer = b""  # the start of an event not finished yet
                chunks: list[bytes] = []  # received, not decoded yet ...
                stamps: list[float] = []  # ... and when each arrived
                seen = 0  # bytes so far: the content cannot be longer
                unbroken = 0  # bytes since the last line break
                received = body_chunks(response)
                async for chunk in received:
                    chunks.append(chunk)
                    last = time.perf_counter()
                    stamps.append(last)
                    seen += len(chunk)
                    if chunk.endswith(b"\n\n"):  # one or more whole events: the common case
                        unbroken = 0
                        urgent = chunk.endswith(b"[DONE]\n\n")
                    else:
                        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                        unbroken = unbroken + len(chunk) if cut < 0 else len(chunk) - cut - 1
                        if unbroken > line_limit:
                            raise BackendError("protocol", f"{url} sent over {line_limit} bytes without an event "
                                               "boundary; not an OpenAI-compatible SSE stream", url=url)
                        urgent = b"[DONE]" in chunk
                    if urgent or seen > self.max_output_bytes or b'"error"' in chunk:
                        buffer = answer.feed(buffer, chunks, stamps, url, self.api_key)
                        chunks, stamps = [], []
                        if answer.capped:
                            break  # a model that loops: hang up rather than read megabytes more
                        if answer.done:
                            await drain(received)
                            break
                        if len(buffer) > line_limit:
                            raise BackendError("protocol", f"{url} sent over {line_limit} bytes without an event "
                                               "boundary; not an OpenAI-compatible SSE stream", url=url)
                else:
                    if chunks:  # the stream ended without a [DONE] we spotted
                        answer.feed(buffer, chunks, stamps, url, self.api_key, final=True)
            finally:
                await response.aclose()
        except BackendError:
            raise
        except Exception as exc:  # transport errors (and anything exotic): map each to an actionable error
            raise self._error(exc, url) from None
        if answer.events == 0:
            raise BackendError(
                "protocol",
                f"{url} answered without any streamed event; is this an OpenAI-compatible server? {self._what_to_try()}",
                url=url,
            )
        usage, timings = answer.usage, answer.timings
        return Completion(
            text="".join(answer.pieces),
            finish_reason="length" if answer.capped else answer.finish,
            # Latency ends when the answer's last byte arrived, not after decoding it (batched).
            total_s=(last or time.perf_counter()) - started,
            ttft_s=answer.ttft,
            prompt_tokens=usage.get("prompt_tokens") or timings.get("prompt_n"),
            output_tokens=usage.get("completion_tokens") or timings.get("predicted_n"),
            server_timings=timings,
            capped=answer.capped,
            server_model=answer.server_model,
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


# A blank line ends an SSE event; CRLF is one line break (so `\r` alone only when no `\n` follows).
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")
_LINE_END = re.compile(rb"\r\n|\r|\n")


class _Answer:
    """What the decoded events of one streamed answer add up to."""

    __slots__ = ("started", "max_bytes", "pieces", "size", "capped", "done", "finish", "usage", "timings",
                 "server_model", "ttft", "events")

    def __init__(self, started: float, max_bytes: int):
        self.started, self.max_bytes = started, max_bytes
        self.pieces: list[str] = []
        self.size = 0
        self.capped = False
        self.done = False
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}
        self.server_model: str | None = None
        self.ttft: float | None = None
        self.events = 0

    def _payloads(self, blocks: list[bytes]) -> tuple[list[bytes], list[int]]:
        """The data of each event (its `data:` lines joined), up to [DONE], and the block of each."""
        payloads: list[bytes] = []
        where: list[int] = []
        for index, block in enumerate(blocks):
            if block[:5] == b"data:" and b"\n" not in block and b"\r" not in block:
                payload = block[6:] if block[5:6] == b" " else block[5:]
            else:  # several lines: data lines are joined; comments, `event:`, `id:`, `retry:` are not used
                lines = [line for line in _LINE_END.split(block) if line[:5] == b"data:"]
                if not lines:
                    continue
                payload = b"\n".join(line[6:] if line[5:6] == b" " else line[5:] for line in lines)
            if payload.startswith(b"[DONE]"):
                self.done = True
                break
            payloads.append(payload)
            where.append(index)
        return payloads, where

    def _take_whole(self, objs: list[dict[str, Any]], where: Any, arrival: Callable[[int], float],
                    data: bytes) -> bool:
        """Take a batch of ordinary events in a few list comprehensions instead of an event-by-event
        loop (which cost ~1 us an event, a model sends one per token). Ordinary: every event has
        `choices` of objects with a `delta` object and string-or-null content, and the batch does
        not reach the byte cap. Anything else returns False having changed nothing, and the
        event-by-event loop takes the batch; the result is the same either way."""
        try:
            text = "".join([content for obj in objs for choice in obj["choices"]
                            if (content := choice["delta"].get("content"))])
        except (KeyError, TypeError, AttributeError):
            return False
        size = self.size + len(text.encode("utf-8"))
        if size > self.max_bytes:
            return False
        if text and self.ttft is None:
            first = next(number for number, obj in enumerate(objs)
                         if any(choice["delta"].get("content") for choice in obj["choices"]))
            self.ttft = arrival(where[first]) - self.started
        self.size = size
        self.events += len(objs)
        if text:
            self.pieces.append(text)
        # The last finish_reason given wins; it comes with the last events, so look from the end.
        self.finish = next((finish for obj in reversed(objs) for choice in reversed(obj["choices"])
                            if (finish := choice.get("finish_reason"))), self.finish)
        if self.server_model is None:
            self.server_model = next((obj["model"] for obj in objs if obj.get("model") is not None), None)
        if b'"timings"' in data:
            self.timings = next((obj["timings"] for obj in reversed(objs) if isinstance(obj.get("timings"), dict)),
                                self.timings)
        if b'"usage"' in data:
            self.usage = next((obj["usage"] for obj in reversed(objs) if isinstance(obj.get("usage"), dict)),
                              self.usage)
        return True

    def feed(self, carry: bytes, chunks: list[bytes], stamps: list[float], url: str, api_key: str | None,
             final: bool = False) -> bytes:
        """Take every complete event of `carry` + `chunks` (and, when `final`, an unterminated
        last one too); return the unfinished rest."""
        joined = b"".join(chunks)
        data = carry + joined if carry else joined
        common = None if final or b"\r" in data else _single_line_events(data)
        if common is not None:
            objs, rest, done = common
            self.done = self.done or done
            where: Any = range(len(objs))
        else:
            blocks = data.split(b"\n\n") if b"\r" not in data else _EVENT_END.split(data)
            rest = blocks.pop()
            if final and rest.strip():
                blocks.append(rest)
                rest = b""
            payloads, where = self._payloads(blocks)
            objs = decode_batch(payloads, lambda payload: _decode_event(payload, url))

        def arrival(block: int) -> float:
            """When event `block` was complete: the arrival of the chunk holding its blank line."""
            end = len(data)
            for number, match in enumerate(_EVENT_END.finditer(data)):
                if number == block:
                    end = match.end()
                    break
            return stamp_at(end - len(carry), chunks, stamps)

        if b'"error"' not in data and self._take_whole(objs, where, arrival, data):
            return rest
        self.events += len(objs)
        for number, obj in enumerate(objs):
            if "error" in obj and obj["error"]:
                error = obj["error"]
                message = error.get("message") if isinstance(error, dict) else None
                raise BackendError("connection", redact(
                    f"{url}: the server reported an error mid-answer: "
                    f"{message if isinstance(message, str) and message else error}", [api_key]),
                    url=url, retryable=True)
            if self.server_model is None:
                self.server_model = obj.get("model")
            if "timings" in obj and isinstance(obj["timings"], dict):
                self.timings = obj["timings"]
            if "usage" in obj and isinstance(obj["usage"], dict):
                self.usage = obj["usage"]
            for choice in obj.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                piece = delta.get("content") if isinstance(delta, dict) else None
                if piece and isinstance(piece, str):
                    if self.ttft is None:
                        self.ttft = arrival(where[number]) - self.started
                    self.size += len(piece.encode("utf-8"))
                    if self.size > self.max_bytes:
                        self.capped = True
                        return rest
                    self.pieces.append(piece)
                if choice.get("finish_reason"):
                    self.finish = choice["finish_reason"]
        return rest


def _single_line_events(data: bytes) -> tuple[list[dict[str, Any]], bytes, bool] | None:
    """Decode the common stream shape without splitting it into events: every event one
    `data: ` line, LF line ends. The events up to [DONE] become one JSON array by a single
    replace, ``data: A\n\ndata: B`` -> ``[A,B]``, parsed once. Returns (objects, the unfinished
    rest, whether [DONE] came), or None for any other shape (the caller then splits)."""
    if not data.startswith(b"data: "):
        return None
    end = data.rfind(b"\n\n")
    if end < 0:
        return None
    events, rest = data[:end], data[end + 2:]
    done = events.startswith(b"data: [DONE]")
    if done:
        return [], rest, True
    cut = events.find(b"\n\ndata: [DONE]")  # an event's start: JSON payloads hold no raw newline
    if cut >= 0:
        events, done = events[:cut], True
    count = events.count(b"\n\ndata: ") + 1
    if events.count(b"\n") != 2 * (count - 1):
        return None  # multi-line events, comments, other fields: not the common shape
    try:
        objs = orjson.loads(b"[" + events[6:].replace(b"\n\ndata: ", b",") + b"]")
    except orjson.JSONDecodeError:
        return None
    if len(objs) != count or set(map(type, objs)) != {dict}:
        return None  # an item per event, each an object; else the slow path names the bad one
    return objs, rest, done


def _decode_event(payload: bytes, url: str) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except ValueError:
        text = payload[:100].decode("utf-8", "replace")
        raise BackendError("protocol", f"{url} sent an event that is not JSON: {text!r}; is this an "
                           "OpenAI-compatible server?", url=url) from None
    if not isinstance(obj, dict):
        raise BackendError("protocol", f"{url} sent {type(obj).__name__} where an OpenAI-compatible server sends "
                           "objects", url=url)
    return obj

