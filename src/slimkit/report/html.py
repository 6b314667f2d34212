"""report.html: one self-contained page (inline SVG plots, no scripts, no external files)."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

from slimkit.report._format import speedup_of
from slimkit.report._sections import sections
from slimkit.report.markdown import COLUMNS, busy_note, cpu_note, row
from slimkit.report.schema import Entry, Report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px;margin:1rem 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child,td:nth-child(2){text-align:left}
tr.best{background:#e6f4ea;font-weight:600} tr.miss{color:#999}
.plots{display:flex;flex-wrap:wrap;gap:1rem} .plots svg{max-width:560px;height:auto}
code{background:#f4f4f4;padding:1px 4px} pre{background:#f4f4f4;padding:8px;overflow-x:auto}
g.point{cursor:help}
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
    floor = report.constraints.get("metric_floor")
    low = _y_floor(report, floor)
    for e in report.entries:
        x = e.latency_ms if cost == "latency" else e.measurement.size_bytes / 2**20
        points.append((x, max(e.measurement.metric, low) if low is not None else e.measurement.metric, e))
    tips = {}
    for i, (x, y, e) in enumerate(points):
        color = "#1a7f37" if e.id == report.best else ("#0969da" if e.id in front_ids else "#999999")
        below = low is not None and e.measurement.metric < low
        marker = "v" if below else ("s" if e.id == "baseline" else "o")  # v: far below, drawn at the edge
        ax.scatter([x], [y], c=color, marker=marker, s=36, zorder=3).set_gid(f"slimkit-point-{i}")
        tips[f"slimkit-point-{i}"] = _tooltip(e, report)
    front = sorted((x, y) for x, y, e in points if e.id in front_ids)
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="#0969da", lw=1, zorder=2)
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
    text = text[text.index("<svg"):]
    for gid, tip in tips.items():  # hovering a point shows what it is (SVG titles: no script needed)
        text = text.replace(f'<g id="{gid}">', f'<g id="{gid}" class="point"><title>{html.escape(tip)}</title>', 1)
    return text


def _y_floor(report: Report, floor: float | None) -> float | None:
    """The lowest metric the plots show: a model far below the floor (10% accuracy) would squash every
    usable one into a line; it is drawn at this edge instead, as a triangle, its value in its tooltip."""
    if floor is None:
        return None
    base = report.baseline.measurement.metric
    return floor - max(3 * abs(base - floor), 0.05 * abs(base), 1e-6)


def _tooltip(e: Entry, report: Report) -> str:
    m = e.measurement
    lat = m.latency
    steps = " + ".join(s.get("type", "?") for s in e.recipe if s.get("type") != "target") or "unmodified"
    value, ci = speedup_of(e, report.baseline)
    speed = f"{value:.2f}x" + (f" ({ci[0]:.2f}-{ci[1]:.2f}, paired)" if ci else "")
    return (f"{e.id} on {e.target}: {steps}\n{m.metric_name} {m.metric:.4g}\n"
            f"latency {lat.median:.3f} ms (95% CI {lat.ci95[0]:.3f}-{lat.ci95[1]:.3f}), speed-up {speed}\n"
            f"size {m.size_bytes / 2**20:.2f} MiB" + (f"\nmisses: {'; '.join(e.missed)}" if e.missed else ""))


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


def _answer(report: Report, out: Path | None) -> str:
    """Which model, and why: the constraints, the recommended model with its paired speed-up and the
    reason it was chosen, and how to load and run it; or, with none, what the closest one missed."""
    c = report.constraints
    base = report.baseline.measurement
    rules = []
    if c.get("metric_floor") is not None:
        rules.append(f"{base.metric_name} at least {c['metric_floor']:.4g} (the baseline's {base.metric:.4g} "
                     f"minus the allowed drop {c.get('max_drop', 0):.4g})")
    if c.get("latency_budget_ms"):
        rules.append(f"batch-1 latency at most {c['latency_budget_ms']:g} ms")
    if c.get("size_budget_bytes"):
        rules.append(f"size at most {c['size_budget_bytes'] / 2**20:.2f} MiB")
    rules.append("faster than the baseline and than the unmodified model on its own target, timed in turns")
    body = "<p>Constraints: " + html.escape("; ".join(rules)) + ".</p>"
    if report.best is None:
        near = [e for e in report.candidates if e.missed]
        met = [e for e in report.candidates if not e.missed]
        body += ("<p><b>No model met them.</b> " if not met else
                 f"<p><b>{len(met)} candidate(s) met the accuracy and budgets but none was faster than the baseline "
                 "and its unmodified model in turns</b> (their notes say by how much). ") + "".join(
            f"{html.escape(e.id)} missed: {html.escape('; '.join(e.missed))}. " for e in near[:5]) + "</p>"
        return _section("Which model, and why", body)
    best = report.entry(report.best)
    value, ci = speedup_of(best, report.baseline)
    eligible = sum(1 for e in report.candidates if e.meets_constraints)
    how = f"{value:.2f}x torch eager" + (f" (95% CI {ci[0]:.2f}-{ci[1]:.2f}, timed in turns)" if ci else "")
    body += (f"<p><b>Recommended: {html.escape(best.id)}</b> on {html.escape(best.target)}: {html.escape(how)}, "
             f"{html.escape(best.measurement.metric_name)} {best.measurement.metric:.4g}, "
             f"{best.measurement.size_bytes / 2**20:.2f} MiB. Of the {eligible} candidate(s) meeting the "
             "constraints it has the largest speed-up.</p>")
    folder = str(out) if out is not None else "RUN_FOLDER"
    model_arg = ", model=MyModel()" if best.target == "torch" else ""
    snippet = (f'import slimkit\n\nmodel = slimkit.load("{folder}", entry="{best.id}"{model_arg})\n'
               "outputs = model(inputs)  # the same inputs as the original model, any batch size\n\n"
               f"# or, from the command line:\n# slimkit predict --model {folder} --entry {best.id} --input FILE")
    body += f"<p>Load and run it:</p><pre><code>{html.escape(snippet)}</code></pre>"
    return _section("Which model, and why", body)


def to_html(report: Report, out: Path | None = None) -> str:
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
{_answer(report, out)}
<div class="plots">{_plot(report, "latency")}{_plot(report, "size")}</div>
<p>Green: best; blue: on the Pareto front; square: baseline; triangle: far below the floor (drawn at the
edge). Hover a point for its recipe, metric, latency with its 95% interval and size. Latency is the
median of many batch-1 runs; speed-ups are paired (timed in turns with the baseline).</p>
<table><tr>{head}</tr>{''.join(rows)}</table>
<ul>{notes}</ul>
{_extra_sections(report.extra)}
</body></html>
"""
