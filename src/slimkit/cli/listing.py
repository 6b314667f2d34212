"""``slimkit list``: tasks, techniques and targets, with what is available and why not."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list tasks, techniques and targets and their availability")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from slimkit.plugins import availability, broken
    from slimkit.plugins import techniques as registered
    from slimkit.targets import TARGETS
    from slimkit.tasks import list_tasks
    from slimkit.ui import emit_json, out

    tasks = Table(title="tasks", title_justify="left")
    tasks.add_column("name")
    tasks.add_column("description")
    for name, desc in list_tasks():
        tasks.add_row(name, desc)
    tasks.add_row("path/to/file.py:function", "your own task: a function returning slimkit.Task")
    out.print(tasks)

    techniques = Table(title="techniques", title_justify="left")
    for col in ("name", "available", "description", "search dimensions"):
        techniques.add_column(col)
    for name, tech in registered().items():
        why_not = availability(tech)
        techniques.add_row(name, "[green]yes[/]" if why_not is None else f"[red]no[/]: {escape(why_not)}",
                           escape(tech.description), ", ".join(d.name for d in tech.dimensions))
    out.print(techniques)

    _print_quantization_matrix(out)

    targets = Table(title="targets", title_justify="left")
    for col in ("name", "available", "description"):
        targets.add_column(col)
    for name, target in TARGETS:
        avail = target.availability()
        status = f"[green]yes[/] ({avail.reason})" if avail.ok else f"[red]no[/]: {avail.reason}"
        targets.add_row(name, status, target.description)
    out.print(targets)
    for name, why in broken().items():
        out.print(f"[red]plug-in {escape(name)} could not be loaded[/]: {escape(why)}")
    emit_json({"tasks": dict(list_tasks()),
               "techniques": {n: {"available": availability(t) is None, "why_not": availability(t),
                                  "dimensions": [d.name for d in t.dimensions]} for n, t in registered().items()},
               "targets": {n: {"available": t.availability().ok, "detail": t.availability().reason}
                           for n, t in TARGETS},
               "broken_plugins": broken()})
    return 0


def _print_quantization_matrix(out: object) -> None:
    """quantize: which scheme runs on which target; each "no" points at the reason."""
    from rich.table import Table

    from slimkit.techniques.quantize import SCHEMES, matrix_rows

    rows = matrix_rows()
    targets = list(dict.fromkeys(t for _, t, _, _ in rows))
    reasons: list[str] = []
    cells: dict[tuple[str, str], str] = {}
    for scheme, target, ok, why in rows:
        if ok:
            cells[scheme, target] = "[green]yes[/]"
            continue
        if why not in reasons:
            reasons.append(why)
        cells[scheme, target] = f"[red]no[/] ({reasons.index(why) + 1})"
    table = Table(title="quantize: scheme x target (slimkit quantize --scheme S --target X)", title_justify="left")
    table.add_column("scheme")
    for t in targets:
        table.add_column(t)
    for scheme in SCHEMES:
        table.add_row(scheme, *(cells[scheme, t] for t in targets))
    out.print(table)  # type: ignore[attr-defined]
    for i, why in enumerate(reasons, 1):
        out.print(f"  ({i}) {why}")  # type: ignore[attr-defined]
