"""``slimkit run``: re-run a recipe file on a task."""

from __future__ import annotations

import argparse

from slimkit.cli._model import add_model_options
from slimkit.cli._shared import positive_int, print_report, progress, split_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="re-run a recipe (a run's recipe.yaml, or a search's best/) on a task")
    p.add_argument("recipe", help="recipe.yaml, or a run folder / best/ folder holding one")
    p.add_argument("--task", default=None,
                   help="built-in task name or path/to/file.py:function (default: the recipe's task)")
    p.add_argument("--targets", default=None, help="comma-separated targets (default: the recipe's)")
    p.add_argument("--max-drop", type=float, default=None, help="metric drop still accepted (default: the recipe's)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for every target (default: all cores this process may use)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's)")
    p.add_argument("--quick", action="store_true", help="short latency runs (smoke tests)")
    p.add_argument("--out", required=True, help="run folder for report.json, report.md, recipe.yaml and artifacts")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from slimkit.api.run import run as run_recipe
    from slimkit.cli._model import task_from_args
    from slimkit.pipeline.runfile import RunRecipe

    targets = split_list(args.targets) if args.targets is not None else None
    task = args.task
    if args.model is not None or args.task is None:
        # A run on a user's model recorded its --model/--data options; the command line may override them.
        source = RunRecipe.load(args.recipe).extra.get("source")
        if args.model is not None or isinstance(source, dict):
            task = task_from_args(args, recorded=source if isinstance(source, dict) else None)
    report = run_recipe(args.recipe, task, out=args.out, targets=targets, max_drop=args.max_drop,
                        threads=args.threads, quick=args.quick, seed=args.seed, progress=progress)
    print_report(report, args.out)
    return 0
