"""Stream plumbing shared by the HTTP backends."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import httpx

# After the end of an answer, what is left of the body (normally just the end of the chunked
# stream) is read, so that the keep-alive connection goes back to the pool instead of being
# closed: a new TCP connection per call cost a third of the client's time. Within bounds: a
# server that keeps talking is hung up on.
DRAIN_BYTES, DRAIN_SECONDS = 65536, 0.5


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
