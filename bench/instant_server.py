"""A fast fake LLM server for the benchmarks: answers at once (or with a set per-piece delay).

One asyncio.Protocol HTTP/1.1 keep-alive server (uvloop when installed) that speaks both
wire protocols harness uses, on the same port:

    POST /v1/chat/completions   OpenAI-compatible SSE (chunked), llama.cpp `timings` + usage
    POST /api/chat              ollama NDJSON (chunked), with total/load/prompt/eval durations
    GET  /v1/models, /api/tags, /api/version, /health, /props

Answers are canned: a cycle of small contact-card outputs in `[CONTENT]` tags, by default
two valid and one broken (trailing comma, single quotes, missing brace, a missing closing
tag...), each split into token-sized pieces, one SSE event / NDJSON line per piece like a
real server. The whole instant answer is one pre-built byte string (only the
response id is not per request), so the server costs a few microseconds per request.

Run it in its own process (so it has its own core):

    python bench/instant_server.py --port 0          # prints "READY <port>" then serves

`--piece-delay-ms D` sends each piece D ms after the previous one (generation time),
and then the server-side durations (ollama total_duration, llama.cpp prompt_ms +
predicted_ms) are measured for real, from the request's last byte to the final piece.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time

MODEL = "bench-model"

VALID = {
    "name": "Priya Raman",
    "email": "priya.raman@haldenmedical.com",
    "phone": "+44 161 496 0734",
    "company": "Halden Medical Supplies Ltd.",
    "title": "Senior Procurement Officer",
}

_VALID_TEXT = "[CONTENT]\n" + json.dumps(VALID, indent=2) + "\n[/CONTENT]"
# Broken the ways small models break MetaGPT-style outputs; each needs a different repair.
BROKEN = [
    # trailing comma, closing tag missing
    '[CONTENT]\n{"name": "Priya Raman", "email": "priya.raman@haldenmedical.com", "phone": "+44 161 496 0734",'
    ' "company": "Halden Medical Supplies Ltd.", "title": "Senior Procurement Officer",}\n',
    # single quotes, prose before the tag
    "Here is the contact card:\n[CONTENT]\n{'name': 'Priya Raman', 'email': 'priya.raman@haldenmedical.com', "
    "'phone': '+44 161 496 0734', 'company': 'Halden Medical Supplies Ltd.', 'title': 'Senior Procurement Officer'}"
    "\n[/CONTENT]",
    # truncated: last brace missing, wrong key case
    '[CONTENT]\n{"Name": "Priya Raman", "Email": "priya.raman@haldenmedical.com", "phone": "+44 161 496 0734", '
    '"company": "Halden Medical Supplies Ltd.", "title": "Senior Procurement Officer"\n[/CONTENT]',
    # in a ```json fence inside the tags, with a comment
    '[CONTENT]\n```json\n{\n  "name": "Priya Raman", // from the signature\n  "email": "priya.raman@haldenmedical.com",'
    '\n  "phone": null,\n  "company": "Halden Medical Supplies Ltd.",\n  "title": "Senior Procurement Officer"\n}\n```'
    "\n[/CONTENT]",
]

_TOKEN = re.compile(r"\s+|[A-Za-z]+|\d+|[^\sA-Za-z\d]")


def outputs(valid_per_broken: int = 2) -> list[str]:
    """The answer cycle: `valid_per_broken` valid outputs, then one broken one, rotating the broken kinds."""
    cycle: list[str] = []
    for broken in BROKEN:
        cycle += [_VALID_TEXT] * valid_per_broken + [broken]
    return cycle


PIECES = 0  # pieces per answer; 0: token-sized pieces (set by --pieces)


def pieces(text: str) -> list[str]:
    """Token-sized pieces (about what one llama.cpp/ollama event carries), or PIECES equal ones."""
    if PIECES <= 0:
        return _TOKEN.findall(text)
    step = -(-len(text) // PIECES)
    return [text[i:i + step] for i in range(0, len(text), step)]


def _chunk(data: bytes) -> bytes:
    return b"%X\r\n%s\r\n" % (len(data), data)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- canned bodies -------------------------------------------------------------------

def openai_events(text: str, prompt_ms: float, predicted_ms: float, prompt_n: int = 180) -> list[bytes]:
    """SSE events as llama.cpp sends them (role, one per piece, finish, usage+timings, [DONE])."""
    parts = pieces(text)
    created = 1_700_000_000
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created, "model": MODEL}

    def event(choices: list, **extra: object) -> bytes:
        return b"data: " + _dumps({**base, "choices": choices, **extra}) + b"\n\n"

    out = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    out += [event([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in parts]
    out.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    n = len(parts)
    timings = {"prompt_n": prompt_n, "prompt_ms": round(prompt_ms, 3),
               "prompt_per_second": round(prompt_n / max(prompt_ms, 1e-3) * 1000, 3),
               "predicted_n": n, "predicted_ms": round(predicted_ms, 3),
               "predicted_per_second": round(n / max(predicted_ms, 1e-3) * 1000, 3)}
    out.append(event([], usage={"prompt_tokens": prompt_n, "completion_tokens": n, "total_tokens": prompt_n + n},
                     timings=timings))
    out.append(b"data: [DONE]\n\n")
    return out


def ollama_lines(text: str, total_ns: int, prompt_n: int = 180) -> list[bytes]:
    parts = pieces(text)
    created = "2025-01-01T00:00:00.000000Z"
    out = [_dumps({"model": MODEL, "created_at": created, "message": {"role": "assistant", "content": p},
                   "done": False}) + b"\n" for p in parts]
    load = 100_000
    prompt_ns = max(total_ns // 10, 1)
    out.append(_dumps({"model": MODEL, "created_at": created, "message": {"role": "assistant", "content": ""},
                       "done": True, "done_reason": "stop", "total_duration": total_ns, "load_duration": load,
                       "prompt_eval_count": prompt_n, "prompt_eval_duration": prompt_ns,
                       "eval_count": len(parts), "eval_duration": max(total_ns - load - prompt_ns, 1)}) + b"\n")
    return out


SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
NDJSON_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")


def _plain(status: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def canned(kind: str, texts: list[str]) -> list[bytes]:
    """Whole instant responses, headers included, one per output of the cycle."""
    out = []
    for text in texts:
        if kind == "openai":
            body = b"".join(_chunk(e) for e in openai_events(text, 0.5, 1.0)) + b"0\r\n\r\n"
            out.append(SSE_HEAD + body)
        else:
            body = b"".join(_chunk(line) for line in ollama_lines(text, 1_500_000)) + b"0\r\n\r\n"
            out.append(NDJSON_HEAD + body)
    return out


GETS = {
    b"/v1/models": _plain("200 OK", _dumps({"object": "list", "data": [
        {"id": MODEL, "object": "model", "created": 1_700_000_000, "owned_by": "bench"}]})),
    b"/api/tags": _plain("200 OK", _dumps({"models": [{"name": MODEL + ":latest", "model": MODEL + ":latest",
                                                        "digest": "0" * 64, "size": 1, "details": {}}]})),
    b"/api/version": _plain("200 OK", b'{"version":"0.5.7"}'),
    b"/health": _plain("200 OK", b'{"status":"ok"}'),
    b"/props": _plain("200 OK", b'{"total_slots":64}'),
    b"/stats": b"",  # filled per request
}
NOT_FOUND = _plain("404 Not Found", b"404 page not found", "text/plain")


class Stats:
    requests = 0


class Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; request bodies by Content-Length."""

    def __init__(self, server: "Config"):
        self.cfg = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            first, _, rest = head.partition(b"\r\n")
            length = 0
            lower = rest.lower()
            at = lower.find(b"content-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at)
                length = int(lower[at + 15: stop if stop >= 0 else None])
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4: end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            method, _, target = first.partition(b" ")
            path = target.partition(b" ")[0].partition(b"?")[0]
            self.handle(method, path, body)

    def handle(self, method: bytes, path: bytes, body: bytes) -> None:
        cfg = self.cfg
        transport = self.transport
        assert transport is not None
        if method == b"POST" and path in (b"/v1/chat/completions", b"/api/chat"):
            Stats.requests += 1
            kind = "openai" if path[1] == ord("v") else "ollama"
            index = cfg.counters[kind]
            cfg.counters[kind] = index + 1
            if cfg.piece_delay_s > 0:
                asyncio.ensure_future(self.slow(kind, index % len(cfg.texts)))
            else:
                transport.write(cfg.bodies[kind][index % len(cfg.bodies[kind])])
        elif method == b"GET" and path == b"/stats":
            transport.write(_plain("200 OK", _dumps({"requests": Stats.requests, "pid": os.getpid(),
                                                      "cpu_s": time.process_time()})))
        elif method == b"GET" and path in GETS:
            transport.write(GETS[path])
        else:
            transport.write(NOT_FOUND)

    async def slow(self, kind: str, index: int) -> None:
        """A streamed answer with real generation time; server timings are measured, not canned."""
        transport = self.transport
        assert transport is not None
        started = time.perf_counter_ns()
        text = self.cfg.texts[index]
        parts = pieces(text)
        transport.write(SSE_HEAD if kind == "openai" else NDJSON_HEAD)
        if kind == "openai":
            head = openai_events("", 0, 0)[0]
            transport.write(_chunk(head))
        first_ns = None
        for n, part in enumerate(parts):
            await asyncio.sleep(self.cfg.piece_delay_s)
            if kind == "openai":
                event = b"data: " + _dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                                            "created": 1_700_000_000, "model": MODEL,
                                            "choices": [{"index": 0, "delta": {"content": part},
                                                         "finish_reason": None}]}) + b"\n\n"
            else:
                event = _dumps({"model": MODEL, "created_at": "2025-01-01T00:00:00.000000Z",
                                "message": {"role": "assistant", "content": part}, "done": False}) + b"\n"
            if first_ns is None:
                first_ns = time.perf_counter_ns()
            transport.write(_chunk(event))
        done_ns = time.perf_counter_ns()
        first_ns = first_ns or done_ns
        if kind == "openai":
            prompt_ms = (first_ns - started) / 1e6
            predicted_ms = (done_ns - first_ns) / 1e6
            tail = openai_events(text, prompt_ms, predicted_ms)[-3:]
        else:
            tail = ollama_lines(text, done_ns - started)[-1:]
        transport.write(b"".join(_chunk(e) for e in tail) + b"0\r\n\r\n")


class Config:
    def __init__(self, texts: list[str], piece_delay_s: float):
        self.texts = texts
        self.piece_delay_s = piece_delay_s
        self.bodies = {"openai": canned("openai", texts), "ollama": canned("ollama", texts)}
        self.counters = {"openai": 0, "ollama": 0}


async def serve(host: str, port: int, cfg: Config) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(cfg), host, port, backlog=1024, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--valid-per-broken", type=int, default=2,
                        help="valid outputs per broken one in the answer cycle (default 2: one third broken)")
    parser.add_argument("--pieces", type=int, default=0,
                        help="streamed pieces per answer (default 0: one per token, ~90, like llama.cpp and ollama)")
    parser.add_argument("--piece-delay-ms", type=float, default=0.0,
                        help="delay before each streamed piece (default 0: instant canned answers)")
    args = parser.parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    global PIECES
    PIECES = args.pieces
    cfg = Config(outputs(args.valid_per_broken), args.piece_delay_ms / 1000.0)
    asyncio.run(serve(args.host, args.port, cfg))


if __name__ == "__main__":
    main(sys.argv[1:])
