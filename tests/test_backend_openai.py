"""OpenAICompatBackend against a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

import time

import pytest

from conftest import SIMPLE_SCHEMA, call_backend, run_async
from harness.backends.base import BackendError
from harness.backends.openai_compat import OpenAICompatBackend
from harness.models import ChatRequest, GenerationParams
from servers import Behaviour, closed_port_url, openai_server, split_pieces, token_count

LONG_OUTPUT = '{"name": "apple pie with cream", "qty": 3, "notes": "one two three four five six"}'


def make_request(schema: dict | None = None, model: str = "test-model", **params) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=({"role": "system", "content": "be terse"}, {"role": "user", "content": "give JSON"}),
        params=GenerationParams(**params),
        schema=schema,
        schema_name="items",
    )


def backend_for(url: str, **kwargs) -> OpenAICompatBackend:
    return OpenAICompatBackend("oa", url, **kwargs)


def test_text_is_assembled_from_streamed_pieces() -> None:
    assert len(split_pieces(LONG_OUTPUT)) > 3  # the server really streams several pieces
    with openai_server(Behaviour(outputs=[LONG_OUTPUT])) as server:
        completion = call_backend(backend_for(server.url + "/v1"), make_request())
        assert completion.text == LONG_OUTPUT
        assert completion.finish_reason == "stop"
        assert completion.capped is False
        assert completion.server_model == "test-model"
        sent = server.requests[0]
        assert sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}
        assert sent["messages"][1] == {"role": "user", "content": "give JSON"}


def test_ttft_is_measured_and_not_after_total() -> None:
    behaviour = Behaviour(outputs=[LONG_OUTPUT], delay_s=0.08, chunk_delay_s=0.02)
    pieces = len(split_pieces(LONG_OUTPUT))
    with openai_server(behaviour) as server:
        completion = call_backend(backend_for(server.url + "/v1"), make_request())
    assert completion.ttft_s is not None
    assert 0.07 <= completion.ttft_s <= completion.total_s
    # the pieces after the first arrive chunk_delay apart: generation time is measured too
    assert completion.total_s - completion.ttft_s >= 0.02 * (pieces - 1) * 0.8
    assert completion.tokens_per_s is not None and completion.tokens_per_s > 0


def test_token_counts_and_server_timings_recorded() -> None:
    with openai_server(Behaviour(outputs=[LONG_OUTPUT], prompt_tokens=37)) as server:
        completion = call_backend(backend_for(server.url + "/v1"), make_request())
    assert completion.prompt_tokens == 37
    assert completion.output_tokens == token_count(LONG_OUTPUT)
    assert completion.server_timings["predicted_n"] == token_count(LONG_OUTPUT)
    assert completion.server_timings["prompt_n"] == 37
    assert {"prompt_ms", "predicted_ms", "predicted_per_second"} <= set(completion.server_timings)


def test_generation_params_are_forwarded() -> None:
    with openai_server() as server:
        call_backend(backend_for(server.url + "/v1"), make_request(temperature=0.2, max_tokens=55, seed=9, top_p=0.5))
        sent = server.requests[0]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"], sent["top_p"]) == (0.2, 55, 9, 0.5)
    assert "response_format" not in sent  # free generation is not constrained


def test_constrained_request_sends_nested_json_schema_response_format() -> None:
    with openai_server() as server:
        call_backend(backend_for(server.url + "/v1"), make_request(schema=SIMPLE_SCHEMA))
        sent = server.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == SIMPLE_SCHEMA
    assert sent["response_format"]["json_schema"]["name"] == "items"


def test_length_finish_reason_is_passed_through() -> None:
    with openai_server(Behaviour(outputs=['{"name": "ap'], finish_reason="length")) as server:
        completion = call_backend(backend_for(server.url + "/v1"), make_request())
    assert completion.finish_reason == "length"
    assert completion.capped is False
    assert completion.text == '{"name": "ap'


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retryable_with_status(status: int) -> None:
    with openai_server(Behaviour(statuses=[status])) as server:
        with pytest.raises(BackendError) as info:
            call_backend(backend_for(server.url + "/v1"), make_request())
        assert server.calls == 1  # the SDK's own retries are off: the runner owns retries
    err = info.value
    assert (err.kind, err.status, err.retryable) == ("http_status", status, True)
    assert f"HTTP {status}" in err.message and server.url in err.message


def test_429_is_retryable_and_retry_after_is_parsed() -> None:
    with openai_server(Behaviour(statuses=[429], retry_after=2)) as server:
        with pytest.raises(BackendError) as info:
            call_backend(backend_for(server.url + "/v1"), make_request())
    assert info.value.status == 429
    assert info.value.retryable is True
    assert info.value.retry_after == 2.0


def test_injected_429_fault_carries_retry_after() -> None:
    with openai_server(Behaviour(fault_rate=1.0, faults=("429",), retry_after=1.5)) as server:
        with pytest.raises(BackendError) as info:
            call_backend(backend_for(server.url + "/v1"), make_request())
    assert (info.value.status, info.value.retry_after, info.value.retryable) == (429, 1.5, True)


@pytest.mark.parametrize("status", [400, 401, 422])
def test_client_errors_are_not_retryable(status: int) -> None:
    with openai_server(Behaviour(statuses=[status])) as server:
        with pytest.raises(BackendError) as info:
            call_backend(backend_for(server.url + "/v1"), make_request())
    assert info.value.status == status
    assert info.value.retryable is False


def test_dropped_connection_is_a_retryable_connection_error() -> None:
    with openai_server(Behaviour(outputs=[LONG_OUTPUT], fault_rate=1.0, faults=("reset",))) as server:
        url = server.url + "/v1"
        with pytest.raises(BackendError) as info:
            call_backend(backend_for(url), make_request())
    assert info.value.kind == "connection"
    assert info.value.retryable is True
    assert url in info.value.message


def test_garbage_body_is_a_clear_protocol_error() -> None:
    with openai_server(Behaviour(fault_rate=1.0, faults=("garbage",))) as server:
        url = server.url + "/v1"
        with pytest.raises(BackendError) as info:
            call_backend(backend_for(url), make_request())
    err = info.value
    assert err.kind == "protocol"
    assert url in err.message
    assert "OpenAI-compatible" in err.message
    assert "Extra data" not in err.message and "Expecting value" not in err.message


def test_unreachable_base_url_names_the_url_and_what_to_try() -> None:
    url = closed_port_url() + "/v1"
    started = time.perf_counter()
    with pytest.raises(BackendError) as info:
        call_backend(backend_for(url), make_request())
    assert time.perf_counter() - started < 5
    err = info.value
    assert err.kind == "connection" and err.retryable
    assert url in err.message
    assert "--base-url" in err.message and "/v1" in err.message


def test_base_url_without_v1_says_http_404_and_check_base_url() -> None:
    with openai_server() as server:  # the real server, but the user forgot /v1
        with pytest.raises(BackendError) as info:
            call_backend(backend_for(server.url), make_request())
    err = info.value
    assert err.status == 404 and err.retryable is False
    assert "HTTP 404" in err.message
    assert "base URL" in err.message and "/v1" in err.message
    assert "Extra data" not in err.message


def test_404_page_everywhere_says_http_404_not_a_json_error() -> None:
    with openai_server(Behaviour(body_404_page=True)) as server:
        with pytest.raises(BackendError) as info:
            call_backend(backend_for(server.url + "/v1"), make_request())
    err = info.value
    assert "HTTP 404" in err.message and "base URL" in err.message
    assert "Extra data" not in err.message and "JSONDecodeError" not in err.message


def test_oversized_output_is_capped_with_length_finish() -> None:
    with openai_server(Behaviour(fault_rate=1.0, faults=("oversized",))) as server:
        backend = backend_for(server.url + "/v1", max_output_bytes=500_000)
        started = time.perf_counter()
        completion = call_backend(backend, make_request())
    assert completion.capped is True
    assert completion.finish_reason == "length"
    assert 0 < len(completion.text.encode()) <= 500_000
    assert time.perf_counter() - started < 10


def test_default_cap_stops_a_3mb_stream() -> None:
    with openai_server(Behaviour(fault_rate=1.0, faults=("oversized",))) as server:
        backend = backend_for(server.url + "/v1")
        completion = call_backend(backend, make_request())
    assert completion.capped is True
    assert len(completion.text.encode()) <= backend.max_output_bytes < 3 * 1024 * 1024


def test_slow_drip_still_answers_correctly() -> None:
    with openai_server(Behaviour(outputs=[LONG_OUTPUT], fault_rate=1.0, faults=("slow_drip",))) as server:
        completion = call_backend(backend_for(server.url + "/v1"), make_request())
    assert completion.text == LONG_OUTPUT
    assert completion.total_s - (completion.ttft_s or 0) >= 0.01


def test_api_key_is_sent_as_bearer_token() -> None:
    with openai_server() as server:
        call_backend(backend_for(server.url + "/v1", api_key="sk-test-secret-1234"), make_request())
        assert server.headers[0]["authorization"] == "Bearer sk-test-secret-1234"


def test_models_identity_and_parallel_slots() -> None:
    with openai_server(models=("m-a", "m-b"), total_slots=3) as server:
        backend = backend_for(server.url + "/v1")

        async def go():
            try:
                return (await backend.list_models(), await backend.model_identity("m-b"),
                        await backend.parallel_slots())
            finally:
                await backend.aclose()

        models, identity, slots = run_async(go)
    assert models == ["m-a", "m-b"]
    assert identity["id"] == "m-b" and identity["owned_by"] == "test"
    assert slots == 3


def test_parallel_slots_unknown_without_props() -> None:
    with openai_server() as server:
        backend = backend_for(server.url + "/v1")

        async def go():
            try:
                return await backend.parallel_slots()
            finally:
                await backend.aclose()

        assert run_async(go) is None
        assert ("GET", "/props") in server.paths
