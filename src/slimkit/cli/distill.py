"""``slimkit distill``: a smaller student learns from the task's model."""

from __future__ import annotations

import argparse

from slimkit.cli._shared import add_task_options, positive_int, print_report, progress, split_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distill the task's model (teacher) into a smaller student")
    add_task_options(p)
    p.add_argument("--student", required=True,
                   help="a task name whose model is the student (same items, e.g. digits-cnn for digits-resnet18) "
                        "or path/to/file.py:function returning an nn.Module")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: by the student's family: 3e-3 for CNNs, 2e-4 for transformers)")
    p.add_argument("--temperature", type=float, default=None,
                   help="softmax temperature T (loss scaled by T^2; default 4)")
    p.add_argument("--alpha", type=float, default=0.9, help="weight of the soft-target loss vs the hard labels")
    p.add_argument("--feature-weight", type=float, default=0.0, help="feature matching through learned adapters")
    p.add_argument("--attention-weight", type=float, default=0.0, help="attention transfer")
    p.add_argument("--pairs", default="", help="teacher.layer=student.layer,... (default: paired by depth)")
    p.add_argument("--label-fraction", type=float, default=1.0, help="share of training labels the student sees")
    p.add_argument("--no-cache", action="store_true", help="run the teacher every step instead of caching logits")
    p.add_argument("--no-alone", action="store_true", help="skip training the student without the teacher")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="fp32",
                   help="training precision (default: fp32; auto times them on this machine)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--max-drop", type=float, default=None)
    p.add_argument("--quick", action="store_true", help="short latency runs (smoke tests)")
    p.add_argument("--out", required=True, help="run folder: report.json, distill.json, student.safetensors")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from slimkit.api.distill import distill
    from slimkit.errors import UsageError
    from slimkit.techniques.distill import DistillConfig

    if args.temperature is not None and args.alpha == 0:
        raise UsageError("--temperature has no effect with --alpha 0 (no soft-target loss)",
                         hint="raise --alpha or drop --temperature")
    temperature = 4.0 if args.temperature is None else args.temperature
    cfg = DistillConfig(temperature=temperature, alpha=args.alpha, feature_weight=args.feature_weight,
                        attention_weight=args.attention_weight,
                        pairs=tuple(split_list(args.pairs)),
                        cache_teacher=not args.no_cache, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        seed=args.seed)
    report = distill(args.task, args.student, out=args.out, config=cfg, label_fraction=args.label_fraction,
                     alone=not args.no_alone, precision=args.precision, threads=args.threads, max_drop=args.max_drop,
                     quick=args.quick, seed=args.seed, progress=progress)
    print_report(report, args.out)
    return 0
