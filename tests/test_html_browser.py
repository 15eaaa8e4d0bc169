"""The HTML report in a real headless Chromium: it renders, shows its tables and
SVG charts, runs no script, loads nothing, and paints a non-blank page.

Needs the Debian package `chromium` (apt-get install -y chromium). Skipped when
no Chromium is on PATH, unless HARNESS_REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from harness.report.export import render_file

from test_report_export import PLANTED, build_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = "no headless Chromium on PATH (Debian: apt-get install -y chromium)"
    if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"HARNESS_REQUIRE_BROWSER=1 but {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    path = root / "report.html"
    path.write_text(render_file(build_run(root), "html"), encoding="utf-8")
    return path


def run_browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(profile)}  # keep Chromium's caches out of the real home
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=90, env=env)


def console_problems(stderr: str) -> list[str]:
    """Console errors: uncaught JS errors, or CSP blocking a script/remote load (= we tried one)."""
    return [line for line in stderr.splitlines()
            if "Uncaught" in line or "Content Security Policy" in line or ("ERR_" in line and "CONSOLE" in line)]


def test_rendered_dom_has_tables_and_charts(chromium, report, tmp_path):
    result = run_browser(chromium, tmp_path / "profile", "--dump-dom", report.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "<table" in dom and 'class="main"' in dom and 'class="failures"' in dom and 'class="repairs"' in dom
    assert dom.count('class="validity-chart"') == 2 and dom.count('class="latency-chart"') == 2
    assert "<rect" in dom and "<details" in dom
    assert "<script" not in dom  # the planted script stayed text ...
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # ... and is shown as such
    assert PLANTED not in dom
    assert console_problems(result.stderr) == []


def test_screenshot_is_not_blank(chromium, report, tmp_path):
    shot = tmp_path / "shot.png"
    result = run_browser(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600",
                         "--hide-scrollbars", report.as_uri())
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    width, height, pixels = read_png(shot.read_bytes())
    assert (width, height) == (1280, 1600)
    # A blank page decompresses to one repeated byte value; text, tables and coloured bars give many.
    assert len(set(pixels)) > 40
    assert console_problems(result.stderr) == []


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed (still filtered) scanlines of a PNG; enough to tell blank from not."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)
