"""Targets of the "your model in, your model out" issue that need a trained model, one run each.

    python benchmarks/your_model.py [--only mobilenet|same-best] [--out runs/bench-your-model] [--threads N]

1. ``mobilenet``: torchvision MobileNetV3-Small trained here by a plain user loop on the digits task's
   images (3x32x32, 1437 training / 360 test items), then ``slimkit.prune(model, train_loader,
   eval_data=test_loader, ratio=0.5, recover_epochs=E)``: structured 50%, recovered by fine-tuning.
   Target: within 2 points of the baseline's accuracy. The same pruning is run a second time with
   BatchNorm re-estimation switched off (monkeypatched), to show what it does on a model whose
   BatchNorms use momentum 0.01.
2. ``same-best``: the digits-cnn model through ``slimkit.optimize(model, loader, eval_data=...)`` (the
   one-call path: data from DataLoaders, the Task built by slimkit) and through the built-in task
   (``slimkit.optimize("digits-cnn", ...)``), same grid space, seed, budget and targets. Target: the
   same best recipe, within timing noise.
Prints a markdown table per part and writes ``summary.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch.utils.data import DataLoader, TensorDataset

import slimkit
from slimkit.pipeline import default_threads


def _loaders(task: slimkit.Task) -> tuple[DataLoader, DataLoader]:
    """The task's training and evaluation items as a user would hold them: DataLoaders of (x, y)."""
    train, test = task.train_data, task.eval_data
    assert isinstance(train, slimkit.Batches) and isinstance(test, slimkit.Batches)
    (name,) = train.inputs
    return (DataLoader(TensorDataset(train.inputs[name], train.targets), batch_size=64),
            DataLoader(TensorDataset(test.inputs[name], test.targets), batch_size=64))


def train_mobilenet(train: DataLoader, epochs: int) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=epochs * len(train))
    data = DataLoader(train.dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(epochs):
        for x, y in data:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
    # A user's own loop leaves running statistics as momentum 0.01 made them; slimkit is handed the model as is.
    return model.eval()


def part_mobilenet(out: Path, threads: int, epochs: int, recover: int) -> dict[str, Any]:
    task = slimkit.load_task("digits-mobilenet")
    train, test = _loaders(task)
    started = time.time()
    model = train_mobilenet(train, epochs)
    trained_s = time.time() - started
    rows = {}
    for label, reestimate in (("with BatchNorm re-estimation", True), ("without (switched off)", False)):
        with ExitStack() as stack:
            if not reestimate:
                for where in ("_apply", "_recover"):
                    stack.enter_context(mock.patch(f"slimkit.techniques.prune.{where}.reestimate", lambda *a, **k: 0))
            r = slimkit.prune(model, train, eval_data=test, ratio=0.5, recover_epochs=recover,
                              targets=["torch"], out=out / ("mobilenet" if reestimate else "mobilenet-no-bn"),
                              threads=threads)
        pruning = r.extra["pruning"]
        rows[label] = {"baseline": r.baseline.measurement.metric,
                       "after_prune": pruning.get("metric_after_prune_before_recovery"),
                       "after_recovery": r.entry("pruned-torch").measurement.metric,
                       "macs_reduction": pruning.get("macs_reduction"),
                       "speedup_torch": r.baseline.latency_ms / r.entry("pruned-torch").latency_ms,
                       "recovery": pruning.get("recovery")}
    print(f"\nMobileNetV3-Small on digits (trained {epochs} epochs in {trained_s:.0f} s), structured 50%, "
          f"{recover} recovery epochs\n")
    print("| run | baseline | after pruning | after recovery | drop | MACs | torch b1 |")
    print("|---|---|---|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['baseline']:.2f} | {row['after_prune']:.2f} | {row['after_recovery']:.2f} | "
              f"{row['baseline'] - row['after_recovery']:+.2f} | {row['macs_reduction']:.2f}x | "
              f"{row['speedup_torch']:.2f}x |")
    return {"epochs": epochs, "recover_epochs": recover, "rows": rows}


def part_same_best(out: Path, threads: int, trials: int) -> dict[str, Any]:
    task = slimkit.load_task("digits-cnn")
    train, test = _loaders(task)
    space = slimkit.SearchSpace(targets=("torch", "onnxruntime"), fuse=(False, True), prune_ratio=(0.0, 0.3),
                                recover_epochs=1, quant_scheme=("none", "int8-static"))
    common = {"space": space, "trials": trials, "sampler": "grid", "max_drop": 1.0, "threads": threads, "seed": 0}
    results = {}
    for label, call in (("built-in task", lambda o: slimkit.optimize("digits-cnn", out=o, **common)),
                        ("your model + DataLoaders", lambda o: slimkit.optimize(task.build_model(), train,
                                                                                eval_data=test, out=o, **common))):
        started = time.time()
        r = call(out / label.split()[0])
        best = r.best_entry
        results[label] = {"best": best.id.split(":", 1)[1] if best else None, "seconds": round(time.time() - started),
                          "metric": best.measurement.metric if best else None,
                          "latency_ms": best.latency_ms if best else None,
                          "baseline_ms": r.baseline.latency_ms}
    print(f"\ndigits-cnn, grid of {trials} points, max drop 1 point\n")
    print("| path | best | accuracy | best b1 ms | baseline b1 ms | wall s |")
    print("|---|---|---|---|---|---|")
    for label, row in results.items():
        print(f"| {label} | {row['best']} | {row['metric']:.2f} | {row['latency_ms']:.4f} | {row['baseline_ms']:.4f} | "
              f"{row['seconds']} |")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("mobilenet", "same-best"))
    p.add_argument("--out", default="runs/bench-your-model")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--epochs", type=int, default=30, help="MobileNetV3 training epochs")
    p.add_argument("--recover-epochs", type=int, default=20)
    p.add_argument("--trials", type=int, default=16)
    args = p.parse_args()
    out = Path(args.out)
    threads = args.threads or default_threads()
    summary: dict[str, Any] = {"host": slimkit.measure.env.environment(threads)["cpu"]}
    if args.only in (None, "mobilenet"):
        summary["mobilenet"] = part_mobilenet(out, threads, args.epochs, args.recover_epochs)
    if args.only in (None, "same-best"):
        summary["same_best"] = part_same_best(out, threads, args.trials)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
