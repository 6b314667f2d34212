"""report.html: one self-contained page (inline SVG plots, no scripts, no external files)."""

from __future__ import annotations

import html
import io
from typing import Any

from slimkit.report._sections import sections
from slimkit.report.markdown import COLUMNS, busy_note, cpu_note, row
from slimkit.report.schema import Report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px;margin:1rem 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child,td:nth-child(2){text-align:left}
tr.best{background:#e6f4ea;font-weight:600} tr.miss{color:#999}
.plots{display:flex;flex-wrap:wrap;gap:1rem} .plots svg{max-width:560px;height:auto}
code{background:#f4f4f4;padding:1px 4px}
"""


def _plot(report: Report, cost: str) -> str:
    """Metric vs ``cost`` ("latency" or "size") as inline SVG; empty if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ""
    front_ids = set(report.extra.get("pareto_metric_size", [])) if cost == "size" else \
        {e.id for e in report.entries if e.pareto}
    fig, ax = plt.subplots(figsize=(5.6, 3.8), dpi=100)
    points = []
    for e in report.entries:
        x = e.latency_ms if cost == "latency" else e.measurement.size_bytes / 2**20
        points.append((x, e.measurement.metric, e))
    for x, y, e in points:
        color = "#1a7f37" if e.id == report.best else ("#0969da" if e.id in front_ids else "#999999")
        marker = "s" if e.id == "baseline" else "o"
        ax.scatter([x], [y], c=color, marker=marker, s=36, zorder=3)
    front = sorted((x, y) for x, y, e in points if e.id in front_ids)
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="#0969da", lw=1, zorder=2)
    floor = report.constraints.get("metric_floor")
    if floor is not None:
        ax.axhline(floor, color="#cf222e", lw=0.8, ls="--", label="metric floor")
        ax.legend(loc="lower right", fontsize=8)
    _x_axis(ax, [x for x, _, _ in points])
    ys = [y for _, y, _ in points] + ([floor] if floor is not None else [])
    span = max(ys) - min(ys)
    if span < 1e-9 * max(1.0, abs(max(ys))) or span < 0.02 * abs(max(ys)):
        # matplotlib pads a flat range by 5% of the value: accuracy 99.7 was drawn on 95-105.
        pad = max(span * 0.15, 0.002 * max(1.0, abs(max(ys))))
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    log = ax.get_xscale() == "log"
    unit = "batch-1 latency, ms" if cost == "latency" else "size on disk, MiB"
    ax.set_xlabel(f"{unit} (log)" if log else unit)
    ax.set_ylabel(report.baseline.measurement.metric_name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _x_axis(ax: Any, xs: list[float]) -> None:
    """Log scale with ticks at 1-2-5 steps where the values span a wide range; linear where they do
    not (a log axis spanning less than a decade had no labelled tick at all)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [x for x in xs if x > 0]
    if not positive or max(positive) / min(positive) < 4:
        ax.set_xlim(left=0)
        return
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def _extra_sections(extra: dict[str, Any]) -> str:
    parts = []
    for sec in sections(extra):
        body = "".join(f"<p>{html.escape(line)}</p>" for line in sec.lines)
        if sec.rows:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in sec.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in sec.rows)
            body += f"<table><tr>{head}</tr>{rows}</table>"
            if sec.more:
                body += f"<p>({sec.more} more rows in report.json)</p>"
        parts.append(_section(sec.title, body))
    return "".join(parts)


def to_html(report: Report) -> str:
    env = report.environment
    rows = []
    for e in report.entries:
        cls = "best" if e.id == report.best else ("" if e.meets_constraints else "miss")
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row(e, report.baseline, report.best))
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    notes = "".join(f"<li>{html.escape(e.id)}: {html.escape(n)}</li>" for e in report.entries for n in e.notes)
    busy = busy_note(report)
    if busy:
        notes = f"<li><b>warning</b>: {html.escape(busy)}</li>" + notes
    notes += "".join(f"<li>skipped {html.escape(s['target'])}: {html.escape(s['reason'])}</li>"
                     for s in report.skipped)
    best = html.escape(report.best) if report.best else "none (no candidate met the constraints and beat the baseline)"
    machine = f"{env['cpu']['model']}, {env['cpu']['cores']} cores{cpu_note(env)}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>slimkit report: {html.escape(report.task)}</title>
<style>{_STYLE}</style></head><body>
<h1>slimkit report: {html.escape(report.task)}</h1>
<p><code>{html.escape(report.command)}</code> — {html.escape(report.created)}</p>
<p>Machine: {html.escape(machine)}, {env['threads']} threads;
torch {html.escape(str(env['versions']['torch']))}. Baseline: the unmodified model on torch eager.
Metric: {html.escape(report.baseline.measurement.metric_name)} (higher is better).</p>
<p><b>Best: {best}</b></p>
<div class="plots">{_plot(report, "latency")}{_plot(report, "size")}</div>
<p>Green: best; blue: on the Pareto front; square: baseline. Latency is the median of many batch-1 runs;
its 95% confidence interval is in the table.</p>
<table><tr>{head}</tr>{''.join(rows)}</table>
<ul>{notes}</ul>
{_extra_sections(report.extra)}
</body></html>
"""
