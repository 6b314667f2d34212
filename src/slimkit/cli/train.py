"""``slimkit train``: train a task's model with the engine (optionally data-parallel)."""

from __future__ import annotations

import argparse

from slimkit.cli._shared import add_task_options, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a task's model: mixed precision, checkpoints, DDP")
    add_task_options(p)
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs in all (default 10; on --resume the run's, or more to extend it)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch size (default: the task's; 0 = full batch, 1 = per-sample)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (AdamW, cosine; the efficient recipe adds a warm-up and scales it with a "
                        "bigger batch; default 1e-3, on --resume the run's)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                   help="default auto: times real steps and never picks one slower than fp32")
    p.add_argument("--recipe", choices=["efficient", "plain"], default=None,
                   help="efficient (default): memory format, optimizer kernel, batch size, torch.compile and "
                        "warm-up chosen by timing a few steps on this host; plain: the settings as given")
    p.add_argument("--progressive-resizing", action="store_true", default=None,
                   help="efficient recipe: may train the first epochs at half the image side (when measured "
                        "faster; only where smaller images still carry the label)")
    p.add_argument("--nproc", type=positive_int, default=1, help="processes for DDP through torchrun")
    p.add_argument("--nnodes", type=positive_int, default=1, help="machines training together (torchrun, c10d)")
    p.add_argument("--node-rank", type=int, default=0, help="this machine's rank among --nnodes (0 first)")
    p.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                   help="with --nnodes: the rendezvous address, the same on every machine (e.g. node0:29400)")
    p.add_argument("--until", type=float, default=None, metavar="METRIC",
                   help="stop once the evaluation metric reaches this value; train.json records the time, "
                        "epochs, items and core-hours it took")
    p.add_argument("--price-per-core-hour", type=float, default=None, metavar="PRICE",
                   help="with --until: the cost of those core-hours at this price")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--scratch", action="store_true", help="re-initialize the task's model before training")
    p.add_argument("--out", required=True, help="run folder: metrics.jsonl, precision.json, checkpoints/")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from slimkit.api.train import fit_task
    from slimkit.ui import emit_json, out

    if args.threads:
        torch.set_num_threads(args.threads)
    result = fit_task(args.task, out=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      precision=args.precision, resume=args.resume, scratch=args.scratch, seed=args.seed,
                      nproc=args.nproc, progress=True, until=args.until, nnodes=args.nnodes,
                      node_rank=args.node_rank, rdzv_endpoint=args.rdzv_endpoint,
                      price_per_core_hour=args.price_per_core_hour, recipe=args.recipe,
                      progressive_resizing=args.progressive_resizing)
    last = result.history[-1] if result.history else {}
    metric = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("epoch", "lr"))
    prec = result.precision
    ran = len(result.history) - result.resumed_from
    done = f"trained {ran} epoch(s)" + (f" after the {result.resumed_from} resumed from ({len(result.history)} in all)"
                                        if result.resumed_from else "")
    if result.resumed_from and not ran:
        done = f"nothing to train: all {len(result.history)} epoch(s) were already done"
    out.print(f"{done} in {result.seconds:.1f}s ({metric}); "
              f"precision {prec.precision if prec else '?'}: {prec.reason if prec else ''}")
    if result.recipe:
        out.print(recipe_line(result.recipe))
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}")
    if args.until is not None:
        out.print(_until_line(args.out))
    out.print(f"run folder: {args.out} (metrics.jsonl, precision.json, train.json, model.safetensors)")
    emit_json({"out": args.out, "epochs": len(result.history), "trained_now": ran, "seconds": result.seconds,
               "last": last, "precision": prec.precision if prec else None, "notes": result.notes,
               "recipe": result.recipe,
               "model": f"{args.out}/model.safetensors"})
    return 0


def recipe_line(recipe: dict) -> str:
    """One line of the efficient recipe's choices and the probe's cost."""
    shown = []
    for name, c in recipe.get("choices", {}).items():
        if name in ("threads", "schedule") or c.get("value") in (None, False):
            continue
        gain = f" {c['gain']:.2f}x" if isinstance(c.get("gain"), (int, float)) else ""
        shown.append(f"{name.replace('_', ' ')} {c['value']}{gain}")
    probe = recipe.get("probe_seconds", 0)
    return f"recipe: {', '.join(shown)} (probe {probe:.1f} s; each choice's reason in train.json)"


def _until_line(out_dir: str) -> str:
    """What --until found, from the run's train.json (rank 0 wrote it, in this process or under torchrun)."""
    import json
    from pathlib import Path

    u = json.loads((Path(out_dir) / "train.json").read_text()).get("until") or {}
    if not u.get("reached"):
        return f"[yellow]{u.get('metric')} never reached {u.get('value')}[/] ({u.get('core_hours')} core-hours spent)"
    cost = f", cost {u['cost']:.4g} at {u['price_per_core_hour']:g} per core-hour" if u.get("cost") is not None else ""
    return (f"reached {u['metric']} {u['value']:g} in {u['time_to_metric_s']:.1f} s: {u['epochs']} epoch(s), "
            f"{u['samples']} training items, {u['core_hours']:.4f} core-hours on {u['cores']} cores{cost}")
