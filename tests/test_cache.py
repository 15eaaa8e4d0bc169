"""The opt-in response cache (`harness run --cache PATH`), over real HTTP.

A second identical run must not call the server at all and must reproduce the
first run's outputs, marked `cached`; anything that could change the answer (the
model's identity as the server reports it, sampling params, the prompt) misses;
`harness cache clear` empties the file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Behaviour, OllamaServer, openai_server  # noqa: E402

from harness.cache import ResponseCacheDB, cache_key  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.models import ChatRequest, Completion, GenerationParams, Job  # noqa: E402

CASES = 6


class DigestOllama(OllamaServer):
    """The ollama fake, whose model digest changes when `salt` does (a re-pulled model)."""

    salt = ""

    def _tags(self, h, body):
        models = [{"name": name, "model": name, "size": 1234,
                   "digest": hashlib.sha256((name + self.salt).encode()).hexdigest(),
                   "details": {"family": "llama", "quantization_level": "Q4_0"}} for name in self.models]
        h._send_json(200, {"models": models})


def write_task(folder: Path, prompt: str = "Reply with the JSON object for number {{ n }}.") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "id": "tiny",
        "description": "A tiny task for cache tests.",
        "prompt": prompt,
        "output_format": "json",
        "schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "params": {"temperature": 0.0, "max_tokens": 32},
        "cases": [{"id": f"c{i}", "vars": {"n": i}} for i in range(CASES)],
    }
    (folder / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def nonce_answers():
    """A fake model whose every answer is different: a cache hit is the only way to repeat one."""
    counter = itertools.count()

    def answer(body: dict) -> str:
        number = int(re.search(r"number (\d+)", body["messages"][-1]["content"]).group(1))
        return json.dumps({"n": number, "nonce": next(counter)})

    return answer


def run(tmp_path: Path, name: str, base_url: str, cache: Path, *extra: str, kind: str = "ollama",
        model: str = "llama2:latest", tasks: Path | None = None) -> tuple[Path, dict[str, dict]]:
    results = tmp_path / "results" / name
    code = main(["run", "-b", kind, "--base-url", base_url, "-m", model, "--tasks-dir",
                 str(tasks or tmp_path / "tasks"), "--results", str(results), "--cache", str(cache), "-j", "3",
                 "--repeat", "2", "-f", "csv", *extra])
    assert code == 0
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    records = {r["key"]: r for r in map(json.loads, lines)}
    assert len(records) == len(lines) == CASES * 2
    return run_dir, records


def test_second_run_is_served_from_cache(tmp_path, capsys):
    write_task(tmp_path / "tasks")
    cache = tmp_path / "cache" / "responses.sqlite"
    with DigestOllama(Behaviour(outputs=nonce_answers()), models=("llama2:latest",)) as server:
        _, first = run(tmp_path, "first", server.url, cache)
        assert server.calls == CASES * 2
        assert not any(r["cached"] for r in first.values())

        run_dir, second = run(tmp_path, "second", server.url, cache)
        assert server.calls == CASES * 2, "a cached run called the server"
        assert all(r["cached"] and r["attempts"] == 0 for r in second.values())
        assert {k: r["output"] for k, r in second.items()} == {k: r["output"] for k, r in first.items()}
        assert {k: r["score"] for k, r in second.items()} == {k: r["score"] for k, r in first.items()}
        # Cached samples say nothing about this server's speed: no latency statistics.
        summary = json.loads((run_dir / "summary.json").read_text())
        for group in summary["groups"]:
            assert group["cached"] == group["samples"]
            assert group["latency_p50_s"] is None and group["latency_p95_s"] is None

        # Different sampling params: a miss for every sample.
        _, hotter = run(tmp_path, "hotter", server.url, cache, "--temperature", "0.7")
        assert server.calls == CASES * 4
        assert not any(r["cached"] for r in hotter.values())

        # The server now reports another digest for the same model name (it was re-pulled).
        server.salt = "re-pulled"
        _, repulled = run(tmp_path, "repulled", server.url, cache)
        assert server.calls == CASES * 6
        assert not any(r["cached"] for r in repulled.values())
        assert {r["output"] for r in repulled.values()}.isdisjoint({r["output"] for r in first.values()})

        # ... and the new identity is cached in its turn.
        _, again = run(tmp_path, "again", server.url, cache)
        assert server.calls == CASES * 6
        assert all(r["cached"] for r in again.values())

        # A changed prompt is a different request.
        changed = write_task(tmp_path / "tasks2", prompt="Answer with the JSON object for number {{ n }}.")
        _, reworded = run(tmp_path, "reworded", server.url, cache, tasks=changed)
        assert server.calls == CASES * 8

        capsys.readouterr()
        assert main(["cache", "info", "--path", str(cache)]) == 0
        info = capsys.readouterr().out
        assert f"{CASES * 8} entries" in info

        assert main(["cache", "clear", "--path", str(cache)]) == 0
        capsys.readouterr()
        assert main(["cache", "info", "--path", str(cache)]) == 0
        assert "0 entries" in capsys.readouterr().out

        _, cleared = run(tmp_path, "cleared", server.url, cache)
        assert server.calls == CASES * 10
        assert not any(r["cached"] for r in cleared.values())


def test_backend_and_url_are_part_of_the_key(tmp_path, capsys):
    """The same model name on another server (or another protocol) is another model."""
    write_task(tmp_path / "tasks")
    cache = tmp_path / "responses.sqlite"
    with openai_server(Behaviour(outputs=nonce_answers()), models=("m",)) as one, \
            openai_server(Behaviour(outputs=nonce_answers()), models=("m",)) as two:
        run(tmp_path, "one", one.url + "/v1", cache, kind="openai", model="m")
        run(tmp_path, "two", two.url + "/v1", cache, kind="openai", model="m")
        assert one.calls == two.calls == CASES * 2
        _, again = run(tmp_path, "again", two.url + "/v1", cache, kind="openai", model="m")
        assert two.calls == CASES * 2 and all(r["cached"] for r in again.values())


def test_cache_unit_roundtrip_and_durability(tmp_path):
    """A put is on disk when it returns (a second connection sees it), and errors are keyed apart."""

    class FakeBackend:
        kind = "openai"
        public_base_url = "http://127.0.0.1:1/v1"
        api_key = "sk-should-never-be-stored"

    request = ChatRequest("m", ({"role": "user", "content": "hi"},), GenerationParams(temperature=0.0))
    job = Job("t", "c", "b", "m", "free", 0, request)
    path = tmp_path / "c.sqlite"
    completion = Completion(text='{"a": 1}', finish_reason="stop", total_s=0.5, ttft_s=0.1, prompt_tokens=3,
                            output_tokens=4, server_timings={"x": 1}, capped=False, server_model="m")
    writer = ResponseCacheDB(path, FakeBackend(), {"m": {"id": "m", "created": 1}})
    assert writer.get(job) is None
    writer.put(job, completion)
    reader = ResponseCacheDB(path, FakeBackend(), {"m": {"id": "m", "created": 999}})  # created: volatile
    assert reader.get(job) == completion
    other_sample = Job("t", "c", "b", "m", "free", 1, request)
    assert reader.get(other_sample) is None
    other_identity = ResponseCacheDB(path, FakeBackend(), {"m": {"id": "m", "owned_by": "someone-else"}})
    assert other_identity.get(job) is None
    for db in (writer, reader, other_identity):
        db.close()
    assert b"sk-should-never-be-stored" not in path.read_bytes()
    assert cache_key("openai", "u", {}, job) != cache_key("ollama", "u", {}, job)
