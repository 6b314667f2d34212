"""``slimkit prune``: prune a task's model, recover it, measure it beside the unpruned baseline."""

from __future__ import annotations

import argparse

from slimkit.cli._model import add_model_options
from slimkit.cli._shared import add_objective_option, add_task_options, positive_int, print_report, progress, split_list


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got '{text}'") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a task's model (structured or unstructured) and measure it")
    add_task_options(p, model=True)
    add_model_options(p)
    p.add_argument("--ratio", type=_ratio, required=True,
                   help="fraction of channels (structured) or weights (unstructured) to remove")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--structured", action="store_true", help="remove channels, neurons, attention heads")
    kind.add_argument("--unstructured", action="store_true", help="zero single weights (sparse storage)")
    p.add_argument("--criterion", choices=["l1", "l2", "taylor", "bn_scale", "activation"], default="l2",
                   help="importance criterion (default l2 magnitude; activation: data-aware, transformers)")
    p.add_argument("--scope", choices=["uniform", "global"], default="uniform",
                   help="same ratio in every layer, or one ranking across layers")
    p.add_argument("--pattern", choices=["none", "2:4"], default="none", help="unstructured: 2:4 semi-structured")
    p.add_argument("--schedule", choices=["oneshot", "gradual"], default="oneshot",
                   help="unstructured: raise sparsity on a cubic schedule during recovery")
    p.add_argument("--round-to", type=positive_int, default=None,
                   help="round kept channel counts to the nearest multiple of N (the run notes groups it moved)")
    p.add_argument("--head-ratio", type=_ratio, default=None, help="transformers: fraction of heads removed")
    p.add_argument("--ffn-ratio", type=_ratio, default=None, help="transformers: fraction of FFN neurons removed")
    p.add_argument("--target-macs", type=float, default=None,
                   help="reach this MAC reduction factor with sensitivity-chosen per-layer ratios")
    p.add_argument("--ignore", default="", help="comma-separated layer names never pruned")
    p.add_argument("--recover-epochs", type=int, default=0, help="fine-tuning epochs budget (0 = none)")
    p.add_argument("--recover", choices=["finetune", "distill"], default="finetune",
                   help="recovery: fine-tune on the task loss, or distil from the unpruned model")
    p.add_argument("--hidden-weight", type=float, default=1.0,
                   help="distil: weight of hidden-state matching where shapes allow (BERT layers; 0 = output only)")
    p.add_argument("--no-reconstruct", dest="reconstruct", action="store_false",
                   help="transformers: skip the least-squares re-fit of the layers that read pruned heads/neurons")
    p.add_argument("--lr", type=float, default=None,
                   help="recovery learning rate (default: by model family, 2e-5 fine-tuning a transformer, 1e-3 a CNN)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="metric drop accepted; recovery stops once within it (default: the task's, else 1%% of "
                        "the baseline's metric)")
    p.add_argument("--targets", default="torch,onnxruntime,openvino", help="comma-separated targets")
    add_objective_option(p)
    p.add_argument("--quick", action="store_true", help="short latency runs (smoke tests)")
    p.add_argument("--out", required=True, help="run folder for report.json, report.md and the pruned model")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from slimkit.api.prune import prune
    from slimkit.cli._model import task_from_args
    from slimkit.techniques.prune import PruneConfig

    cfg = PruneConfig(
        mode="structured" if args.structured else "unstructured", ratio=args.ratio, criterion=args.criterion,
        scope=args.scope, pattern=args.pattern, schedule=args.schedule, round_to=args.round_to,
        head_ratio=args.head_ratio, ffn_ratio=args.ffn_ratio, target_macs=args.target_macs,
        ignore=tuple(split_list(args.ignore)),
        recover_epochs=args.recover_epochs, recover=args.recover, hidden_weight=args.hidden_weight,
        reconstruct=args.reconstruct, lr=args.lr,
        max_drop=args.max_drop, seed=args.seed,
    )
    targets = split_list(args.targets)
    from slimkit.report._format import fmt_bytes, fmt_count

    report = prune(task_from_args(args), config=cfg, targets=targets, out=args.out, threads=args.threads,
                   max_drop=args.max_drop, quick=args.quick, seed=args.seed, progress=progress,
                   objective=args.objective or "latency")
    print_report(report, args.out)
    p = report.extra["pruning"]
    macs = p["macs_before_after"]
    extra = f", sparsity {p['sparsity']:.1%}" if p.get("sparsity") is not None else ""
    progress(f"MACs {fmt_count(macs[0])} -> {fmt_count(macs[1])} ({p['macs_reduction']:.2f}x fewer){extra}; "
             f"pruned model: {args.out}/{p['artifact']} ({fmt_bytes(p['artifact_bytes'])})")
    return 0
