"""Stream plumbing shared by the HTTP backends."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import httpx
import orjson

# After the end of an answer, what is left of the body (normally just the end of the chunked
# stream) is read, so that the keep-alive connection goes back to the pool instead of being
# closed: a new TCP connection per call cost a third of the client's time. Within bounds: a
# server that keeps talking is hung up on.
DRAIN_BYTES, DRAIN_SECONDS = 65536, 0.5


def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The response body as it arrives. Raw unless the server compressed it: a model sends one
    event per token, and `aiter_bytes` passes every chunk through an (identity) decoder and one
    more generator, ~0.4 us a chunk for nothing."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return response.aiter_raw() if encoding in ("", "identity") else response.aiter_bytes()


async def drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what is left of a finished answer's body, within bounds."""
    drained = 0
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in chunks:
                drained += len(chunk)
                if drained > DRAIN_BYTES:
                    return
    except (TimeoutError, httpx.HTTPError):
        pass  # the answer is complete; only the connection is lost


def decode_batch(payloads: list[bytes], decode_one: Callable[[bytes], dict[str, Any]]) -> list[dict[str, Any]]:
    """Decode a batch of streamed JSON objects (SSE event data, NDJSON lines).

    Why a batch: a model streams one small object per token, and one parse of
    ``[a,b,...]`` costs a fraction of one parse per object; orjson, a fraction of
    the stdlib's (bench/client_overhead.py). The batch is only taken when it holds
    exactly one object per payload (an item cannot vanish in ``[a,,b]``, so equal
    counts mean one each); otherwise `decode_one` decodes them one by one, and
    names the first bad one in its error."""
    if payloads:
        try:
            objs = orjson.loads(b"[" + b",".join(payloads) + b"]")
        except orjson.JSONDecodeError:
            objs = None
        if objs is not None and len(objs) == len(payloads) and set(map(type, objs)) == {dict}:
            return objs  # type: ignore[no-any-return]
    return [decode_one(payload) for payload in payloads]


def stamp_at(offset: int, chunks: list[bytes], stamps: list[float]) -> float:
    """When byte `offset` of the joined `chunks` arrived: the stamp of the chunk holding it
    (the last stamp when the offset lies beyond them). How a batched decoder dates an event."""
    for chunk, stamp in zip(chunks, stamps):
        offset -= len(chunk)
        if offset <= 0:
            return stamp
    return stamps[-1]


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read at most `limit` bytes of an error body: a garbage reply must not cost memory."""
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit]
