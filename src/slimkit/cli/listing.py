"""``slimkit list``: tasks, techniques and targets, with what is available and why not."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list tasks, techniques and targets and their availability")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from slimkit.targets import TARGETS
    from slimkit.tasks import list_tasks
    from slimkit.techniques import list_techniques
    from slimkit.ui import out

    tasks = Table(title="tasks", title_justify="left")
    tasks.add_column("name")
    tasks.add_column("description")
    for name, desc in list_tasks():
        tasks.add_row(name, desc)
    tasks.add_row("path/to/file.py:function", "your own task: a function returning slimkit.Task")
    out.print(tasks)

    techniques = Table(title="techniques", title_justify="left")
    for col in ("name", "available", "description"):
        techniques.add_column(col)
    for name, ok, desc in list_techniques():
        techniques.add_row(name, "[green]yes[/]" if ok is True else f"[red]no[/]: {ok}", desc)
    out.print(techniques)

    targets = Table(title="targets", title_justify="left")
    for col in ("name", "available", "description"):
        targets.add_column(col)
    for name, target in TARGETS:
        avail = target.availability()
        status = f"[green]yes[/] ({avail.reason})" if avail.ok else f"[red]no[/]: {avail.reason}"
        targets.add_row(name, status, target.description)
    out.print(targets)
    return 0
