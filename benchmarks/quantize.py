"""Quantization benchmark: every issue-3 target measured side by side in one run.

    python benchmarks/quantize.py [--threads N] [--out runs/bench-quantize] [--parts minilm,resnet18,recovery]

All latencies are batch 1 through slimkit's one measurement path (median of many runs), and
every ratio is against torch fp32 eager measured in the same process. Parts:
1. minilm (seq 128): torch fp32 eager; ONNX Runtime dynamic int8; torch (torchao) dynamic
   int8; OpenVINO + NNCF int8 with NNCF's default settings; slimkit int8-static on OpenVINO.
   Metric: mean and minimum cosine to the fp32 model over the evaluation sentences.
2. digits-resnet18: torch fp32 eager; slimkit int8-static on OpenVINO and on ONNX Runtime.
3. recovery: int4 weights on MiniLM lose fidelity; the accuracy-aware mode (--max-drop) keeps
   the most sensitive layers in float and recovers it. QAT on digits-cnn with per-tensor
   weights against plain PTQ with the same setting.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import torch

from slimkit.api._common import default_threads, fresh_dir, measure_entry, measure_model
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
        ("slimkit int8-static (default: transformer, SmoothQuant, 300 samples)",
         QuantizeConfig("int8-static", "openvino")),
        ("slimkit int8-static, 6 FFN output projections kept float (--exclude)",
         QuantizeConfig("int8-static", "openvino", exclude=ffn)),
    )):
        e, _ = quantized(task, model, cfg, out, threads, f"slimkit-ov{i}", fdir / "model.xml")
        rows.append(row("minilm", name, e, base))
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
    return rows


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
    parts = {"minilm": part_minilm, "resnet18": part_resnet18, "recovery": part_recovery}
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
