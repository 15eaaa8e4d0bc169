"""ollama's native API: `POST {host}/api/chat`, streaming NDJSON by default.

We speak the native protocol (not ollama's /v1 shim) because only it reports
`load_duration` separately from generation: a cold model load must not be
counted as the model being slow. Durations arrive in nanoseconds.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import httpx
import orjson

from ..models import ChatRequest, Completion
from .streaming import body_chunks, decode_batch, drain, read_capped, stamp_at
from .base import Backend, BackendError, connection_error, dropped_error, status_error

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
NS = 1e9
# A stream:false body must be read whole to get its final fields; this bounds the memory it may take.
NON_STREAM_BODY_LIMIT = 64 * 1024 * 1024


def ollama_host_from_env() -> str:
    """Honour OLLAMA_HOST the way ollama does (`host:port` without scheme is allowed)."""
    raw = os.environ.get("OLLAMA_HOST", "").strip()
    if not raw:
        return DEFAULT_OLLAMA_HOST
    # Same rules as ollama's envconfig.Host(): no scheme -> http on 11434; an explicit
    # http:// or https:// without a port means 80 / 443; IPv6 hosts may come bracketed or bare.
    scheme, sep, hostport = raw.partition("://")
    default_port = "11434"
    if not sep:
        scheme, hostport = "http", raw
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    hostport, slash, path = hostport.partition("/")
    if hostport.startswith("[") and "]" in hostport:
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") and rest[1:] else default_port
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
        port = port or default_port
    else:  # a bare name, IPv4 or IPv6 address without a port
        host, port = hostport, default_port
    host = host or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}" + (f"/{path}" if slash and path else "")


class OllamaBackend(Backend):
    kind = "ollama"
    supports_constrained = True

    def __init__(self, name: str, base_url: str | None = None, **kwargs: Any):
        super().__init__(name, base_url or ollama_host_from_env(), **kwargs)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        p = request.params
        if p.temperature is not None:
            options["temperature"] = p.temperature
        if p.max_tokens is not None:
            options["num_predict"] = p.max_tokens
        if p.seed is not None:
            options["seed"] = p.seed
        if p.top_p is not None:
            options["top_p"] = p.top_p
        body: dict[str, Any] = {"model": request.model, "messages": list(request.messages), "stream": stream}
        if options:
            body["options"] = options
        if request.schema is not None:
            body["format"] = request.schema
        return body

    def _what_to_try(self) -> str:
        return "Is ollama running (`ollama serve`)? Set --base-url or OLLAMA_HOST if it listens elsewhere."

    async def complete(self, request: ChatRequest, stream: bool = True) -> Completion:
        """One chat call. The stream is read chunk by chunk with as little work per chunk as
        possible (a model sends one line per token): chunks are kept with their arrival times and
        decoded in batches, one json.loads per batch (a third of the cost of one per line), at a
        final `done` or an error line, at the end of the stream, or, once the output could exceed
        the byte cap, at every chunk. Time to first token is the arrival of the first content line."""
        url = f"{self.public_base_url}/api/chat"
        started = time.perf_counter()
        answer = _Answer(started, self.max_output_bytes)
        last = 0.0  # when the last chunk with data arrived: the end of the answer
        try:
            async with self._client.stream("POST", "/api/chat", json=self._body(request, stream)) as response:
                if response.status_code != 200:
                    body = (await read_capped(response, 4000)).decode("utf-8", "replace")
                    raise status_error(response.status_code, url, _error_text(body), response.headers.get("retry-after"))
                buffer = b""  # the start of a line not finished yet
                chunks: list[bytes] = []  # received, not decoded yet ...
                stamps: list[float] = []  # ... and when each arrived
                seen = 0  # bytes so far: the content cannot be longer
                unbroken = 0  # bytes since the last newline
                # A streamed line is one small piece; a stream:false body is one line holding
                # the whole (escaped) answer. Past either bound, memory is all we would lose.
                line_limit = self.max_output_bytes + 65536 if stream else NON_STREAM_BODY_LIMIT
                received = body_chunks(response)
                async for chunk in received:
                    chunks.append(chunk)
                    last = time.perf_counter()
                    stamps.append(last)
                    seen += len(chunk)
                    if chunk.endswith(b"false}\n"):  # a token line (`"done":false}`): the common case
                        unbroken = 0
                        urgent = False
                    else:
                        cut = chunk.rfind(b"\n")
                        unbroken = unbroken + len(chunk) if cut < 0 else len(chunk) - cut - 1
                        if unbroken > line_limit:
                            # One endless line with no newline: not NDJSON any more; stop reading.
                            raise BackendError("protocol", f"{url} sent over {self.max_output_bytes} bytes without "
                                               "a newline; not ollama's NDJSON stream", url=url)
                        urgent = b'"done":true' in chunk or b'"done": true' in chunk or b'"error"' in chunk
                    if urgent or seen > self.max_output_bytes:
                        buffer = answer.feed(buffer, chunks, stamps, url)
                        chunks, stamps = [], []
                        if answer.capped or answer.final is not None:
                            break
                else:
                    if chunks:  # the stream ended without a `done` line we spotted
                        buffer = answer.feed(buffer, chunks, stamps, url)
                if answer.final is not None and not answer.capped:
                    await drain(received)
                if answer.final is None and not answer.capped and buffer.strip():
                    obj = _decode_line(buffer, url)
                    if "error" in obj:
                        raise BackendError("protocol", f"ollama at {url} reported: {obj['error']}", url=url)
                    content = (obj.get("message") or {}).get("content") or ""
                    encoded = content.encode("utf-8")
                    if answer.size + len(encoded) > self.max_output_bytes:  # stream:false answers are capped too
                        content = encoded[: max(0, self.max_output_bytes - answer.size)].decode("utf-8", "ignore")
                        answer.capped = True
                    answer.pieces.append(content)
                    answer.final = obj if obj.get("done") else None
        except httpx.TimeoutException as exc:
            raise BackendError("timeout", f"no answer from {url} within {self.timeout:.0f}s ({type(exc).__name__})",
                               url=url, retryable=True) from None
        except httpx.ConnectError as exc:
            raise connection_error(url, exc, self._what_to_try()) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise dropped_error(url, exc) from None
        # Latency ends when the answer's last byte arrived, not after decoding it (batched).
        total = (last or time.perf_counter()) - started
        final, capped, ttft, pieces = answer.final, answer.capped, answer.ttft, answer.pieces
        if final is None and not capped:
            raise BackendError("protocol", f"stream from {url} ended without a final `done` object", url=url, retryable=True)
        final = final or {}
        timings = {k: final[k] for k in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                                         "eval_count", "eval_duration") if k in final}
        load = final.get("load_duration")
        return Completion(
            text="".join(pieces),
            finish_reason="length" if capped else final.get("done_reason", "stop"),
            total_s=total,
            ttft_s=ttft if stream else None,
            prompt_tokens=final.get("prompt_eval_count"),
            output_tokens=final.get("eval_count"),
            server_timings=timings,
            load_s=load / NS if isinstance(load, (int, float)) else None,
            capped=capped,
            server_model=final.get("model"),
        )

    async def _get_json(self, path: str) -> Any:
        url = f"{self.public_base_url}{path}"
        try:
            response = await self._client.get(path)
        except httpx.HTTPError as exc:
            raise connection_error(url, exc, self._what_to_try()) from None
        if response.status_code != 200:
            raise status_error(response.status_code, url, response.text[:2000])
        try:
            return response.json()
        except ValueError:
            raise BackendError("protocol", f"{url} did not return JSON: {response.text[:100]!r}", url=url) from None

    async def list_models(self) -> list[str]:
        data = await self._get_json("/api/tags")
        return [m.get("name") or m.get("model") for m in data.get("models", [])]

    async def model_identity(self, model: str) -> dict[str, Any]:
        data = await self._get_json("/api/tags")
        wanted = {model, model if ":" in model else f"{model}:latest"}
        for entry in data.get("models", []):
            if entry.get("name") in wanted or entry.get("model") in wanted:
                return {"name": entry.get("name"), "digest": entry.get("digest"), "size": entry.get("size"),
                        "details": entry.get("details")}
        return {}

    async def aclose(self) -> None:
        await self._client.aclose()


class _Answer:
    """What the decoded lines of one streamed answer add up to."""

    __slots__ = ("started", "max_bytes", "pieces", "size", "capped", "final", "ttft")

    def __init__(self, started: float, max_bytes: int):
        self.started, self.max_bytes = started, max_bytes
        self.pieces: list[str] = []
        self.size = 0
        self.capped = False
        self.final: dict[str, Any] | None = None
        self.ttft: float | None = None

    def _take_whole(self, objs: list[dict[str, Any]], arrival: Callable[[int], float]) -> bool:
        """Take a batch of ordinary lines in a few list comprehensions instead of a line-by-line
        loop (~1 us a line, and ollama sends one per token). Ordinary: every line has a `message`
        object with string content, and the batch does not reach the byte cap. Anything else
        returns False having changed nothing, and the line-by-line loop takes the batch; the
        result is the same either way."""
        try:
            contents = [obj["message"]["content"] for obj in objs]
            text = "".join(contents)
        except (KeyError, TypeError):
            return False
        size = self.size + len(text.encode("utf-8"))
        if size > self.max_bytes:
            return False
        if text and self.ttft is None:
            self.ttft = arrival(next(index for index, content in enumerate(contents) if content)) - self.started
        self.size = size
        if text:
            self.pieces.append(text)
        finals = [obj for obj in objs if obj.get("done")]
        if finals:
            self.final = finals[-1]
        return True

    def feed(self, carry: bytes, chunks: list[bytes], stamps: list[float], url: str) -> bytes:
        """Decode every complete line of `carry` + `chunks`; return the unfinished rest."""
        joined = b"".join(chunks)
        data = carry + joined if carry else joined
        end = data.rfind(b"\n")
        rest = data[end + 1:]
        objs = _plain_lines(data[:end]) if end >= 0 else []
        if objs is None:  # blank lines, CRLF, a bad line: line by line
            stripped = [line.strip() for line in data[:end].split(b"\n")]
            objs = decode_batch([line for line in stripped if line], lambda line: _decode_line(line, url))

        def arrival(index: int) -> float:
            """When the `index`-th non-empty line was complete: the arrival of its newline's chunk."""
            start, count, end = 0, -1, len(data)
            while (newline := data.find(b"\n", start)) >= 0:
                count += bool(data[start:newline].strip())
                start = newline + 1
                if count == index:
                    end = start
                    break
            return stamp_at(end - len(carry), chunks, stamps)

        if b'"error"' not in data and self._take_whole(objs, arrival):
            return rest
        for index, obj in enumerate(objs):
            if "error" in obj:
                raise BackendError("protocol", f"ollama at {url} reported: {obj['error']}", url=url)
            piece = (obj.get("message") or {}).get("content") or ""
            if piece:
                if self.ttft is None:
                    self.ttft = arrival(index) - self.started
                self.size += len(piece.encode("utf-8"))
                if self.size > self.max_bytes:
                    self.capped = True
                    return rest
                self.pieces.append(piece)
            if obj.get("done"):
                self.final = obj
        return rest


def _plain_lines(lines: bytes) -> list[dict[str, Any]] | None:
    """Decode LF-separated NDJSON lines, none blank, without splitting them: one replace makes
    ``A\nB`` the JSON array ``[A,B]``, parsed once. None for any other shape (the caller then
    goes line by line, and names a bad line)."""
    if not lines or b"\r" in lines or b"\n\n" in lines or lines[:1] == b"\n":
        return None
    try:
        objs = orjson.loads(b"[" + lines.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        return None
    if len(objs) != lines.count(b"\n") + 1 or set(map(type, objs)) != {dict}:
        return None  # an item per line, each an object
    return objs  # type: ignore[no-any-return]


def _error_text(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except (ValueError, AttributeError):
        return body


def _decode_line(line: bytes, url: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError:
        text = line[:100].decode("utf-8", "replace")
        raise BackendError("protocol", f"{url} sent a line that is not JSON: {text!r}. Is this really ollama?",
                           url=url) from None
    if not isinstance(obj, dict):
        raise BackendError("protocol", f"{url} sent {type(obj).__name__} where ollama sends objects", url=url)
    return obj

