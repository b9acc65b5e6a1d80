"""The HTML report: content, escaping, embedded figures, atomic writing."""

from __future__ import annotations

import base64
import re

import pytest

from stacklab.demo import DemoSection, Metric, new_figure
from stacklab.report import environment_info, format_value, render_report, write_report

ENV = {"stacklab": "0.0.test", "numpy": "9.9", "GPU usable": "no"}


def _figure():
    fig = new_figure(figsize=(2.0, 1.5))
    fig.add_subplot().plot([0, 1, 2], [0, 1, 4])
    return fig


def _sections():
    return [
        DemoSection(
            title="Bead tracking",
            metrics=(
                Metric("xy RMS error", 0.0041234, "px", "<= 0.01", True),
                Metric("z RMS error", 31.5, "nm", "<= 20", False),
                Metric("frames", 1000, ""),
            ),
            seconds=1.234,
            figures=(("z lookup table", _figure()),),
            text="First paragraph.\n\nSecond paragraph.",
            domain="beads",
        ),
        DemoSection(title="Empty", metrics=(), seconds=0.0, domain="empty"),
    ]


class _BrokenFigure:
    def savefig(self, *args, **kwargs):
        raise RuntimeError("figure cannot be drawn")


class _Hostile:
    """Text fields full of HTML metacharacters."""

    TITLE = "<script>alert('t')</script>"
    NAME = 'a < b & "c"'
    TEXT = "<b>not bold</b> & <img src=x onerror=alert(1)>"
    CAPTION = "caption \"q\" <i>'s'</i>"
    UNIT = "<u>"


def test_summary_sections_and_environment():
    html = render_report(_sections(), title="Demo run", environment=ENV)
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>Demo run</title>" in html
    summary = html.split('id="summary"')[1].split("</table>")[0]
    headers = re.findall(r"<th>(.*?)</th>", summary)
    assert headers == ["domain", "metric", "value", "unit", "target", "ok", "seconds"]
    rows = re.findall(r"<tr>(.*?)</tr>", summary.split("<tbody>")[1])
    assert len(rows) == 4  # three metrics + one "(no metrics)" row
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[0])]
    assert cells == ["beads", "xy RMS error", "0.004123", "px", "&lt;= 0.01", "✓", "1.23"]
    assert "✗" in rows[1] and 'class="bad"' in rows[1]
    assert 'class="na"' in rows[2]
    assert "1 of 3 metrics missed their targets" in html
    # One section per domain, with its text paragraphs and the environment block.
    assert '<section id="sec-beads">' in html and '<section id="sec-empty">' in html
    assert "<p>First paragraph.</p>" in html and "<p>Second paragraph.</p>" in html
    assert "<dt>numpy</dt><dd>9.9</dd>" in html
    assert "<style>" in html and "border-collapse" in html  # CSS inline, no external link
    assert "<link" not in html and 'src="http' not in html


def test_all_ok_status():
    ok = [DemoSection("A", (Metric("m", 1.0, ok=True),), 0.1, domain="a")]
    assert "All 1 metrics met their targets" in render_report(ok, environment=ENV)


def test_figure_embedded_as_png():
    html = render_report(_sections(), environment=ENV)
    match = re.search(
        r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="z lookup table">', html
    )
    assert match is not None
    png = base64.b64decode(match.group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 500
    assert "<figcaption>z lookup table</figcaption>" in html


def test_all_text_is_escaped():
    h = _Hostile
    section = DemoSection(
        title=h.TITLE,
        metrics=(Metric(h.NAME, 1.0, h.UNIT, "<= 2 & >= 0", True),),
        seconds=0.1,
        figures=((h.CAPTION, _figure()),),
        text=h.TEXT,
        domain="<dom>",
    )
    html = render_report([section], title=h.TITLE, environment={"<key>": "<value>"})
    for raw in (h.TITLE, h.NAME, h.TEXT, h.CAPTION, h.UNIT, "<dom>", "<key>", "<value>", "<i>"):
        assert raw not in html
    assert "&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt;" in html
    assert "a &lt; b &amp; &quot;c&quot;" in html
    assert "&lt;b&gt;not bold&lt;/b&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in html
    assert 'alt="caption &quot;q&quot; &lt;i&gt;&#x27;s&#x27;&lt;/i&gt;"' in html
    assert "&lt;= 2 &amp; &gt;= 0" in html
    assert "<script" not in html


def test_write_report_creates_file(tmp_path):
    path = write_report(_sections(), tmp_path / "report.html", environment=ENV)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "Bead tracking" in text and "<img" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_no_partial_file_when_a_figure_fails(tmp_path):
    path = tmp_path / "report.html"
    broken = DemoSection(
        "Broken", (Metric("m", 1.0),), 0.0, figures=(("bad", _BrokenFigure()),), domain="broken"
    )
    with pytest.raises(RuntimeError, match="cannot be drawn"):
        write_report([*_sections(), broken], path, environment=ENV)
    assert list(tmp_path.iterdir()) == []  # no report, no temporary left behind
    path.write_text("previous report", encoding="utf-8")
    with pytest.raises(RuntimeError, match="cannot be drawn"):
        write_report([broken], path, environment=ENV)
    assert path.read_text(encoding="utf-8") == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_not_a_figure_raises_type_error(tmp_path):
    section = DemoSection("X", (), 0.0, figures=(("caption", object()),))
    with pytest.raises(TypeError, match="caption"):
        write_report([section], tmp_path / "r.html", environment=ENV)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="missing"):
        write_report(_sections(), tmp_path / "no" / "such" / "r.html", environment=ENV)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0041234, "0.004123"),
        (1234567.0, "1.235e+06"),
        (42, "42"),
        (42.0, "42"),
        (-3.5, "-3.5"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (None, "None"),
        ("text", "text"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_environment_info_lists_versions_and_gpu():
    import numpy as np

    import stacklab

    env = environment_info()
    assert env["stacklab"] == stacklab.__version__
    assert env["numpy"] == np.__version__
    assert env["GPU usable"] in ("yes", "no")
    for key in ("python", "dask", "cupy", "GPU device", "CPU cores"):
        assert key in env
    html = render_report(_sections())
    assert f"<dt>numpy</dt><dd>{np.__version__}</dd>" in html
