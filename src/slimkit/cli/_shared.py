"""Helpers shared by subcommands: common options and the result table."""

from __future__ import annotations

import argparse

from rich.table import Table

from slimkit.report.markdown import COLUMNS, row
from slimkit.report.schema import Report
from slimkit.ui import console, out


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_task_options(p: argparse.ArgumentParser, default_task: str | None = None) -> None:
    p.add_argument("--task", required=default_task is None, default=default_task,
                   help="built-in task name (see `slimkit list`) or path/to/file.py:function")
    p.add_argument("--seed", type=int, default=0, help="seed of the baseline and data order")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for every target (default: all cores this process may use)")


def progress(message: str) -> None:
    console.log(message)


def print_report(report: Report, out_dir: str) -> None:
    table = Table(title=f"{report.task}: baseline = torch eager; metric = {report.baseline.measurement.metric_name}",
                  title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("id", "target", "flags") else "right")
    for entry in report.entries:
        style = "bold green" if entry.id == report.best else None
        table.add_row(*row(entry, report.baseline, report.best), style=style)
    out.print(table)
    for skip in report.skipped:
        out.print(f"[yellow]skipped[/] {skip['target']}: {skip['reason']}")
    for entry in report.entries:
        for note in entry.notes:
            out.print(f"[yellow]note[/] {entry.id}: {note}")
    out.print(f"best: [bold]{report.best or 'none'}[/]   report: {out_dir}/report.json, {out_dir}/report.md")
