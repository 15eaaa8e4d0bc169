"""OllamaBackend against a real local server speaking ollama's native API."""

from __future__ import annotations

import time

import pytest

from conftest import SIMPLE_SCHEMA, call_backend, run_async
from harness.backends.base import BackendError
from harness.backends.ollama import DEFAULT_OLLAMA_HOST, OllamaBackend, ollama_host_from_env
from harness.models import ChatRequest, GenerationParams
from servers import OLLAMA_BASE_LOAD_NS, Behaviour, closed_port_url, ollama_server, split_pieces, token_count

LONG_OUTPUT = '{"name": "apple pie with cream", "qty": 3, "notes": "one two three four five six"}'


def make_request(schema: dict | None = None, model: str = "llama2", **params) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=({"role": "system", "content": "be terse"}, {"role": "user", "content": "give JSON"}),
        params=GenerationParams(**params),
        schema=schema,
        schema_name="items",
    )


def test_text_is_assembled_from_ndjson_pieces() -> None:
    assert len(split_pieces(LONG_OUTPUT)) > 3
    with ollama_server(Behaviour(outputs=[LONG_OUTPUT])) as server:
        completion = call_backend(OllamaBackend("o", server.url), make_request())
        sent = server.requests[0]
    assert completion.text == LONG_OUTPUT
    assert completion.finish_reason == "stop"
    assert completion.server_model == "llama2"
    assert completion.capped is False
    assert sent["stream"] is True
    assert sent["model"] == "llama2"
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_ttft_measured_and_not_after_total() -> None:
    behaviour = Behaviour(outputs=[LONG_OUTPUT], delay_s=0.06, chunk_delay_s=0.02)
    pieces = len(split_pieces(LONG_OUTPUT))
    with ollama_server(behaviour) as server:
        completion = call_backend(OllamaBackend("o", server.url), make_request())
    assert completion.ttft_s is not None
    assert 0.05 <= completion.ttft_s <= completion.total_s
    assert completion.total_s - completion.ttft_s >= 0.02 * (pieces - 1) * 0.8


def test_token_counts_and_nanosecond_timings_recorded() -> None:
    with ollama_server(Behaviour(outputs=[LONG_OUTPUT], prompt_tokens=41, delay_s=0.05)) as server:
        completion = call_backend(OllamaBackend("o", server.url), make_request())
    timings = completion.server_timings
    assert completion.prompt_tokens == 41 == timings["prompt_eval_count"]
    assert completion.output_tokens == token_count(LONG_OUTPUT) == timings["eval_count"]
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(timings[key], int), key  # nanoseconds, verbatim
    assert timings["load_duration"] == OLLAMA_BASE_LOAD_NS + 50_000_000
    assert completion.load_s == pytest.approx(timings["load_duration"] / 1e9)
    assert completion.load_s == pytest.approx(0.051)
    assert completion.total_s < 5  # seconds, not nanoseconds


def test_stream_false_path() -> None:
    with ollama_server(Behaviour(outputs=[LONG_OUTPUT], prompt_tokens=9)) as server:
        completion = call_backend(OllamaBackend("o", server.url), make_request(), stream=False)
        sent = server.requests[0]
    assert sent["stream"] is False
    assert completion.text == LONG_OUTPUT
    assert completion.ttft_s is None  # no first token to time without streaming
    assert completion.finish_reason == "stop"
    assert completion.prompt_tokens == 9
    assert completion.output_tokens == token_count(LONG_OUTPUT)
    assert completion.load_s == pytest.approx(OLLAMA_BASE_LOAD_NS / 1e9)


def test_stream_false_length_done_reason() -> None:
    with ollama_server(Behaviour(outputs=['{"name": "ap'], finish_reason="length")) as server:
        completion = call_backend(OllamaBackend("o", server.url), make_request(), stream=False)
    assert completion.finish_reason == "length"
    assert completion.text == '{"name": "ap'


def test_length_done_reason_streamed() -> None:
    with ollama_server(Behaviour(outputs=['{"name": "apple", "qty'], finish_reason="length")) as server:
        completion = call_backend(OllamaBackend("o", server.url), make_request())
    assert completion.finish_reason == "length"
    assert completion.capped is False


def test_options_and_free_mode_body() -> None:
    with ollama_server() as server:
        call_backend(OllamaBackend("o", server.url), make_request(temperature=0.3, max_tokens=77, seed=5, top_p=0.9))
        sent = server.requests[0]
    assert sent["options"] == {"temperature": 0.3, "num_predict": 77, "seed": 5, "top_p": 0.9}
    assert "format" not in sent


def test_constrained_request_sends_format_schema() -> None:
    with ollama_server() as server:
        call_backend(OllamaBackend("o", server.url), make_request(schema=SIMPLE_SCHEMA))
        sent = server.requests[0]
    assert sent["format"] == SIMPLE_SCHEMA


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retryable_with_status(status: int) -> None:
    with ollama_server(Behaviour(statuses=[status])) as server:
        with pytest.raises(BackendError) as info:
            call_backend(OllamaBackend("o", server.url), make_request())
    err = info.value
    assert (err.kind, err.status, err.retryable) == ("http_status", status, True)
    assert f"HTTP {status}" in err.message and "injected status" in err.message  # ollama's {"error"} text shown


def test_429_with_retry_after() -> None:
    with ollama_server(Behaviour(statuses=[429], retry_after=3)) as server:
        with pytest.raises(BackendError) as info:
            call_backend(OllamaBackend("o", server.url), make_request())
    assert (info.value.status, info.value.retryable, info.value.retry_after) == (429, True, 3.0)


def test_bad_request_is_not_retryable() -> None:
    with ollama_server(Behaviour(statuses=[400])) as server:
        with pytest.raises(BackendError) as info:
            call_backend(OllamaBackend("o", server.url), make_request())
    assert info.value.status == 400 and info.value.retryable is False


@pytest.mark.parametrize("stream", [True, False])
def test_dropped_connection_is_retryable_connection_error(stream: bool) -> None:
    with ollama_server(Behaviour(outputs=[LONG_OUTPUT], fault_rate=1.0, faults=("reset",))) as server:
        with pytest.raises(BackendError) as info:
            call_backend(OllamaBackend("o", server.url), make_request(), stream=stream)
    assert info.value.kind == "connection"
    assert info.value.retryable is True
    assert server.url in info.value.message


def test_garbage_body_is_a_clear_protocol_error() -> None:
    with ollama_server(Behaviour(fault_rate=1.0, faults=("garbage",))) as server:
        with pytest.raises(BackendError) as info:
            call_backend(OllamaBackend("o", server.url), make_request())
    err = info.value
    assert err.kind == "protocol"
    assert "not JSON" in err.message and "ollama" in err.message
    assert server.url in err.message


def test_unreachable_base_url_names_the_url_and_what_to_try() -> None:
    url = closed_port_url()
    with pytest.raises(BackendError) as info:
        call_backend(OllamaBackend("o", url), make_request())
    err = info.value
    assert err.kind == "connection" and err.retryable
    assert url in err.message
    assert "ollama serve" in err.message and "OLLAMA_HOST" in err.message


@pytest.mark.parametrize("how", ["404 page", "base url ends in /api"])
def test_wrong_base_url_says_http_404_and_check_base_url(how: str) -> None:
    behaviour = Behaviour(body_404_page=how == "404 page")
    with ollama_server(behaviour) as server:
        url = server.url if how == "404 page" else server.url + "/api"
        with pytest.raises(BackendError) as info:
            call_backend(OllamaBackend("o", url), make_request())
    err = info.value
    assert err.status == 404
    assert "HTTP 404" in err.message and "base URL" in err.message
    assert "Extra data" not in err.message and "not JSON" not in err.message
    assert "ollama pull" not in err.message  # it is not a missing model


def test_unknown_model_says_model_not_found() -> None:
    with ollama_server(models=("llama2:latest",)) as server:
        with pytest.raises(BackendError) as info:
            call_backend(OllamaBackend("o", server.url), make_request(model="mistral"))
    err = info.value
    assert err.status == 404 and err.retryable is False
    assert 'model "mistral" not found' in err.message
    assert "ollama pull" in err.message


def test_ollama_host_env_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    with ollama_server() as server:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")  # ollama's own form, no scheme
        backend = OllamaBackend("o")
        assert backend.base_url == server.url
        completion = call_backend(backend, make_request())
        assert completion.text and server.calls == 1


@pytest.mark.parametrize("value, expected", [
    ("", DEFAULT_OLLAMA_HOST),
    ("10.0.0.5:9999", "http://10.0.0.5:9999"),
    ("10.0.0.5", "http://10.0.0.5:11434"),
    ("http://gpu-box:8080", "http://gpu-box:8080"),
    ("http://gpu-box", "http://gpu-box:80"),
    ("https://ollama.example.com", "https://ollama.example.com:443"),
    ("[::1]", "http://[::1]:11434"),
    ("[::1]:4000", "http://[::1]:4000"),
    ("0.0.0.0", "http://0.0.0.0:11434"),
])
def test_ollama_host_forms(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    assert ollama_host_from_env().rstrip("/") == expected


def test_oversized_output_is_capped() -> None:
    with ollama_server(Behaviour(fault_rate=1.0, faults=("oversized",))) as server:
        backend = OllamaBackend("o", server.url, max_output_bytes=400_000)
        started = time.perf_counter()
        completion = call_backend(backend, make_request())
    assert completion.capped is True
    assert completion.finish_reason == "length"
    assert 0 < len(completion.text.encode()) <= 400_000
    assert time.perf_counter() - started < 10


def test_list_models_and_identity() -> None:
    with ollama_server(models=("llama2:latest", "qwen2.5:7b")) as server:
        backend = OllamaBackend("o", server.url)

        async def go():
            try:
                return await backend.list_models(), await backend.model_identity("llama2")
            finally:
                await backend.aclose()

        models, identity = run_async(go)
    assert models == ["llama2:latest", "qwen2.5:7b"]
    assert identity["name"] == "llama2:latest"
    assert len(identity["digest"]) == 64 and identity["size"] > 0


def test_oversized_output_is_capped_without_streaming_too() -> None:
    with ollama_server(Behaviour(fault_rate=1.0, faults=("oversized",))) as server:
        backend = OllamaBackend("o", server.url, max_output_bytes=300_000)
        completion = call_backend(backend, make_request(), stream=False)
    assert completion.capped is True
    assert completion.finish_reason == "length"
    assert len(completion.text.encode()) == 300_000
    assert completion.server_timings["eval_count"] >= 1
