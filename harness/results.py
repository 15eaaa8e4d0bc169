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


class SampleWriter:
    """Append-only JSON-lines writer, one flush per sample."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / SAMPLES
        self._truncate_torn_tail()
        self._handle = self.path.open("a", encoding="utf-8")
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
        self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()
        self.count += 1

    def close(self) -> None:
        self._handle.close()
