"""``slimkit bench``: one model on several targets, side by side."""

from __future__ import annotations

import argparse

from slimkit.cli._model import add_model_options
from slimkit.cli._shared import add_objective_option, add_task_options, print_report, progress, split_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure a task's model on several targets side by side")
    add_task_options(p, model=True)
    add_model_options(p)
    p.add_argument("--targets", default="torch,onnxruntime,openvino",
                   help="comma-separated targets (see `slimkit list`)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="metric drop still accepted (default: the task's, else 1%% of the baseline's metric)")
    add_objective_option(p)
    p.add_argument("--quick", action="store_true", help="short latency runs (smoke tests)")
    p.add_argument("--out", required=True, help="run folder for report.json, report.md and artifacts")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from slimkit.api.benchmark import benchmark
    from slimkit.cli._model import task_from_args

    targets = split_list(args.targets)
    report = benchmark(task_from_args(args), targets=targets, out=args.out, threads=args.threads,
                       max_drop=args.max_drop, quick=args.quick, seed=args.seed, progress=progress,
                       objective=args.objective or "latency")
    print_report(report, args.out)
    return 0
