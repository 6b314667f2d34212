"""Quantization benchmark: every issue-3 target measured side by side in one run.

    python benchmarks/quantize.py [--threads N] [--out runs/bench-quantize] [--parts minilm,resnet18,recovery]
    python benchmarks/quantize.py --parts qat    # only the QAT half of part 3 (digits-mobilenet)

All latencies are batch 1 through slimkit's one measurement path (median of many runs), and
every ratio is against torch fp32 eager measured in the same process. Parts:
1. minilm (seq 128): torch fp32 eager; ONNX Runtime dynamic int8; torch (torchao) dynamic
   int8; OpenVINO + NNCF int8 with NNCF's default settings; slimkit int8-static on OpenVINO
   (its default, which finds the layers whose inputs carry token outliers and gives them int8
   weights only; without that; with the FFN output projections excluded by hand).
   Metric: mean and minimum cosine to the fp32 model over the evaluation sentences.
2. digits-resnet18: torch fp32 eager; slimkit int8-static on OpenVINO and on ONNX Runtime.
3. recovery: int4 weights on MiniLM lose fidelity; the accuracy-aware mode (--max-drop) keeps
   the most sensitive layers in float and recovers it. Then (also alone as ``qat``) per-tensor
   int8 weights on digits-mobilenet (MobileNetV2): plain PTQ against QAT with the same
   per-tensor scheme, per-channel PTQ for reference, on ONNX Runtime and OpenVINO.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import torch

from slimkit.pipeline import default_threads, fresh_dir, measure_entry, measure_model
from slimkit.report.schema import Entry
from slimkit.tasks import load_task
from slimkit.techniques.quantize import QuantizeConfig, quantize_for_target

ROW = "| {task} | {model} | {metric} | {ms:.2f} | {ci} | {speed:.2f}x | {size} | {note} |"
HEAD = ("| task | model | metric | b1 ms | 95% CI | vs torch fp32 | size (vs fp32) | note |\n"
        "|---|---|---|---|---|---|---|---|")


def fmt_metric(e: Entry) -> str:
    m = e.measurement
    if "min_cosine" in m.extras:
        return f"mean cos {m.metric:.4f}, min cos {m.extras['min_cosine']:.4f}"
    return f"{m.metric_name} {m.metric:.2f}"


def row(task: str, name: str, e: Entry, base: Entry, note: str = "") -> str:
    lat = e.measurement.latency
    size = f"{e.measurement.size_bytes / 1e6:.1f} MB ({e.measurement.size_bytes / base.measurement.size_bytes:.0%})"
    return ROW.format(task=task, model=name, metric=fmt_metric(e), ms=lat.median,
                      ci=f"{lat.ci95[0]:.2f}-{lat.ci95[1]:.2f}", speed=base.latency_ms / lat.median, size=size,
                      note=note)


def quantized(task, model, cfg: QuantizeConfig, out: Path, threads: int, name: str, float_artifact=None,
              reference=None) -> tuple[Entry, object]:
    r = quantize_for_target(model, task, cfg, fresh_dir(out / name), threads, float_artifact=float_artifact,
                            reference_metric=reference, say=lambda m: print("  ", m, file=sys.stderr))
    return measure_entry(r.deployed, task, model, entry_id=name, recipe=[cfg.to_dict()], out=out), r


def nncf_default(float_xml: Path, task, out: Path, transformer: bool) -> Path:
    """OpenVINO + NNCF int8 as a user would call it: default settings (optionally ModelType.TRANSFORMER)."""
    import nncf
    import openvino as ov

    from slimkit.techniques.quantize._calib import calibration_items

    items = calibration_items(task.calibration_data, 300)
    model = ov.Core().read_model(str(float_xml))
    q = nncf.quantize(model, nncf.Dataset([{k: v.numpy() for k, v in i.items()} for i in items]),
                      subset_size=len(items), model_type=nncf.ModelType.TRANSFORMER if transformer else None)
    path = out / f"nncf-default-{transformer}" / "model.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(path), compress_to_fp16=False)
    return path


def ffn_output_layers(float_xml: Path) -> tuple[str, ...]:
    """MiniLM's FFN output projections (the layers whose inputs, after GELU, carry the outliers)."""
    from slimkit.techniques.quantize._openvino import openvino_layers

    return tuple(n for n, origin in openvino_layers(float_xml)
                 if origin.endswith("output.dense") and "attention" not in origin)


def part_minilm(out: Path, threads: int) -> list[str]:
    from slimkit.targets.openvino import load_ir

    task = load_task("minilm")
    model = task.build_model()
    base = measure_model(model, task, "torch", fresh_dir(out / "torch"), threads, entry_id="torch", recipe=[])
    rows = [row("minilm", "torch fp32 eager (baseline)", base, base)]
    e, _ = quantized(task, model, QuantizeConfig("int8-dynamic", "onnxruntime"), out, threads, "ort-dyn")
    rows.append(row("minilm", "ONNX Runtime int8-dynamic", e, base))
    e, _ = quantized(task, model, QuantizeConfig("int8-dynamic", "torch"), out, threads, "torch-dyn")
    slower = e.latency_ms >= base.latency_ms
    rows.append(row("minilm", "torch (torchao) int8-dynamic", e, base,
                    "slower than fp32: flagged by the never-slower guard" if slower else ""))
    fdir = fresh_dir(out / "ov-fp32")
    fe = measure_model(model, task, "openvino", fdir, threads, entry_id="ov-fp32", recipe=[])
    rows.append(row("minilm", "OpenVINO fp32", fe, base))
    for transformer in (False, True):
        d = load_ir(nncf_default(fdir / "model.xml", task, out, transformer), threads, task.example_inputs)
        e = measure_entry(d, task, model, entry_id="nncf-default", recipe=[], out=out)
        what = ", ModelType.TRANSFORMER" if transformer else " (no model type)"
        rows.append(row("minilm", f"OpenVINO + NNCF int8, NNCF defaults{what}", e, base))
    ffn = ffn_output_layers(fdir / "model.xml")
    for i, (name, cfg) in enumerate((
        ("slimkit int8-static (default: transformer, SmoothQuant, outlier layers weight-only, 300 samples)",
         QuantizeConfig("int8-static", "openvino")),
        ("slimkit int8-static without outlier handling (--outlier-weight-only off; the previous default)",
         QuantizeConfig("int8-static", "openvino", outlier_weight_only=False)),
        ("slimkit int8-static, 6 FFN output projections kept float (--exclude, no outlier handling)",
         QuantizeConfig("int8-static", "openvino", exclude=ffn, outlier_weight_only=False)),
    )):
        e, r = quantized(task, model, cfg, out, threads, f"slimkit-ov{i}", fdir / "model.xml")
        weight_only = r.details.get("outliers", {}).get("weight_only_int8", [])
        note = f"{len(weight_only)} layers found with input token outliers: int8 weights only" \
            if weight_only else ""
        rows.append(row("minilm", name, e, base, note))
    return rows


def part_resnet18(out: Path, threads: int) -> list[str]:
    task = load_task("digits-resnet18")
    model = task.build_model()
    base = measure_model(model, task, "torch", fresh_dir(out / "r18-torch"), threads, entry_id="torch", recipe=[])
    rows = [row("digits-resnet18", "torch fp32 eager (baseline)", base, base)]
    for target in ("openvino", "onnxruntime"):
        e, _ = quantized(task, model, QuantizeConfig("int8-static", target), out, threads, f"r18-{target}")
        drop = base.measurement.metric - e.measurement.metric
        rows.append(row("digits-resnet18", f"slimkit int8-static on {target}", e, base, f"drop {drop:+.2f} pt"))
    return rows


def part_recovery(out: Path, threads: int) -> list[str]:
    task = load_task("minilm")
    model = task.build_model()
    base = measure_model(model, task, "torch", fresh_dir(out / "rec-torch"), threads, entry_id="torch", recipe=[])
    rows = [row("minilm", "torch fp32 eager (baseline)", base, base)]
    fdir = fresh_dir(out / "rec-ov-fp32")
    fe = measure_model(model, task, "openvino", fdir, threads, entry_id="ov-fp32", recipe=[])
    e, _ = quantized(task, model, QuantizeConfig("int4-weight-only", "openvino", group_size=32), out, threads,
                     "int4", fdir / "model.xml")
    rows.append(row("minilm", "int4-weight-only (g32), plain", e, base))
    budget = 0.002
    e, r = quantized(task, model, QuantizeConfig("int4-weight-only", "openvino", group_size=32, max_drop=budget),
                     out, threads, "int4-aa", fdir / "model.xml", fe.measurement.metric)
    rows.append(row("minilm", f"int4-weight-only (g32), accuracy-aware --max-drop {budget}", e, base,
                    f"{len(r.float_layers)} layers kept float"))
    return rows + part_qat(out, threads)


QAT_EPOCHS, QAT_LR = 2, 1e-4


def part_qat(out: Path, threads: int) -> list[str]:
    """Per-tensor int8 weights on MobileNetV2: plain PTQ collapses, QAT with the same scheme recovers."""
    name = "digits-mobilenet"
    task = load_task(name)
    model = task.build_model()
    base = measure_model(model, task, "torch", fresh_dir(out / "mnv2-torch"), threads, entry_id="torch", recipe=[])
    rows = [row(name, "torch fp32 eager (baseline)", base, base)]

    def add(label: str, e: Entry, note: str = "") -> None:
        drop = base.measurement.metric - e.measurement.metric
        rows.append(row(name, label, e, base, f"drop {drop:+.2f} pt" + (f"; {note}" if note else "")))

    for target in ("onnxruntime", "openvino"):
        for i, (label, cfg) in enumerate((
            ("PTQ int8-static, per-channel weights (reference)", QuantizeConfig("int8-static", target)),
            ("PTQ int8-static, per-tensor weights", QuantizeConfig("int8-static", target, per_channel=False)),
            (f"QAT int8-static, per-tensor weights ({QAT_EPOCHS} epochs)",
             QuantizeConfig("int8-static", target, per_channel=False, qat_epochs=QAT_EPOCHS, qat_lr=QAT_LR)),
        )):
            e, r = quantized(task, model, cfg, out, threads, f"mnv2-{target}-{i}")
            qat = r.details.get("qat", {})
            add(f"{label} on {target}", e, f"{qat['clipped_ranges']} of {qat['layers']} weight ranges clipped, "
                f"{qat['folded_batchnorms']} BatchNorms folded" if qat else "")
        if target == "onnxruntime":
            add("QAT's calibration alone (0 epochs), per-tensor weights on onnxruntime",
                range_search_only(task, model, out, threads), "ablation: the weight-range search without training")
    return rows


def range_search_only(task, model, out: Path, threads: int) -> Entry:
    """QAT's per-tensor calibration (BatchNorm folding, weight-range search) with no training, on ONNX Runtime."""
    from slimkit.techniques.quantize._backends import OrtBackend
    from slimkit.techniques.quantize._calib import calibration_items
    from slimkit.techniques.quantize._qat import qat_model, strip_fake_quant
    from slimkit.techniques.quantize._registry import export_float

    cfg = QuantizeConfig("int8-static", "onnxruntime", per_channel=False)
    items = calibration_items(task.calibration_data, cfg.samples)
    items += calibration_items(task.train_data, cfg.samples - len(items))  # as quantize_for_target tops up
    qmodel, _ = qat_model(model, task, items, 0, 0.0, per_channel=False)
    work = fresh_dir(out / "mnv2-range-only")
    plain = strip_fake_quant(qmodel.requires_grad_(False))
    backend = OrtBackend(cfg, export_float(plain, task.example_inputs, "onnxruntime", work), work, threads,
                         task.example_inputs, items, False)
    return measure_entry(backend.build([], "model"), task, model, entry_id="range-only", recipe=[cfg.to_dict()],
                         out=out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="runs/bench-quantize")
    parser.add_argument("--parts", default="minilm,resnet18,recovery")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    out = Path(args.out)
    parts = {"minilm": part_minilm, "resnet18": part_resnet18, "recovery": part_recovery, "qat": part_qat}
    lines = [HEAD]
    for name in args.parts.split(","):
        rows = parts[name](out, threads)
        print("\n".join(rows), file=sys.stderr, flush=True)  # progress; the full table comes last
        lines += rows
    print("\n".join(lines))
    print(f"\nthreads: {threads}, batch 1; command: python benchmarks/quantize.py --parts {args.parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
