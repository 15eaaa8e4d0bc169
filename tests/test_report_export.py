"""`harness report --format html|junit`: self-contained, escaped HTML and valid JUnit XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.export import highlight, render_file, violation_needles

from run_factory import manifest, record, write_run

PLANTED = "<script>alert(1)</script>"


def build_run(tmp_path: Path, name: str = "export-run") -> Path:
    """Two models, two tasks, free + constrained, a planted script, a backend error."""
    records = []
    for i in range(6):
        records.append(record("invoice", f"c{i}", model="m1", raw_valid=i < 4, repaired_valid=i < 5,
                              latency=1 + i / 10))
        records.append(record("invoice", f"c{i}", model="m1", mode="constrained", raw_valid=True, latency=0.9))
        records.append(record("invoice", f"c{i}", model="m2", raw_valid=True, latency=2 + i / 5))
        records.append(record("invoice", f"c{i}", model="m2", mode="constrained", raw_valid=i != 0, latency=2.1))
    records.append(record("prd", "p1", model="m1", raw_valid=False, raw_parse=False, failure="prose_only",
                          output=f"Here you go {PLANTED} & done", violations=[]))
    records.append(record("prd", "p2", model="m1", raw_valid=False,
                          output='{"items": [{"price": "ten"}], "extra": true}',
                          violations=[{"path": "$.items[0].price", "message": "'ten' is not of type 'number'",
                                       "rule": "type"},
                                      {"path": "$", "message": "Additional properties are not allowed "
                                       "('extra' was unexpected)", "rule": "additionalProperties"}]))
    records.append(record("prd", "p1", model="m2", raw_valid=True))
    records.append(record("prd", "p2", model="m2",
                          error={"kind": "timeout", "message": "timed out <after 30 s>", "status": None}))
    for model in ("m1", "m2"):
        for case in ("p1", "p2"):
            records.append(record("prd", case, model=model, mode="constrained", raw_valid=True))
    data = manifest(name, {"invoice": 6, "prd": 2}, models=["m1", "m2"], modes=["free", "constrained"])
    return write_run(tmp_path, name, records, data)


EXTERNAL = re.compile(r"""(?:src|href|action|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)


def test_html_is_self_contained_and_escaped(tmp_path):
    text = render_file(build_run(tmp_path), "html")
    assert text.startswith("<!DOCTYPE html>")
    assert not EXTERNAL.search(text)
    assert "@import" not in text and "url(" not in text
    parser = TagCollector()
    parser.feed(text)
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    assert not any(name.startswith("on") for name, _ in parser.attrs)  # no event handlers
    assert PLANTED not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done" in text
    assert "timed out &lt;after 30 s&gt;" in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_html_has_tables_charts_and_details(tmp_path):
    text = render_file(build_run(tmp_path), "html")
    parser = TagCollector()
    parser.feed(text)
    for section in ("summary", "validity", "latency", "failures", "repairs", "failed-samples"):
        assert f'id="{section}"' in text
    assert parser.tags.count("table") >= 3
    assert 'class="main"' in text and 'class="failures"' in text and 'class="repairs"' in text
    assert text.count('class="validity-chart"') == 2 and text.count('class="latency-chart"') == 2
    assert 'class="bar-raw"' in text and 'class="bar-repaired"' in text and 'class="bar-constrained"' in text
    assert 'class="hist-bar"' in text
    # top failing JSON paths per model, failure kinds as columns
    assert "<code>$.items[0].price</code>" in text and "prose_only" in text and "strip_prose" in text
    # failed samples: m1 invoice c4,c5 (free), prd p1,p2; m2 invoice c0 constrained, prd p2 error
    assert text.count('<details class="sample"') == 6
    assert '<mark class="path">$.items[0].price</mark>' in text
    assert '<mark>&quot;price&quot;</mark>' in text and '<mark>&quot;extra&quot;</mark>' in text
    assert "rescued by repair" in text and "backend_error: timeout" in text


def test_html_caps_failed_samples(tmp_path):
    records = [record("t", f"c{i:03d}", raw_valid=False) for i in range(30)]
    run = write_run(tmp_path, "many", records, manifest("many", {"t": 30}))
    text = render_file(run, "html", max_failed_samples=10)
    assert text.count('<details class="sample"') == 10
    assert "20 omitted" in text


def test_html_escapes_hostile_names(tmp_path):
    evil = 'm"><i onmouseover=alert(2)>'
    records = [record("t", "c1", model=evil, raw_valid=False,
                      violations=[{"path": '$["<b>k</b>"]', "message": "<img src=x>", "rule": "type"}],
                      output='{"<b>k</b>": 1}')]
    text = render_file(write_run(tmp_path, "evil", records, manifest("evil", {"t": 1}, models=[evil])), "html")
    assert "<i onmouseover" not in text and "<img" not in text and "<b>k</b>" not in text
    parser = TagCollector()
    parser.feed(text)
    assert "img" not in parser.tags and not any(name.startswith("on") for name, _ in parser.attrs)


def test_highlight_helpers():
    needles = violation_needles([{"path": "$.a.b", "rule": "type"}, {"path": "$", "rule": "required"},
                                 {"path": '$["x y"]', "rule": "enum"}])
    assert needles == ['"b"', '"x y"']
    assert highlight('<{"b": 1}>', ['"b"']) == "&lt;{<mark>&quot;b&quot;</mark>: 1}&gt;"
    assert highlight("<x>", []) == "&lt;x&gt;"


def parse_junit(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    return root


def test_junit_one_testcase_per_task_and_model(tmp_path):
    root = parse_junit(render_file(build_run(tmp_path), "junit"))
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    assert set(cases) == {("fake:m1", "invoice"), ("fake:m1", "prd"), ("fake:m2", "invoice"), ("fake:m2", "prd")}
    failed = {k for k, c in cases.items() if c.find("failure") is not None}
    errored = {k for k, c in cases.items() if c.find("error") is not None}
    # m1 invoice: repaired 5/6; m1 prd: 0/2; m2 invoice: free 6/6 (constrained ignored when free exists);
    # m2 prd: the one free answer is valid, the other errored.
    assert failed == {("fake:m1", "invoice"), ("fake:m1", "prd")}
    assert errored == {("fake:m2", "prd")}
    message = cases[("fake:m1", "invoice")].find("failure").get("message")
    assert "83.3%" in message and "(5/6)" in message and "raw schema-valid 66.7%" in message
    suite = root.find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "2" and suite.get("errors") == "1"
    assert root.get("tests") == "4"


def test_junit_threshold_is_configurable(tmp_path, monkeypatch):
    run = build_run(tmp_path)
    root = parse_junit(render_file(run, "junit", junit_min_valid_pct=80))
    failed = {(c.get("classname"), c.get("name")) for c in root.iter("testcase") if c.find("failure") is not None}
    assert failed == {("fake:m1", "prd")}
    monkeypatch.setenv("HARNESS_JUNIT_MIN_VALID", "0")
    root = parse_junit(render_file(run, "junit"))
    assert not [c for c in root.iter("testcase") if c.find("failure") is not None]


def test_junit_survives_control_characters(tmp_path):
    records = [record("t", "c1", model="m\x01", raw_valid=False,
                      violations=[{"path": "$.a\x00b", "message": "bad \x1b[31m", "rule": "type"}])]
    run = write_run(tmp_path, "ctl", records, manifest("ctl", {"t": 1}))
    root = parse_junit(render_file(run, "junit"))
    assert len(list(root.iter("testcase"))) == 1


def test_cli_report_writes_html_and_junit(tmp_path, capsys):
    run = build_run(tmp_path)
    html_path, xml_path = tmp_path / "r.html", tmp_path / "r.xml"
    assert main(["report", str(run), "--format", "html", "--out", str(html_path)]) == 0
    assert main(["report", str(run), "--format", "junit", "--out", str(xml_path)]) == 0
    assert "<svg" in html_path.read_text(encoding="utf-8")
    strict = parse_junit(xml_path.read_text(encoding="utf-8"))
    assert main(["report", str(run), "--format", "junit", "--min-valid", "80", "--out", str(xml_path)]) == 0
    relaxed = parse_junit(xml_path.read_text(encoding="utf-8"))

    def failed(root):
        return {(c.get("classname"), c.get("name")) for c in root.iter("testcase") if c.find("failure") is not None}

    assert failed(relaxed) == {("fake:m1", "prd")} and failed(relaxed) < failed(strict)


def test_unknown_format_rejected(tmp_path):
    with pytest.raises(ValueError):
        render_file(build_run(tmp_path), "pdf")
