"""``slimkit predict``: run a deployed model (a run folder, best/ or an artifact folder) on files."""

from __future__ import annotations

import argparse

from slimkit.cli._shared import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predictions of a deployed model on texts, images or arrays")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a run folder (its best model), a search's best/ or an artifact folder")
    p.add_argument("--input", required=True, metavar="FILE|DIR",
                   help=".txt/.csv/.jsonl texts, an image or a folder of images, or .npy/.npz arrays")
    p.add_argument("--output", metavar="FILE", help="JSON Lines file to write (default: standard output)")
    p.add_argument("--entry", help="which entry of a run folder (default: its best)")
    p.add_argument("--target", help="run on another runtime that reads the artifact (default: the manifest's)")
    p.add_argument("--text-column", default="text", help="text column of .csv/.jsonl input (default: text)")
    p.add_argument("--threads", type=positive_int, default=None)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys

    from slimkit.core.files import atomic_path
    from slimkit.errors import UsageError
    from slimkit.pipeline.load import load
    from slimkit.pipeline.predict import check_output, predict_file

    if not os.path.exists(args.input):  # before loading a model that may take a while
        raise UsageError(f"--input {args.input} does not exist",
                         hint="give a text file, an image folder or an array file")
    output = check_output(args.output, args.model, args.input) if args.output is not None else None
    predictor = load(args.model, entry=args.entry, target=args.target, threads=args.threads)
    rows = predict_file(predictor, args.input, text_column=args.text_column)
    if args.output is None:
        try:
            for row in rows:
                sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `slimkit predict ... | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    assert output is not None
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as f:
        count = sum(f.write(json.dumps(row) + "\n") > 0 for row in rows)
    sys.stderr.write(f"{count} predictions written to {args.output}\n")
    return 0
