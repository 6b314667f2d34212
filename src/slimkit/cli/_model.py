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


def task_from_args(args: argparse.Namespace) -> Any:
    """``--task``, or the Task that ``--model`` and ``--data`` make."""
    from slimkit.errors import UsageError

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
    columns = Columns(args.text_column, args.label_column)
    data = load_data(args.data, user, columns=columns)
    if user.labels is None and isinstance(getattr(data, "classes", None), list):
        user.labels = [str(c) for c in data.classes]  # an image folder's class names, in label order
    eval_data = load_data(args.eval_data, user, columns=columns) if args.eval_data else None
    return task_from_user_model(user, data, eval_data=eval_data, metric=args.metric, seed=args.seed)
