"""``--model`` and ``--data``: a user's own model and data on the command line, instead of ``--task``."""

from __future__ import annotations

import argparse
from typing import Any

from slimkit.cli._shared import positive_int


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("your own model (instead of --task)")
    g.add_argument("--model", metavar="SPEC",
                   help="torchvision:NAME, timm:NAME, hf:LOCAL_DIR or path/to/file.py:function")
    g.add_argument("--weights", metavar="FILE", help="weights for --model: safetensors, or a state_dict .pt/.pth")
    g.add_argument("--data", metavar="SPEC",
                   help="imagefolder:DIR, csv:FILE, jsonl:FILE or hf-disk:DIR (calibration and recovery data)")
    g.add_argument("--eval-data", metavar="SPEC", help="data to measure on (default: a fifth of --data held out)")
    g.add_argument("--text-column", default="text", help="text column of csv/jsonl data (default: text)")
    g.add_argument("--label-column", default="label", help="label column, if any (default: label)")
    g.add_argument("--max-length", type=positive_int, default=128, help="tokens per text (default: 128)")
    g.add_argument("--image-size", type=positive_int, default=224, help="image side after cropping (default: 224)")
    g.add_argument("--metric", choices=("accuracy", "agreement", "cosine"),
                   help="accuracy (labels), agreement or cosine with the original model (default: from the data)")


SOURCE_OPTIONS = {"model": None, "weights": None, "data": None, "eval_data": None, "text_column": "text",
                  "label_column": "label", "max_length": 128, "image_size": 224, "metric": None}


def task_from_args(args: argparse.Namespace, recorded: dict[str, Any] | None = None) -> Any:
    """``--task``, or the Task that ``--model`` and ``--data`` make (``recorded``: a recipe's
    options, used where the command line gives none)."""
    from slimkit.errors import UsageError

    if recorded and args.task is None and getattr(args, "model", None) is None:
        for key, default in SOURCE_OPTIONS.items():
            if getattr(args, key, default) == default and key in recorded:
                setattr(args, key, recorded[key])
    model_given = getattr(args, "model", None) is not None
    if model_given == (args.task is not None):
        raise UsageError("give either --task or --model (with --data)",
                         hint="e.g. --task digits-cnn, or --model torchvision:resnet18 --data imagefolder:DIR")
    if not model_given:
        if getattr(args, "data", None) or getattr(args, "eval_data", None):
            raise UsageError("--data goes with --model; a task brings its own data")
        return args.task
    if not args.data:
        raise UsageError("--model needs --data: a few batches of its inputs (calibration, evaluation)",
                         hint="e.g. --data imagefolder:photos/ or --data csv:reviews.csv")
    from slimkit.tasks.sources import Columns, load_data
    from slimkit.tasks.user import task_from_user_model
    from slimkit.tasks.zoo import load_model

    user = load_model(args.model, weights=args.weights, image_size=args.image_size, max_length=args.max_length)
    if args.weights is None and args.model.startswith(("torchvision:", "timm:")):
        from slimkit.cli._shared import progress

        progress(f"{args.model} has random weights (no --weights given): fine for speed, not for accuracy")
    columns = Columns(args.text_column, args.label_column)
    data = load_data(args.data, user, columns=columns, image_size=args.image_size)
    eval_data = load_data(args.eval_data, user, columns=columns, image_size=args.image_size) if args.eval_data else None
    metric = args.metric
    classes = getattr(data, "classes", None)
    if isinstance(classes, list):  # an image folder: one class per subfolder
        if _output_width(user, data) == len(classes):
            user.labels = user.labels or [str(c) for c in classes]
        elif metric is None:
            # Folder indices are not the model's classes (an ImageNet head over cats and dogs):
            # measure agreement with the original model instead of accuracy against them.
            metric = "agreement"
    task = task_from_user_model(user, data, eval_data=eval_data, metric=metric, seed=args.seed or 0)
    task.source = {k: getattr(args, k) for k, default in SOURCE_OPTIONS.items() if getattr(args, k) != default}
    return task


def _output_width(user: Any, data: Any) -> int | None:
    """How many classes the model's output holds, from one item of ``data``."""
    import torch

    from slimkit.core.task import run_model
    from slimkit.tasks._adapters import Signature

    x = data[0][0].unsqueeze(0)
    with torch.no_grad():
        out = run_model(user.model, {Signature.of(user.model).names[0]: x})
    return int(out.shape[1]) if out.dim() == 2 else None
