"""``slimkit tune``: hyperparameter tuning of training."""

from __future__ import annotations

import argparse

from slimkit.cli._shared import add_task_options, positive_int, progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="tune training hyperparameters (grid, random, TPE, GP; pruners)")
    add_task_options(p)
    p.add_argument("--space", required=True, help="YAML file: TrainConfig field -> choices or {low, high, log}")
    p.add_argument("--trials", type=positive_int, default=10, help="number of trials (default 10)")
    p.add_argument("--sampler", choices=("grid", "random", "tpe", "gp"), default="tpe")
    p.add_argument("--pruner", choices=("none", "median", "hyperband"), default="median",
                   help="stops trials whose validation lags (default: median)")
    p.add_argument("--out", required=True, help="folder for tune.json and best_params.yaml")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from slimkit.api.tune import load_space, tune
    from slimkit.ui import emit_json, out

    result = tune(args.task, load_space(args.space), trials=args.trials, sampler=args.sampler,
                  pruner=args.pruner, out=args.out, seed=args.seed, threads=args.threads,
                  progress=progress)
    table = Table(title=f"{result['task']}: validation {result['metric']} per trial", title_justify="left")
    for col in ("trial", "state", "params", "validation", "epochs"):
        table.add_column(col)
    for row in result["trials"]:
        partial = row.get("partial_validation")
        value = f"{row['validation']:.4g}" if row["validation"] is not None else \
            f"({partial:.4g} at stop)" if partial is not None else "-"
        table.add_row(str(row["trial"]), row["state"], str(row["params"]), value, str(row["epochs_run"]))
    out.print(table)
    out.print(f"best: {result['best_params']} (validation {result['best_validation']:.4g}; "
              f"evaluation set {result['eval_metric_of_best']:.4g})")
    out.print(f"written: {args.out}/tune.json, {args.out}/best_params.yaml")
    emit_json({**result, "out": args.out, "files": [f"{args.out}/tune.json", f"{args.out}/best_params.yaml"]})
    return 0
