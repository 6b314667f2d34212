"""``slimkit demo``: the main job on the built-in default task."""

from __future__ import annotations

import argparse

from slimkit.cli._shared import add_task_options, print_report, progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the built-in default task (digits)")
    add_task_options(p, default_task="digits-resnet18")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="short latency runs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from slimkit.api.benchmark import DEFAULT_TARGETS, benchmark

    progress(f"demo: benchmarking task '{args.task}' on {', '.join(DEFAULT_TARGETS)}")
    report = benchmark(args.task, DEFAULT_TARGETS, out=args.out, threads=args.threads, quick=args.quick,
                       seed=args.seed, progress=progress)
    print_report(report, args.out)
    return 0
