"""``slimkit optimize``: joint search over techniques and targets under the user's constraints."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from slimkit.cli._model import add_model_options
from slimkit.cli._shared import add_objective_option, add_task_options, positive_int, print_report, progress, split_list

if TYPE_CHECKING:
    from slimkit.search.space import SearchSpace


def add_parser(sub: argparse._SubParsersAction) -> None:
    from slimkit.search.names import PRUNERS, SAMPLERS

    p = sub.add_parser("optimize", help="search pruning x quantization x runtime for the best trade-off")
    add_task_options(p, model=True)
    add_model_options(p)
    p.add_argument("--max-drop", type=float, default=None,
                   help="largest accepted metric drop vs the baseline (default: the task's, else 1%% of the "
                        "baseline's metric)")
    p.add_argument("--latency-budget", type=float, default=None, metavar="MS", help="batch-1 latency budget")
    p.add_argument("--size-budget", type=float, default=None, metavar="MB", help="artifact size budget (MiB)")
    p.add_argument("--targets", default=None,
                   help="comma-separated targets (default: torch,onnxruntime,openvino, those available)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=positive_int, default=None, help="number of trials (default 20)")
    budget.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="start no trial after this long (trials running then finish, and the best is "
                             "re-timed: the run ends later by about one trial)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None, help="default tpe (on --resume: the stored one)")
    p.add_argument("--pruner", choices=PRUNERS, default=None,
                   help="stop trials whose pruning recovery lags the others' (single-objective study; "
                        "default none)")
    p.add_argument("--space", default=None, help="YAML/JSON search space (fields of slimkit.search.SearchSpace)")
    p.add_argument("--storage", default=None, help="Optuna RDB URL shared by workers (default: SQLite in --out)")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel local worker processes")
    p.add_argument("--resume", action="store_true", help="continue the search in --out")
    add_objective_option(p)
    p.add_argument("--quick", action="store_true", help="short latency runs (smoke tests)")
    p.add_argument("--out", required=True, help="run folder")
    p.set_defaults(run=run)


def load_space(path: str) -> SearchSpace:
    from slimkit.core.files import read_mapping
    from slimkit.errors import UsageError
    from slimkit.search.space import SearchSpace

    raw = read_mapping(path, "search space")
    if not isinstance(raw, dict):
        raise UsageError(f"{path} must hold a mapping of search-space fields")
    return SearchSpace.from_dict(raw)


def run(args: argparse.Namespace) -> int:
    from slimkit.cli._model import task_from_args
    from slimkit.search.study import optimize
    from slimkit.ui import out

    targets = None if args.targets is None else split_list(args.targets)
    trials = args.trials if args.trials or args.time_budget else (None if args.resume else 20)
    report = optimize(
        task_from_args(args), max_drop=args.max_drop, latency_budget=args.latency_budget,
        size_budget_mb=args.size_budget,
        targets=targets, space=load_space(args.space) if args.space else None, trials=trials,
        time_budget=args.time_budget, sampler=args.sampler, pruner=args.pruner, storage=args.storage,
        workers=args.workers, resume=args.resume, out=args.out, seed=args.seed, threads=args.threads,
        quick=args.quick, progress=progress, objective=args.objective,
    )
    print_report(report, args.out)
    search = report.extra.get("search", {})
    if search.get("trials_failed"):
        out.print(f"[yellow]{len(search['trials_failed'])} trial(s) failed[/]; their errors are in report.json")
    if report.best is None and search.get("closest"):
        out.print(f"[red]no model met the constraints[/]; closest: {search['closest']['id']} "
                  f"({search['closest']['missed']})")
    elif report.best:
        out.print(f"best model exported to {args.out}/{search.get('best_artifact', '')}")
    return 0
