"""``slimkit demo``: the main job on the built-in default task, in under 10 minutes on 2 cores.

It optimizes ``digits-resnet18`` jointly over structured pruning (with recovery), int8
quantization and two runtimes, within 1 point of the baseline's accuracy, then prints the
result table and writes the report (json, md, html) and the best model to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slimkit.cli._shared import add_task_options, print_report, progress
from slimkit.errors import UsageError

# Small on purpose: 8 grid points, each a real prune/recover/quantize/export/measure cycle.
DEMO_SPACE = {
    "targets": ("onnxruntime", "openvino"),
    "fuse": (False,),
    "prune_ratio": (0.0, 0.5),
    "recover_epochs": 2,
    "quant_scheme": ("none", "int8-static"),
}


def _made_by_demo(settings_file: Path, space: object) -> bool:
    from slimkit.search import SearchSpace

    try:
        settings = json.loads(settings_file.read_text())
        return settings.get("sampler") == "grid" and SearchSpace.from_dict(settings["space"]) == space
    except (ValueError, KeyError, TypeError, AttributeError, OSError, UsageError):
        return False


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="optimize the built-in default task (digits-resnet18) end to end")
    add_task_options(p, default_task="digits-resnet18")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo; replaced)")
    p.add_argument("--time-budget", type=float, default=6.0, metavar="MINUTES",
                   help="search time budget after the baseline (default 6)")
    p.add_argument("--quick", action="store_true", help="short latency runs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from slimkit.pipeline.folder import SEARCH_OUTPUTS, clear_own, run_kind
    from slimkit.pipeline.lock import lock_run, release
    from slimkit.report._format import fmt_speedup
    from slimkit.search import SearchSpace, optimize
    from slimkit.ui import out

    out_dir = Path(args.out)
    owner = run_kind(out_dir) if out_dir.is_dir() else None
    if owner not in (None, "optimize"):
        raise UsageError(f"{out_dir} holds a `slimkit {owner}` run; the demo there would mix the two",
                         hint="choose another --out for the demo, or delete that folder first")
    space = SearchSpace(**{k: v for k, v in DEMO_SPACE.items()})  # type: ignore[arg-type]
    if (out_dir / "search.json").exists():
        if not _made_by_demo(out_dir / "search.json", space):
            # It replaced any search folder, so `slimkit demo --out runs/opt` deleted a real search.
            raise UsageError(f"{out_dir} holds a search the demo did not make",
                             hint="choose another --out (the demo replaces only its own earlier runs)")
        # The demo always starts fresh (`slimkit optimize --resume` continues runs), removing only
        # what a search writes: a user's file in the folder stops it instead of being deleted.
        lock_run(out_dir)
        try:
            clear_own(out_dir, SEARCH_OUTPUTS)
        finally:
            release(out_dir)  # optimize locks it again; a refusal leaves no descriptor behind
    progress(f"demo: optimizing '{args.task}' within 1 point of the baseline over pruning x int8 x "
             f"{' / '.join(space.targets)} ({space.size()} combinations, budget {args.time_budget:g} min)")
    report = optimize(args.task, max_drop=1.0, space=space, trials=space.size(), sampler="grid",
                      time_budget=args.time_budget, out=out_dir, seed=args.seed, threads=args.threads,
                      quick=args.quick, progress=progress)
    print_report(report, args.out)
    if report.best:
        best = report.entry(report.best)
        out.print(f"[bold green]best: {best.id}[/] — {fmt_speedup(best, report.baseline)} faster than torch eager at "
                  f"{best.measurement.metric_name} {best.measurement.metric:.2f} "
                  f"(baseline {report.baseline.measurement.metric:.2f}); model in {args.out}/best/")
    out.print(f"open {args.out}/report.html for the Pareto plots")
    return 0
