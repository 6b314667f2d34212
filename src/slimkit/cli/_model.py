"""``--model`` and ``--data``: a user's own model and data on the command line, instead of ``--task``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from slimkit.cli._shared import positive_int

# The options that build a task from a user's model, with their defaults: a recipe records those
# given otherwise, and `slimkit run` reads them back.
SOURCE_OPTIONS = {"model": None, "weights": None, "data": None, "eval_data": None, "text_column": "text",
                  "label_column": "label", "max_length": 128, "image_size": 224, "metric": None}


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("your own model (instead of --task)")
    g.add_argument("--model", metavar="SPEC",
                   help="torchvision:NAME, timm:NAME, hf:LOCAL_DIR or path/to/file.py:function")
    g.add_argument("--weights", metavar="FILE", help="weights for --model: safetensors, or a state_dict .pt/.pth")
    g.add_argument("--data", metavar="SPEC",
                   help="imagefolder:DIR, csv:FILE, jsonl:FILE or hf-disk:DIR (calibration and recovery data)")
    g.add_argument("--eval-data", metavar="SPEC", help="data to measure on (default: a fifth of --data held out)")
    d = SOURCE_OPTIONS
    g.add_argument("--text-column", default=d["text_column"],
                   help="text column of csv/jsonl data (default: %(default)s)")
    g.add_argument("--label-column", default=d["label_column"], help="label column, if any (default: %(default)s)")
    g.add_argument("--max-length", type=positive_int, default=d["max_length"],
                   help="tokens per text (default: %(default)s)")
    g.add_argument("--image-size", type=positive_int, default=d["image_size"],
                   help="image side after cropping (default: %(default)s)")
    g.add_argument("--metric", choices=("accuracy", "agreement", "cosine"),
                   help="accuracy (labels), agreement or cosine with the original model (default: from the data)")


def task_from_args(args: argparse.Namespace, recorded: dict[str, Any] | None = None) -> Any:
    """``--task``, or the Task that ``--model`` and ``--data`` make (``recorded``: a recipe's
    options, used where the command line gives none)."""
    from slimkit.errors import SlimkitError, UsageError, first_line

    if recorded and args.task is None and getattr(args, "model", None) is None:
        for key, default in SOURCE_OPTIONS.items():
            if getattr(args, key, default) == default and key in recorded:
                setattr(args, key, _recorded_value(key, recorded[key]))
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
    try:
        return _build(args)
    except SlimkitError:
        raise
    except (OSError, ValueError, RuntimeError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        # The user's files (an unreadable image, a model file's code) failed while slimkit read them.
        raise UsageError(f"reading --model {args.model} / --data {args.data} failed: {type(exc).__name__}: "
                         f"{first_line(exc)}",
                         hint="check those files: every image must open, every row must parse") from exc


def _recorded_value(key: str, value: Any) -> Any:
    """A value of a recipe's ``source`` block, checked: it comes from a file anyone may edit."""
    from slimkit.errors import UsageError

    default = SOURCE_OPTIONS[key]
    kind = int if isinstance(default, int) else str
    if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, int) and value < 1):
        raise UsageError(f"recipe source '{key}' must be a {'whole number >= 1' if kind is int else 'string'}, "
                         f"got {value!r:.60}", hint="fix that line of recipe.yaml, or give the option instead")
    return value


def _absolute(spec: str | None) -> str | None:
    """``kind:path`` (or ``file.py:fn``, or a path) with the path made absolute, so the recipe that
    records it re-runs from any folder."""
    if spec is None:
        return None
    head, sep, tail = spec.partition(":")
    if sep and not head.endswith(".py") and head in ("torchvision", "timm"):
        return spec
    if sep and head.endswith(".py"):
        return f"{Path(head).resolve()}:{tail}"
    if sep:
        return f"{head}:{Path(tail).resolve()}"
    return str(Path(spec).resolve())


def _build(args: argparse.Namespace) -> Any:
    from slimkit.tasks.sources import Columns, load_data
    from slimkit.tasks.user import task_from_user_model
    from slimkit.tasks.zoo import load_model

    user = load_model(args.model, weights=args.weights, image_size=args.image_size, max_length=args.max_length)
    if args.weights is None and args.model.startswith(("torchvision:", "timm:")):
        from slimkit.cli._shared import progress

        progress(f"{args.model} has random weights (no --weights given): fine for speed, not for accuracy")
    columns = Columns(args.text_column, args.label_column)
    own = user.labels  # class names the model knows itself (an HF config's)
    # The data read first numbers the classes (folder or label names); evaluation data follows it.
    data = load_data(args.data, user, columns=columns, image_size=args.image_size)
    eval_data = load_data(args.eval_data, user, columns=columns, image_size=args.image_size) if args.eval_data else None
    metric = args.metric
    classes = getattr(data, "classes", None)
    if isinstance(classes, list) and own is None and _output_width(user, data) != len(classes):
        # Folder indices are not the model's classes (an ImageNet head over cats and dogs): measure
        # agreement with the original model instead of accuracy against them, and name no classes.
        user.labels = None
        metric = metric or "agreement"
    task = task_from_user_model(user, data, eval_data=eval_data, metric=metric, seed=args.seed or 0)
    given = {k: getattr(args, k) for k, default in SOURCE_OPTIONS.items() if getattr(args, k) != default}
    task.source = {k: _absolute(v) if k in ("model", "weights", "data", "eval_data") else v for k, v in given.items()}
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
