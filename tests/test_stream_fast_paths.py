"""The stream decoders' fast paths must give exactly what the event-by-event paths give.

Both backends take an ordinary batch of events in one go (one replace + one parse, a few list
comprehensions) and fall back to the careful loop for anything unusual. Here random streams,
cut into random chunks, are fed both ways and every field of the answer is compared.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.backends import ollama, openai_compat

pieces_strategy = st.lists(st.one_of(st.none(), st.text(max_size=8)), min_size=0, max_size=30)


def _sse(pieces: list[str | None], finish: str | None, extra: dict, done: bool, odd: str) -> bytes:
    events = [{"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
              for p in pieces]
    events.append({"id": "x", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], **extra})
    if odd == "empty-choices":
        events.append({"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    if odd == "no-choices":
        events.insert(len(events) // 2, {"id": "x"})
    if odd == "two-finishes":
        events.insert(0, {"model": "m", "choices": [{"delta": {"content": "a"}, "finish_reason": "length"}]})
    if odd == "number-content":
        events.insert(0, {"choices": [{"delta": {"content": 7}}]})
    body = b"".join(b"data: " + json.dumps(e, ensure_ascii=odd != "raw-utf8").encode() + b"\n\n" for e in events)
    if odd == "comment":
        body = b": keep-alive\n\n" + body
    if odd == "crlf":
        body = body.replace(b"\n", b"\r\n")
    if odd == "error":
        body += b'data: {"error": {"message": "boom"}}\n\n'
    return body + (b"data: [DONE]\n\n" if done else b"")


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def _feed_openai(data: bytes, cuts: list[int], max_bytes: int, fast: bool, monkeypatch) -> dict:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(openai_compat, "_single_line_events", lambda data: None)
            patch.setattr(openai_compat._Answer, "_take_whole", lambda *args: False)
        answer = openai_compat._Answer(0.0, max_bytes)
        carry = b""
        chunks = _cut(data, cuts)
        outcome: object = None
        try:
            for index, chunk in enumerate(chunks):  # fed a chunk at a time, as under the byte cap
                carry = answer.feed(carry, [chunk], [float(index + 1)], "u", None,
                                    final=index == len(chunks) - 1)
                if answer.done or answer.capped:
                    break
        except Exception as exc:  # noqa: BLE001 - compared, not hidden
            outcome = (type(exc).__name__, str(exc))
        return {"text": "".join(answer.pieces), "outcome": outcome, "ttft": answer.ttft,
                **{k: getattr(answer, k) for k in ("size", "capped", "done", "finish", "usage", "timings",
                                                   "server_model", "events")}}


@settings(max_examples=150, deadline=None)
@given(pieces=pieces_strategy, finish=st.sampled_from([None, "stop", "length"]),
       extra=st.sampled_from([{}, {"timings": {"predicted_n": 3}}, {"usage": None}, {"usage": {"prompt_tokens": 1}}]),
       done=st.booleans(),
       odd=st.sampled_from(["", "", "", "raw-utf8", "two-finishes", "empty-choices", "no-choices", "number-content", "comment",
                            "crlf", "error"]),
       cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
       max_bytes=st.sampled_from([10_000, 40, 5]))
def test_openai_fast_path_gives_what_the_event_loop_gives(pieces, finish, extra, done, odd, cuts, max_bytes,
                                                           monkeypatch_session) -> None:
    data = _sse(pieces, finish, extra, done, odd)
    assert (_feed_openai(data, cuts, max_bytes, True, monkeypatch_session)
            == _feed_openai(data, cuts, max_bytes, False, monkeypatch_session))


@pytest.mark.parametrize("odd", ["", "raw-utf8", "two-finishes", "empty-choices", "no-choices", "number-content",
                                 "comment", "crlf", "error"])
@pytest.mark.parametrize("extra", [{}, {"timings": {"predicted_n": 3}}, {"usage": {"prompt_tokens": 1}}])
def test_openai_fast_path_on_each_odd_shape(odd, extra, monkeypatch_session) -> None:
    data = _sse(["Hel", None, "lo ", "wörld"], "stop", extra, True, odd)
    for cuts in ([], [7], [len(data) - 3]):
        assert (_feed_openai(data, cuts, 10_000, True, monkeypatch_session)
                == _feed_openai(data, cuts, 10_000, False, monkeypatch_session))


def _ndjson(pieces: list[str | None], odd: str) -> bytes:
    lines = [{"model": "m", "message": {"role": "assistant", "content": p or ""}, "done": False} for p in pieces]
    lines.append({"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
                  "done_reason": "stop", "eval_count": len(pieces), "total_duration": 12345})
    if odd == "no-message":
        lines.insert(len(lines) // 2, {"model": "m", "done": False})
    body = b"".join(json.dumps(line, ensure_ascii=odd != "raw-utf8").encode() + b"\n" for line in lines)
    if odd == "blank-lines":
        body = body.replace(b"\n", b"\n\n", 3)
    if odd == "error":
        body = b'{"error": "model not found"}\n' + body
    if odd == "crlf":
        body = body.replace(b"\n", b"\r\n")
    if odd == "spaces":
        body = body.replace(b"\n", b"  \n ")
    return body


def _feed_ollama(data: bytes, cuts: list[int], max_bytes: int, fast: bool, monkeypatch) -> dict:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(ollama, "_plain_lines", lambda lines: None)
            patch.setattr(ollama._Answer, "_take_whole", lambda *args: False)
        answer = ollama._Answer(0.0, max_bytes)
        carry = b""
        outcome: object = None
        try:
            for index, chunk in enumerate(_cut(data, cuts)):
                carry = answer.feed(carry, [chunk], [float(index + 1)], "u")
                if answer.final is not None or answer.capped:
                    break
        except Exception as exc:  # noqa: BLE001
            outcome = (type(exc).__name__, str(exc))
        return {"text": "".join(answer.pieces), "outcome": outcome, "ttft": answer.ttft, "size": answer.size,
                "capped": answer.capped, "final": answer.final, "carry": carry}


@settings(max_examples=150, deadline=None)
@given(pieces=pieces_strategy, odd=st.sampled_from(["", "", "raw-utf8", "no-message", "blank-lines", "error", "crlf",
                                                   "spaces"]),
       cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
       max_bytes=st.sampled_from([10_000, 40, 5]))
def test_ollama_fast_path_gives_what_the_line_loop_gives(pieces, odd, cuts, max_bytes, monkeypatch_session) -> None:
    data = _ndjson(pieces, odd)
    assert (_feed_ollama(data, cuts, max_bytes, True, monkeypatch_session)
            == _feed_ollama(data, cuts, max_bytes, False, monkeypatch_session))


def test_the_fast_path_is_taken_for_an_ordinary_stream(monkeypatch) -> None:
    """Guard against the fast path silently never firing (the equality tests would still pass)."""
    data = _sse(["Hel", "lo"], "stop", {}, True, "")
    taken: list[bool] = []
    original = openai_compat._Answer._take_whole
    monkeypatch.setattr(openai_compat._Answer, "_take_whole",
                        lambda self, *args: taken.append(original(self, *args)) or taken[-1])
    answer = openai_compat._Answer(0.0, 1000)
    answer.feed(b"", [data], [1.0], "u", None)
    assert openai_compat._single_line_events(data) is not None
    assert taken == [True] and "".join(answer.pieces) == "Hello" and answer.done and answer.finish == "stop"


def test_done_alone_in_a_batch_ends_the_answer() -> None:
    answer = openai_compat._Answer(0.0, 1000)
    rest = answer.feed(b"", [_sse(["Hi"], "stop", {}, False, "")], [1.0], "u", None)
    assert not answer.done
    answer.feed(rest, [b"data: [DONE]\n\n"], [2.0], "u", None)
    assert answer.done and "".join(answer.pieces) == "Hi"


@pytest.fixture(scope="module")
def monkeypatch_session():
    """hypothesis runs many examples per test call: a module-wide MonkeyPatch, used only
    through `.context()` so that nothing leaks between examples."""
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def _serve_once(body: bytes, headers: dict[str, str]) -> tuple[str, "threading.Thread"]:
    """A one-request HTTP server on a free port that answers `body` with `headers`."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, rest = request.partition(b"\r\n\r\n")
            length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), b"0"))
            while len(rest) < length:
                rest += conn.recv(65536)
            lines = [b"HTTP/1.1 200 OK", f"Content-Length: {len(body)}".encode(), b"Connection: close"]
            lines += [f"{k}: {v}".encode() for k, v in headers.items()]
            conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_a_compressed_stream_is_decompressed(protocol: str) -> None:
    """Bodies are read raw for speed, except when the server (or a proxy) compressed them."""
    import asyncio
    import gzip

    from harness.models import ChatRequest, GenerationParams

    if protocol == "openai":
        plain = _sse(["Hel", "lo"], "stop", {}, True, "")
        content_type = "text/event-stream"
    else:
        plain = _ndjson(["Hel", "lo"], "")
        content_type = "application/x-ndjson"
    url, thread = _serve_once(gzip.compress(plain), {"Content-Encoding": "gzip", "Content-Type": content_type})

    async def call() -> str:
        if protocol == "openai":
            backend = openai_compat.OpenAICompatBackend("t", url + "/v1")
        else:
            backend = ollama.OllamaBackend("t", url)
        try:
            request = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},), params=GenerationParams())
            return (await backend.complete(request)).text
        finally:
            await backend.aclose()

    assert asyncio.run(call()) == "Hello"
    thread.join(5)


@pytest.mark.parametrize("bad", [b'{"a": 1},{"b": 2}\n', b'{"a": 1}, 3\n', b'[{"a": 1}]\n', b'{"a": 1} {"b": 2}\n'])
def test_a_line_that_is_not_one_object_is_named_not_taken(bad: bytes, monkeypatch_session) -> None:
    """One replace turns lines into an array; a line holding two values must not pass for two lines."""
    data = _ndjson(["a"], "").replace(b"\n", b"\n" + bad, 1)
    fast = _feed_ollama(data, [], 10_000, True, monkeypatch_session)
    assert fast == _feed_ollama(data, [], 10_000, False, monkeypatch_session)
    assert fast["outcome"] is not None and fast["outcome"][0] == "BackendError"
