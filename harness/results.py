"""Run folders: `results/<run-id>/{manifest.json, samples.jsonl, summary.json}`.

Samples are appended and flushed one line at a time as they finish, so a crash
or Ctrl-C loses nothing that finished; a torn last line (a crash mid-write) is
detected and skipped on read. The reporter reads only these files.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import orjson

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"


class RunFolderError(ValueError):
    """A run folder that is missing or unreadable."""


def new_run_id(backend: str, model: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{backend}-{model}").strip("-")[:60]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


def resolve_run_dir(run: str | Path, results_root: Path = Path("results")) -> Path:
    """Accept a path to a run folder, or a bare run id under results/."""
    path = Path(run)
    for candidate in (path, results_root / path):
        if (candidate / MANIFEST).exists() or (candidate / SAMPLES).exists():
            return candidate
    raise RunFolderError(f"no run folder at {run} (expected {MANIFEST} and {SAMPLES} inside)")


def write_json(path: Path, data: Any) -> None:
    """Write atomically so a reader never sees half a manifest."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise RunFolderError(f"{run_dir / MANIFEST} is not valid JSON: {exc}") from None


def iter_samples(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Every complete sample line; a torn or garbled line is skipped, not fatal."""
    path = run_dir / SAMPLES
    if not path.exists():
        return
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # torn final line from a crash: the sample will be re-run on resume
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "key" in record:
                yield record


def read_samples(run_dir: Path) -> list[dict[str, Any]]:
    """All samples, last record per key wins (a resumed error sample may be re-run)."""
    by_key: dict[str, dict[str, Any]] = {}
    for record in iter_samples(run_dir):
        by_key[record["key"]] = record
    return list(by_key.values())


_KEY_PREFIX = b'{"key": "'  # how SampleWriter lines start: the key is the record's first field


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None
    return record if isinstance(record, dict) and "key" in record else None


def _line_key(line: bytes) -> Any:
    """The key of a sample line, read off its start when it can be (no escapes in it), else parsed."""
    if line.startswith(_KEY_PREFIX):
        end = line.find(b'"', 9)
        if end > 0 and b"\\" not in line[9:end]:
            return line[9:end].decode("utf-8", "replace")
    record = _parse_line(line)
    return None if record is None else record["key"]


def iter_latest_samples(run_dir: Path, unique: bool = False) -> Iterator[dict[str, Any]]:
    """What `read_samples` returns, streamed: only each key's line offsets are held in memory,
    never all the records (a 50,000-sample run would take hundreds of MB). Two passes over the
    file: the first finds each key's lines, the second reads the last valid one (a key is
    written twice when a resumed error sample was re-run). Same records in the same order,
    except that a key whose first line is garbled comes where that line is. `unique`: the caller
    knows every key was written once (a run that was never resumed): one pass, no index."""
    if unique:
        yield from iter_samples(run_dir)
        return
    path = run_dir / SAMPLES
    if not path.exists():
        return
    where: dict[Any, Any] = {}  # key -> offset of its line, or a list of them when there are several
    with path.open("rb") as handle:
        offset = 0
        for line in handle:
            if not line.endswith(b"\n"):
                break  # torn final line from a crash: the sample will be re-run on resume
            key = _line_key(line)
            if key is not None:
                seen = where.get(key)
                if seen is None:
                    where[key] = offset
                elif isinstance(seen, list):
                    seen.append(offset)
                else:
                    where[key] = [seen, offset]
            offset += len(line)
        for seen in where.values():
            for at in reversed(seen) if isinstance(seen, list) else (seen,):
                handle.seek(at)  # in file order, so mostly inside the read buffer: no I/O
                record = _parse_line(handle.readline())
                if record is not None:
                    yield record
                    break


class SampleWriter:
    """Append-only JSON-lines writer, one flush per sample."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / SAMPLES
        self._truncate_torn_tail()
        self._handle = self.path.open("ab")
        self.count = 0

    def _truncate_torn_tail(self) -> None:
        """Drop a partial last line left by a crash so new lines start clean."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as handle:
            data = handle.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            handle.truncate(cut)

    def append(self, record: dict[str, Any]) -> None:
        try:  # orjson: a tenth of json.dumps's time
            line = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # ints over 64 bits, lone surrogates in a model's output: json escapes those
            line = (json.dumps(record, default=str) + "\n").encode("ascii")
        self._handle.write(line)
        self._handle.flush()
        self.count += 1

    def close(self) -> None:
        self._handle.close()
