"""Self-contained HTML reports of demo and pipeline runs.

:func:`write_report` turns a list of :class:`stacklab.demo.DemoSection` into one HTML file with a
summary table, a section per domain (metrics, text, embedded PNG figures) and the software
environment. :func:`environment_info` describes that environment (also used by ``stacklab info``).
"""

from __future__ import annotations

from .html import environment_info, format_value, render_report, write_report

__all__ = ["environment_info", "format_value", "render_report", "write_report"]
