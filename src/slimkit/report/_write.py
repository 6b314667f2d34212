"""Write a report's three files; kept apart from the schema, which the renderers read."""

from __future__ import annotations

from pathlib import Path

from slimkit.core.files import atomic_write_json, atomic_write_text
from slimkit.report.html import to_html
from slimkit.report.markdown import to_markdown
from slimkit.report.schema import Report


def write_report(report: Report, out: str | Path) -> Path:
    """Write report.json, report.md and report.html into ``out`` (each atomically); returns report.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report.to_dict())
    atomic_write_text(out / "report.md", to_markdown(report))
    atomic_write_text(out / "report.html", to_html(report, out))
    return out / "report.json"
