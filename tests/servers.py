"""Real local HTTP servers that speak the ollama and OpenAI-compatible protocols, for tests.

Nothing here mocks the harness's own client: tests point a backend at `server.url`
and the bytes go over a real TCP socket on 127.0.0.1. Each server runs a stdlib
`ThreadingHTTPServer` (HTTP/1.1, keep-alive, daemon threads) in a background thread.

    with openai_server(Behaviour(outputs=['{"a": 1}'])) as server:
        backend = OpenAICompatBackend("t", server.url + "/v1")
        ...
        assert server.requests[0]["stream"] is True

`Behaviour` is read afresh on every request, so a test may swap or mutate
`server.behaviour` between calls.

Details tests may rely on:
- `outputs` as a list is cycled by the number of *normal* answers given so far (a
  request answered with a status from `statuses` or with a fault does not advance it).
- ollama's `load_duration` is `delay_s` (the delay plays the cold model load) plus
  `OLLAMA_BASE_LOAD_NS`; `prompt_eval_count` is `prompt_tokens`; `eval_count` is the
  number of whitespace-separated tokens of the output.
- OpenAI usage: `completion_tokens` (and llama.cpp `timings.predicted_n`) is the same
  whitespace token count; `prompt_tokens` (and `timings.prompt_n`) is `prompt_tokens`.
- `requests` holds the JSON body of every POST (`headers` their lower-cased headers),
  `paths` every (method, path);
  `calls`, `in_flight` and `max_in_flight` count chat requests only.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

ALL_FAULTS = ("500", "429", "reset", "slow_drip", "garbage", "oversized")
OLLAMA_BASE_LOAD_NS = 1_000_000  # 1 ms: a warm model still reports some load time
OLLAMA_VERSION = "0.5.7"
OVERSIZED_BYTES = 3 * 1024 * 1024 + 4096  # "a model that loops": a bit over 3 MiB
OVERSIZED_PIECE = 64 * 1024
SLOW_DRIP_DELAY_S = 0.01
GARBAGE_BODY = b"<html><body>\x00\x01 definitely not json {{{ nor SSE </body></html>\n" * 3


@dataclass
class Behaviour:
    """How a fake server answers; may be replaced or mutated between requests."""

    outputs: list[str] | Callable[[dict], str] = field(default_factory=lambda: ['{"ok": true}'])
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    statuses: list[int] = field(default_factory=list)
    retry_after: float | None = None
    fault_rate: float = 0.0
    faults: tuple[str, ...] = ALL_FAULTS
    seed: int = 0
    finish_reason: str = "stop"
    body_404_page: bool = False
    prompt_tokens: int = 12


class _Reset(Exception):
    """Raised inside a handler after the socket was torn down on purpose."""


def split_pieces(text: str, max_pieces: int = 16) -> list[str]:
    """Split an output into several streamed pieces that join back to exactly `text`."""
    if not text:
        return []
    tokens = re.findall(r"\s*\S+|\s+", text)
    if len(tokens) == 1 and len(text) > 1:
        half = len(text) // 2
        tokens = [text[:half], text[half:]]
    if len(tokens) <= max_pieces:
        return tokens
    per = -(-len(tokens) // max_pieces)
    return ["".join(tokens[i : i + per]) for i in range(0, len(tokens), per)]


def token_count(text: str) -> int:
    return len(text.split())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, fake: "FakeServer"):
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: clients hang up on purpose
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
    timeout = 30  # idle keep-alive connections end eventually
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.fake._track(self.connection, False)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (_Reset, ConnectionError, BrokenPipeError, TimeoutError, OSError):
            self.close_connection = True

    # --- plumbing ----------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _reset(self) -> None:
        """Tear the TCP connection down with an RST (SO_LINGER 0), mid-response."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        for closable in (self.rfile, self.wfile, self.connection):
            try:
                closable.close()
            except OSError:
                pass
        self.close_connection = True
        raise _Reset()

    # --- dispatch ----------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        raw = self._read_body() if method == "POST" else b""
        path = self.path.split("?", 1)[0]
        fake._log_path(method, path)
        body: Any = None
        if method == "POST":
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            fake._log_request(body if body is not None else {"_unparsed": raw.decode("utf-8", "replace")},
                              {k.lower(): v for k, v in self.headers.items()})
        behaviour = fake.behaviour
        if behaviour.body_404_page:
            self._send(404, b"404 page not found", "text/plain; charset=utf-8")
            return
        handler = fake._routes().get((method, path))
        if handler is None:
            self._not_found(path)
            return
        if method == "POST" and not isinstance(body, dict):
            self._error(400, "request body is not a JSON object")
            return
        handler(self, body)

    def _not_found(self, path: str) -> None:
        self._send(404, b"404 page not found", "text/plain; charset=utf-8")

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.server.fake._error(self, status, message, headers)


class FakeServer:
    """A running fake LLM server. Use as a context manager, or call `.stop()`."""

    protocol = "base"

    def __init__(self, behaviour: Behaviour | None = None, *, models: tuple[str, ...] = ()):
        self.behaviour = behaviour or Behaviour()
        self.models = tuple(models)
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self._answers = 0
        self._lock = threading.Lock()
        self._rng: random.Random | None = None
        self._rng_owner: tuple[int, int] | None = None
        self._connections: set[socket.socket] = set()
        self._httpd = _Server(self)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-{self.protocol}-{self.port}", daemon=True)
        self._thread.start()
        self._stopped = False

    # --- lifecycle ---------------------------------------------------------

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive connections: hang up
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.paths.clear()
            self.calls = self.in_flight = self.max_in_flight = self._answers = 0

    # --- bookkeeping (called from handler threads) -------------------------

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            (self._connections.add if opened else self._connections.discard)(conn)

    def _log_path(self, method: str, path: str) -> None:
        with self._lock:
            self.paths.append((method, path))

    def _log_request(self, body: dict, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)

    def _enter(self) -> None:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _plan(self, behaviour: Behaviour) -> tuple[int | None, str | None]:
        """Decide, under the lock, whether this chat request gets a status, a fault, or a normal answer."""
        with self._lock:
            if behaviour.statuses:
                return behaviour.statuses.pop(0), None
            owner = (id(behaviour), behaviour.seed)
            if self._rng is None or self._rng_owner != owner:
                self._rng, self._rng_owner = random.Random(behaviour.seed), owner
            if behaviour.fault_rate > 0 and behaviour.faults and self._rng.random() < behaviour.fault_rate:
                return None, self._rng.choice(list(behaviour.faults))
            return None, None

    def _output(self, behaviour: Behaviour, body: dict) -> str:
        if callable(behaviour.outputs):
            return behaviour.outputs(body)
        with self._lock:
            index = self._answers
            self._answers += 1
        outputs = behaviour.outputs or [""]
        return outputs[index % len(outputs)]

    # --- protocol hooks ----------------------------------------------------

    def _routes(self) -> dict[tuple[str, str], Callable[[_Handler, Any], None]]:
        raise NotImplementedError

    def _error(self, h: _Handler, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        raise NotImplementedError

    def _chat(self, h: _Handler, body: dict) -> None:
        """Shared chat flow: count, delay, statuses/faults, then the protocol's answer."""
        behaviour = self.behaviour
        self._enter()
        try:
            status, fault = self._plan(behaviour)
            if behaviour.delay_s:
                time.sleep(behaviour.delay_s)
            if status is not None and status != 200:
                headers = {}
                if behaviour.retry_after is not None and status in (429, 503):
                    headers["Retry-After"] = _header_number(behaviour.retry_after)
                self._error(h, status, f"injected status {status}", headers)
                return
            if fault == "500":
                self._error(h, 500, "injected fault: internal server error")
                return
            if fault == "429":
                retry = behaviour.retry_after if behaviour.retry_after is not None else 0
                self._error(h, 429, "injected fault: too many requests", {"Retry-After": _header_number(retry)})
                return
            if fault == "garbage":
                h._send(200, GARBAGE_BODY, "text/html")
                return
            if fault == "oversized":
                text = "a" * OVERSIZED_BYTES
                pieces = [text[i : i + OVERSIZED_PIECE] for i in range(0, len(text), OVERSIZED_PIECE)]
                self._answer(h, body, behaviour, text, pieces, chunk_delay=0.0, reset=False, finish="length")
                return
            text = self._output(behaviour, body)
            chunk_delay = behaviour.chunk_delay_s
            if fault == "slow_drip":
                chunk_delay = max(chunk_delay, SLOW_DRIP_DELAY_S)
            self._answer(h, body, behaviour, text, split_pieces(text), chunk_delay=chunk_delay,
                         reset=fault == "reset", finish=behaviour.finish_reason)
        finally:
            self._leave()

    def _answer(self, h: _Handler, body: dict, behaviour: Behaviour, text: str, pieces: list[str], *,
                chunk_delay: float, reset: bool, finish: str) -> None:
        raise NotImplementedError


def _header_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --- OpenAI-compatible ------------------------------------------------------


class OpenAIServer(FakeServer):
    """`/v1/chat/completions` (SSE or JSON), `/v1/models`, llama.cpp `/props` and `/health`."""

    protocol = "openai"

    def __init__(self, behaviour: Behaviour | None = None, *, models: tuple[str, ...] = ("test-model",),
                 total_slots: int | None = None):
        self.total_slots = total_slots
        self._ids = 0
        super().__init__(behaviour, models=models)

    def _routes(self) -> dict[tuple[str, str], Callable[[_Handler, Any], None]]:
        routes: dict[tuple[str, str], Callable[[_Handler, Any], None]] = {
            ("POST", "/v1/chat/completions"): lambda h, b: self._chat(h, b),
            ("GET", "/v1/models"): self._models,
            ("GET", "/health"): lambda h, b: h._send_json(200, {"status": "ok"}),
        }
        if self.total_slots is not None:
            routes[("GET", "/props")] = self._props
        return routes

    def _error(self, h: _Handler, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error"}.get(status, "server_error")
        h._send_json(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def _models(self, h: _Handler, body: Any) -> None:
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "test"} for m in self.models]
        h._send_json(200, {"object": "list", "data": data})

    def _props(self, h: _Handler, body: Any) -> None:
        h._send_json(200, {"total_slots": self.total_slots, "default_generation_settings": {"n_ctx": 4096},
                           "model_path": f"/models/{self.models[0] if self.models else 'model'}.gguf"})

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"chatcmpl-{self._ids}"

    def _answer(self, h: _Handler, body: dict, behaviour: Behaviour, text: str, pieces: list[str], *,
                chunk_delay: float, reset: bool, finish: str) -> None:
        model = str(body.get("model") or (self.models[0] if self.models else "test-model"))
        created = int(time.time())
        completion_tokens = token_count(text)
        started = time.perf_counter()
        usage = {"prompt_tokens": behaviour.prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": behaviour.prompt_tokens + completion_tokens}

        def timings() -> dict[str, Any]:
            predicted_ms = max((time.perf_counter() - started) * 1000.0, 0.001)
            return {"prompt_n": behaviour.prompt_tokens, "prompt_ms": 1.5,
                    "prompt_per_second": behaviour.prompt_tokens / 0.0015,
                    "predicted_n": completion_tokens, "predicted_ms": round(predicted_ms, 3),
                    "predicted_per_second": round(completion_tokens / (predicted_ms / 1000.0), 3)}

        ident = self._next_id()
        if not body.get("stream"):
            if reset:
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", "100000")
                h.end_headers()
                h.wfile.write(b'{"id": "' + ident.encode() + b'", "choices": [')
                h._reset()
            h._send_json(200, {
                "id": ident, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": usage, "timings": timings(),
            })
            return

        def event(obj: dict[str, Any]) -> None:
            h._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        h._start_chunked("text/event-stream")
        event(chunk({"role": "assistant", "content": ""}))
        for index, piece in enumerate(pieces):
            if chunk_delay and index:
                time.sleep(chunk_delay)
            event(chunk({"content": piece}))
            if reset and index >= len(pieces) // 2:
                h._reset()
        if reset:
            h._reset()
        if include_usage:
            event(chunk({}, finish))
            event({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": usage, "timings": timings()})
        else:
            event(chunk({}, finish, timings=timings()))
        h._chunk(b"data: [DONE]\n\n")
        h._end_chunked()


# --- ollama -----------------------------------------------------------------


class OllamaServer(FakeServer):
    """ollama's native API: `/api/chat` (NDJSON stream by default), `/api/tags`, `/api/version`."""

    protocol = "ollama"

    def _routes(self) -> dict[tuple[str, str], Callable[[_Handler, Any], None]]:
        return {
            ("POST", "/api/chat"): self._chat_checked,
            ("GET", "/api/tags"): self._tags,
            ("GET", "/api/version"): lambda h, b: h._send_json(200, {"version": OLLAMA_VERSION}),
            ("GET", "/"): lambda h, b: h._send(200, b"Ollama is running", "text/plain; charset=utf-8"),
            ("HEAD", "/"): lambda h, b: h._send(200, b"", "text/plain; charset=utf-8"),
        }

    def _error(self, h: _Handler, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        h._send_json(status, {"error": message}, headers)

    def known(self, model: str) -> bool:
        wanted = {model, model if ":" in model else f"{model}:latest"}
        return any(m in wanted for m in self.models)

    def _chat_checked(self, h: _Handler, body: dict) -> None:
        model = body.get("model")
        if not model:
            self._error(h, 400, "model is required")
            return
        if not self.known(str(model)):
            self._error(h, 404, f'model "{model}" not found, try pulling it first')
            return
        self._chat(h, body)

    def _tags(self, h: _Handler, body: Any) -> None:
        models = []
        for name in self.models:
            family = name.split(":")[0].rstrip("0123456789.") or "llama"
            models.append({
                "name": name,
                "model": name,
                "modified_at": "2024-05-01T10:00:00.000000000Z",
                "size": 3_825_819_519,
                "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                            "parameter_size": "7B", "quantization_level": "Q4_0"},
            })
        h._send_json(200, {"models": models})

    def _answer(self, h: _Handler, body: dict, behaviour: Behaviour, text: str, pieces: list[str], *,
                chunk_delay: float, reset: bool, finish: str) -> None:
        model = str(body["model"])
        started = time.perf_counter_ns()
        load_ns = OLLAMA_BASE_LOAD_NS + int(behaviour.delay_s * 1e9)
        prompt_eval_ns = 100_000 * max(behaviour.prompt_tokens, 1)

        def now() -> str:
            return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")

        def final(content: str) -> dict[str, Any]:
            eval_ns = max(time.perf_counter_ns() - started, 1)
            return {"model": model, "created_at": now(), "message": {"role": "assistant", "content": content},
                    "done": True, "done_reason": finish,
                    "total_duration": load_ns + prompt_eval_ns + eval_ns, "load_duration": load_ns,
                    "prompt_eval_count": behaviour.prompt_tokens, "prompt_eval_duration": prompt_eval_ns,
                    "eval_count": token_count(text), "eval_duration": eval_ns}

        if body.get("stream", True) is False:
            if reset:
                h.send_response(200)
                h.send_header("Content-Type", "application/json; charset=utf-8")
                h.send_header("Content-Length", "100000")
                h.end_headers()
                h.wfile.write(b'{"model": "' + model.encode() + b'", "created_at"')
                h._reset()
            for index in range(len(pieces)):  # generation time happens either way
                if chunk_delay and index:
                    time.sleep(chunk_delay)
            h._send_json(200, final(text))
            return

        def line(obj: dict[str, Any]) -> None:
            h._chunk(json.dumps(obj).encode() + b"\n")

        h._start_chunked("application/x-ndjson")
        for index, piece in enumerate(pieces):
            if chunk_delay and index:
                time.sleep(chunk_delay)
            line({"model": model, "created_at": now(), "message": {"role": "assistant", "content": piece},
                  "done": False})
            if reset and index >= len(pieces) // 2:
                h._reset()
        if reset:
            h._reset()
        line(final(""))
        h._end_chunked()


def openai_server(behaviour: Behaviour | None = None, *, models: tuple[str, ...] = ("test-model",),
                  total_slots: int | None = None) -> FakeServer:
    """Start an OpenAI-compatible fake on 127.0.0.1 (its `.url` has no /v1)."""
    return OpenAIServer(behaviour, models=tuple(models), total_slots=total_slots)


def ollama_server(behaviour: Behaviour | None = None, *, models: tuple[str, ...] = ("llama2:latest",)) -> FakeServer:
    """Start an ollama fake on 127.0.0.1."""
    return OllamaServer(behaviour, models=tuple(models))


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
