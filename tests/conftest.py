"""Shared fixtures: hermetic environment, fake servers, tiny task folders.

Tests talk to real HTTP servers on 127.0.0.1 (see `servers.py`); nothing in
harness is mocked. Async harness code is driven with `asyncio.run` so no
pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

TESTS_DIR = Path(__file__).resolve().parent
for entry in (str(TESTS_DIR), str(TESTS_DIR.parent)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from servers import Behaviour, FakeServer, closed_port_url, ollama_server, openai_server  # noqa: E402

T = TypeVar("T")

# Environment variables that would make a test depend on the developer's machine.
_LEAKY_ENV = ("OLLAMA_HOST", "OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "http_proxy", "https_proxy", "all_proxy")

SIMPLE_SCHEMA = {
    "type": "object",
    "required": ["name", "qty"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "qty": {"type": "integer", "minimum": 0}},
}

VALID_OUTPUT = '{"name": "apple", "qty": 3}'


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy, no real server address or key from the developer's shell; cwd is a temp dir
    so a `config/backends.yaml` or `results/` of the checkout is never picked up."""
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)


def run_async(factory: Callable[[], Awaitable[T]] | Awaitable[T]) -> T:
    """Run a coroutine (or a zero-argument coroutine factory) to completion."""
    coro = factory() if callable(factory) else factory
    return asyncio.run(coro)  # type: ignore[arg-type]


def call_backend(backend: Any, request: Any, **kwargs: Any) -> Any:
    """One `backend.complete(request)` over real HTTP, closing the backend afterwards."""

    async def go() -> Any:
        try:
            return await backend.complete(request, **kwargs)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def write_task(folder: Path, task_id: str = "items", *, cases: int = 3, output_format: str = "json",
               schema: dict | None = None, extra: str = "") -> Path:
    """Write a small valid task file and return its path."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    case_lines = "\n".join(f"  - id: c{i}\n    vars: {{thing: item{i}}}" for i in range(cases))
    text = textwrap.dedent(f"""\
        id: {task_id}
        description: Tiny test task
        prompt: |
          Describe {{{{ thing }}}} as JSON with name and qty.
        output_format: {output_format}
        schema: {json.dumps(schema or SIMPLE_SCHEMA)}
        params: {{temperature: 0.0, max_tokens: 64}}
        """) + extra + "cases:\n" + case_lines + "\n"
    path = folder / f"{task_id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    write_task(folder)
    return folder


@pytest.fixture
def openai_fake() -> Iterator[FakeServer]:
    with openai_server(Behaviour(outputs=[VALID_OUTPUT])) as server:
        yield server


@pytest.fixture
def ollama_fake() -> Iterator[FakeServer]:
    with ollama_server(Behaviour(outputs=[VALID_OUTPUT])) as server:
        yield server


@pytest.fixture
def dead_url() -> str:
    return closed_port_url()


__all__ = ["Behaviour", "FakeServer", "SIMPLE_SCHEMA", "VALID_OUTPUT", "call_backend", "closed_port_url",
           "ollama_server", "openai_server", "run_async", "write_task"]
