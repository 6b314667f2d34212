"""``slimkit env``: versions, CPU flags, threads, GPU."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="show versions, CPU flags, threads and GPU")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from slimkit.measure.env import environment
    from slimkit.ui import out

    env = environment()
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    table = Table(show_header=False, title="slimkit environment", title_justify="left")
    table.add_row("platform", env["platform"])
    table.add_row("cpu", f"{env['cpu']['model']} ({env['cpu']['cores']} cores)")
    table.add_row("cpu flags", " ".join(env["cpu"]["flags"]) or "-")
    table.add_row("int8 kernels", "no VNNI: uint8 x int8 sums can saturate; QAT keeps 7-bit weights"
                  if env["cpu"]["int8_dot_saturates"] else "no saturation (VNNI/AMX, or not x86)")
    table.add_row("torch threads", str(env["threads"]))
    table.add_row("gpu", env["gpu"] or "none")
    for name, version in env["versions"].items():
        table.add_row(name, version or "[dim]not installed[/]")
    out.print(table)
    return 0
