"""``slimkit quantize``: one scheme on one target, measured against float on the same target."""

from __future__ import annotations

import argparse

from slimkit.cli._model import add_model_options
from slimkit.cli._shared import (
    LazyChoices,
    add_objective_option,
    add_task_options,
    positive_int,
    print_report,
    progress,
    split_list,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    # Read when `quantize` parses or prints its help, not when `slimkit --help` builds every parser.
    SCHEMES = LazyChoices("slimkit.techniques.quantize", "SCHEMES")  # noqa: N806
    CALIBRATIONS = LazyChoices("slimkit.techniques.quantize", "CALIBRATIONS")  # noqa: N806

    p = sub.add_parser("quantize", help="quantize a model for a target (int8, int4 weights, fp16/bf16, QAT)")
    add_task_options(p, model=True)
    add_model_options(p)
    # A metavar: argparse would list (and so load) the choices while building the parser.
    p.add_argument("--scheme", default="int8-static", choices=SCHEMES, metavar="SCHEME",
                   help="%(choices)s (default: int8-static; see `slimkit list` for the matrix)")
    p.add_argument("--target", default="openvino", help="torch, onnxruntime or openvino (default: openvino)")
    p.add_argument("--calibration", choices=CALIBRATIONS, default=None, metavar="METHOD",
                   help="int8-static range estimation: %(choices)s (default: the engine's own)")
    p.add_argument("--samples", type=positive_int, default=None, help="int8-static calibration samples (default: 300)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="accuracy-aware: keep the most sensitive layers in float until the drop is within D")
    p.add_argument("--qat", action="store_true", help="quantization-aware training before conversion")
    p.add_argument("--epochs", type=positive_int, default=None, help="QAT epochs (with --qat; default 2)")
    p.add_argument("--lr", type=float, default=None, help="QAT learning rate (with --qat; default 1e-4)")
    p.add_argument("--sensitivity", action="store_true", help="per-layer sensitivity table (metric drop)")
    p.add_argument("--group-size", type=int, default=None,
                   help="int4-weight-only group size (default: 128; -1: one group per output channel)")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default: per channel)")
    p.add_argument("--smooth-quant", choices=("auto", "on", "off"), default="auto",
                   help="SmoothQuant (auto: on for transformers)")
    p.add_argument("--no-bias-correction", action="store_true", help="skip NNCF's fast bias correction")
    p.add_argument("--outlier-weight-only", choices=("auto", "on", "off"), default="auto",
                   help="int8-static on openvino: layers whose inputs carry token outliers get int8 "
                        "weights only, no static activation range (auto: on for transformers)")
    p.add_argument("--exclude", default="", help="comma-separated torch modules kept in float (a parent module "
                   "covers its layers; the sensitivity table names them)")
    add_objective_option(p)
    p.add_argument("--quick", action="store_true", help="short latency runs (smoke tests)")
    p.add_argument("--out", required=True, help="run folder for the artifacts, recipe.yaml and report.json")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from slimkit.api.quantize import quantize
    from slimkit.cli._model import task_from_args
    from slimkit.errors import UsageError
    from slimkit.ui import out

    if not args.qat and (args.epochs is not None or args.lr is not None):
        raise UsageError("--epochs and --lr set quantization-aware training, which is off",
                         hint="add --qat, or drop --epochs/--lr")
    report = quantize(
        task_from_args(args), target=args.target, scheme=args.scheme, out=args.out, calibration=args.calibration,
        samples=args.samples,
        max_drop=args.max_drop, qat_epochs=(args.epochs or 2) if args.qat else 0,
        qat_lr=1e-4 if args.lr is None else args.lr,
        sensitivity=args.sensitivity, group_size=args.group_size, per_channel=not args.per_tensor,
        smooth_quant={"auto": None, "on": True, "off": False}[args.smooth_quant],
        bias_correction=not args.no_bias_correction,
        outlier_weight_only={"auto": None, "on": True, "off": False}[args.outlier_weight_only],
        exclude=split_list(args.exclude), threads=args.threads,
        quick=args.quick, seed=args.seed, progress=progress, objective=args.objective or "latency")
    rows = report.extra.get("sensitivity", [])
    if rows:
        items = report.extra.get("quantization", {}).get("details", {}).get("sensitivity_items")
        _print_sensitivity(rows, out, items=items)
    print_report(report, args.out)
    return 0


def _print_sensitivity(rows: list[dict], out: object, top: int = 15, items: int | None = None) -> None:
    from rich.table import Table

    on = f" on the first {items} evaluation items" if items else ""
    table = Table(title=f"per-layer sensitivity (metric{on}, drop with only that layer quantized; top {top})",
                  title_justify="left")
    for col in ("layer", "from", "metric", "drop", "1-cos"):
        table.add_column(col, justify="left" if col in ("layer", "from") else "right")
    for r in rows[:top]:
        table.add_row(str(r["layer"])[-40:], str(r.get("origin", "")), f"{r['metric']:.4f}", f"{r['drop']:+.4f}",
                      f"{r.get('output_error', 0.0):.2e}")
    out.print(table)  # type: ignore[attr-defined]
