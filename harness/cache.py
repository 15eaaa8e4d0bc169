"""An opt-in on-disk response cache (`harness run --cache PATH`).

One SQLite file (standard library, WAL mode, one connection, a commit per put
so a stored answer survives a crash right after `put` returns). An entry is
keyed by the sha256 of canonical JSON of everything that decides the answer:
the backend kind and public base URL, the model name *and* the model's identity
as the server reported it (an ollama digest, say: a re-pulled model is a new
model), the full request (messages, sampling params, schema and its name) and
the sample index. Anything else (the API key above all) is not part of the key
and is never stored. Values are the Completion fields as JSON.

Cached samples are marked `cached: true` by the runner and left out of latency
statistics by the reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from .config import ConfigError
from .models import Completion, Job

SCHEMA_VERSION = 1
DEFAULT_CACHE_PATH = Path(".harness-cache/responses.sqlite")

# Identity fields that some servers fill with the time of the request rather than
# anything about the model (vLLM and llama.cpp answer /v1/models with
# created=now): keying on them would make every run a miss.
VOLATILE_IDENTITY_FIELDS = frozenset({"created", "modified_at", "expires_at"})

_COMPLETION_FIELDS = {f.name for f in dataclasses.fields(Completion)}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _stable_identity(identity: Any) -> Any:
    if isinstance(identity, dict):
        return {k: _stable_identity(v) for k, v in identity.items() if k not in VOLATILE_IDENTITY_FIELDS}
    if isinstance(identity, list):
        return [_stable_identity(v) for v in identity]
    return identity


def cache_key(backend_kind: str, base_url: str, identity: dict[str, Any] | None, job: Job) -> str:
    """sha256 of everything that decides a response; see the module docstring."""
    request = job.request
    material = {
        "v": SCHEMA_VERSION,
        "backend_kind": backend_kind,
        "base_url": base_url,
        "model": request.model,
        "model_identity": _stable_identity(identity or {}),
        "messages": list(request.messages),
        "params": request.params.to_dict(),
        "schema": request.schema,
        "schema_name": request.schema_name if request.schema is not None else None,
        "mode": job.mode,
        "sample_index": job.sample_index,
    }
    return hashlib.sha256(_canonical(material).encode("utf-8")).hexdigest()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)  # autocommit: each put commits
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a put that returned survives a crash
    conn.execute("PRAGMA busy_timeout=30000")  # two runs may share one cache file
    conn.execute(
        "CREATE TABLE IF NOT EXISTS responses ("
        " key TEXT PRIMARY KEY,"
        " model TEXT NOT NULL,"
        " completion TEXT NOT NULL,"
        " created_at REAL NOT NULL)"
    )
    return conn


class ResponseCacheDB:
    """The runner's ResponseCache protocol backed by one SQLite file."""

    def __init__(self, path: Path, backend: Any, identities: dict[str, dict[str, Any]]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.backend_kind = str(getattr(backend, "kind", "unknown"))
        self.base_url = str(getattr(backend, "public_base_url", "") or "")
        self.identities = dict(identities or {})
        self.hits = 0
        self.misses = 0
        self.puts = 0
        try:
            self._conn: sqlite3.Connection | None = _connect(self.path)
        except sqlite3.Error as exc:
            raise ConfigError(f"--cache {self.path}: not a usable response cache ({exc}); "
                              f"pick another path or delete the file") from None

    def key(self, job: Job) -> str:
        return cache_key(self.backend_kind, self.base_url, self.identities.get(job.model), job)

    def get(self, job: Job) -> Completion | None:
        if self._conn is None:
            return None
        row = self._conn.execute("SELECT completion FROM responses WHERE key = ?", (self.key(job),)).fetchone()
        if row is None:
            self.misses += 1
            return None
        try:
            fields = json.loads(row[0])
            completion = Completion(**{k: v for k, v in fields.items() if k in _COMPLETION_FIELDS})
        except (ValueError, TypeError):
            self.misses += 1  # an unreadable entry is a miss, and the next put replaces it
            return None
        self.hits += 1
        return completion

    def put(self, job: Job, completion: Completion) -> None:
        if self._conn is None:
            return
        value = _canonical(dataclasses.asdict(completion))
        self._conn.execute(
            "INSERT OR REPLACE INTO responses (key, model, completion, created_at) VALUES (?, ?, ?, ?)",
            (self.key(job), job.model, value, time.time()),
        )  # autocommit mode: committed (and synced) before this returns
        self.puts += 1

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "ResponseCacheDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def cache_command(args: argparse.Namespace) -> int:
    """`harness cache clear|info --path P`."""
    path = Path(getattr(args, "path", None) or DEFAULT_CACHE_PATH)
    if not path.exists():
        print(f"no response cache at {path} (0 entries)")
        return 0
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        print(f"error: {path} is not a harness response cache ({exc})", file=sys.stderr)
        return 2
    try:
        if args.action == "clear":
            removed = conn.execute("DELETE FROM responses").rowcount
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            print(f"cleared {removed} entries from {path}")
            return 0
        count = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        models = conn.execute("SELECT model, COUNT(*) FROM responses GROUP BY model ORDER BY model").fetchall()
        print(f"{path}: {count} entries, {_human(_size(path))}")
        for model, n in models:
            print(f"  {model}: {n}")
        return 0
    finally:
        conn.close()
