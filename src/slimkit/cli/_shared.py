"""Helpers shared by subcommands: common options and the result table."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from slimkit.ui import console, emit_json, out

if TYPE_CHECKING:  # the report modules load torch: imported when a report is printed, not for --help
    from slimkit.report.schema import Entry, Report


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def split_list(text: str) -> list[str]:
    """Comma-separated names, blanks dropped: "torch, openvino," -> ["torch", "openvino"]."""
    return [part.strip() for part in text.split(",") if part.strip()]


class LazyChoices:
    """An option's choices read from a module on first use: argparse asks only when it parses the
    option or prints that command's help, so building every parser stays free of torch.

    Example:
        >>> "grid" in LazyChoices("slimkit.search.names", "SAMPLERS")
        True
    """

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def _values(self) -> tuple[str, ...]:
        import importlib

        return tuple(getattr(importlib.import_module(self.module), self.name))

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


def add_objective_option(p: argparse.ArgumentParser) -> None:
    """--objective: what the best is chosen for (latency by default)."""
    p.add_argument("--objective", default=None, choices=("latency", "size", "throughput", "memory"),
                   help="what the best is chosen for among the models meeting the accuracy floor and budgets "
                        "(default: latency; size picks the smallest even if a little slower)")


def add_task_options(p: argparse.ArgumentParser, default_task: str | None = None, *, model: bool = False) -> None:
    """--task, --seed, --threads; with ``model``, --task may be left out (cli._model adds --model, --data)."""
    p.add_argument("--task", required=default_task is None and not model, default=default_task,
                   help="built-in task name (see `slimkit list`) or path/to/file.py:function"
                        + (" (or --model with --data)" if model else ""))
    p.add_argument("--seed", type=int, default=0, help="seed of the baseline and data order")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for every target (default: all cores this process may use)")



def progress(message: str) -> None:
    console.log(message)


# 80 columns: the speed-up (paired: timed in turns with the baseline) and its interval replace the
# latency's own interval and p90, which report.md keeps.
_SHORT = ["model", "metric", "b1 ms", "speed-up", "95% CI", "size", "MACs", ""]


def _short_row(entry: Entry, report: Report) -> list[str]:
    from slimkit.report._format import fmt_ratio, speedup_of
    from slimkit.report.markdown import row

    full = row(entry, report.baseline, report.best)
    lat = entry.measurement.latency
    name = entry.id if entry.id == "baseline" or entry.target in entry.id else f"{entry.id}@{entry.target}"
    # "misses accuracy/latency" shortens to "miss": the lines under the table say what and by how much.
    flags = re.sub(r"misses \S+", "miss", full[10]).replace("pareto", "P").replace(", ", " ")
    value, ci = speedup_of(entry, report.baseline)
    interval = "" if entry is report.baseline else f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "unpaired"
    return [name, full[2], f"{lat.median:.3g}", fmt_ratio(value), interval,
            full[6].replace(" ", "").replace("iB", ""), full[8], flags]


def report_summary(report: Report, out_dir: str) -> dict[str, object]:
    """What --json prints for a report: the best with its paired speed-up, every candidate, the paths."""

    from slimkit.report._format import speedup_of

    def brief(e: Entry) -> dict[str, object]:
        value, ci = speedup_of(e, report.baseline)
        return {"id": e.id, "target": e.target, "metric": e.measurement.metric, "latency_ms": e.latency_ms,
                "speedup": round(value, 3), "speedup_ci95": list(ci) if ci else None, "paired": ci is not None,
                "size_bytes": e.measurement.size_bytes, "meets_constraints": e.meets_constraints,
                "missed": e.missed, "artifact": str(Path(out_dir) / e.artifact) if e.artifact else None}

    return {"task": report.task, "metric": report.baseline.measurement.metric_name,
            "constraints": report.constraints, "baseline": brief(report.baseline),
            "best": brief(report.entry(report.best)) if report.best else None,
            "candidates": [brief(c) for c in report.candidates],
            "report": {k: str(Path(out_dir) / f"report.{k}") for k in ("json", "md", "html")}, "out": out_dir}


def print_report(report: Report, out_dir: str) -> None:
    """The result table, compact enough for an 80-column terminal; report.md has every column
    (under --json: the summary as one JSON document instead)."""
    from slimkit.report._format import fmt_speedup
    from slimkit.report.markdown import busy_note

    emit_json(report_summary(report, out_dir))
    metric = report.baseline.measurement.metric_name
    table = Table(title=f"{report.task}: metric = {metric}, baseline = torch eager, batch-1 latency in ms",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True,
                  show_edge=False)
    for col in _SHORT:
        table.add_column(col, justify="left" if col in ("model", "") else "right", no_wrap=True)
    for entry in report.entries:
        style = "bold green" if entry.id == report.best else None
        table.add_row(*_short_row(entry, report), style=style)
    out.print(table)
    out.print("speed-up: over the baseline, timed in turns with it (paired) with its 95% CI; P = on the "
              "metric/latency Pareto front; report.md adds p90, throughput, params, memory")
    busy = busy_note(report)
    if busy:
        out.print(f"[bold yellow]warning[/] {busy}")
    for skip in report.skipped:
        out.print(f"[yellow]skipped[/] {skip['target']}: {skip['reason']}")
    for entry in report.entries:
        if entry.missed:
            out.print(f"[yellow]missed[/] {entry.id}: {'; '.join(entry.missed)}")
        for note in entry.notes:
            out.print(f"[yellow]note[/] {entry.id}: {note}")
    best = f"best: [bold]{report.best or 'none'}[/]"
    if report.best:
        chosen = report.entry(report.best)
        best += f" ({fmt_speedup(chosen, report.baseline)} over torch eager"
        objective = report.constraints.get("objective", "latency")
        if objective != "latency":
            b, c = report.baseline.measurement, chosen.measurement
            said = {"size": f"{b.size_bytes / max(c.size_bytes, 1):.2f}x smaller",
                    "memory": f"{b.peak_memory_bytes / max(c.peak_memory_bytes, 1):.2f}x less memory",
                    "throughput": f"{c.throughput / max(b.throughput, 1e-9):.2f}x the throughput"}[objective]
            best += f"; chosen for {objective}: {said} than the baseline"
        best += ")"
    out.print(f"{best}   report: {out_dir}/report.json, {out_dir}/report.md")
