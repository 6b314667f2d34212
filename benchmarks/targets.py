"""Foundation benchmark: the same fp32 model on torch eager, ONNX Runtime and OpenVINO, one run.

    python benchmarks/targets.py [--threads N] [--out runs/bench-targets]

Two parts, both through slimkit's one measurement path (slimkit.benchmark):
1. torchvision ResNet-18 at 3x224x224, batch 1 (random weights: no download is possible
   here, and latency does not depend on the weights). Its metric is top-1 agreement with
   torch fp32 on 32 random images, so the table also shows each runtime's fidelity.
2. The built-in task digits-resnet18 (trained, 3x64x64) with real accuracy.
Prints markdown tables with ratios against torch eager measured in the same process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import slimkit
from slimkit.core.data import Batches


def resnet18_224() -> slimkit.Task:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    images = torch.randn(32, 3, 224, 224)
    with torch.no_grad():
        reference = model(images).argmax(1)
    data = Batches({"x": images}, reference, batch_size=8)
    return slimkit.Task("resnet18-224", model, {"x": images[:1]}, data, data, data,
                        slimkit.Metric("top1_agreement", slimkit.accuracy),
                        torch.nn.functional.cross_entropy, throughput_batch=8)


def table(report: slimkit.report.Report) -> str:
    base = report.baseline
    lines = ["| target | metric | b1 median ms | p90 | 95% CI | speed-up vs torch | throughput | precision |",
             "|---|---|---|---|---|---|---|---|"]
    for e in report.entries:
        lat = e.measurement.latency
        prec = e.measurement.details.get("inference_precision", "fp32")
        timings = e.measurement.details.get("precision_timings_ms")
        if timings:
            prec += " (measured " + ", ".join(f"{k} {v:.2f} ms" for k, v in timings.items()) + ")"
        lines.append(
            f"| {e.target} | {e.measurement.metric:.2f} | {lat.median:.2f} | {lat.p90:.2f} | "
            f"{lat.ci95[0]:.2f}-{lat.ci95[1]:.2f} | {base.latency_ms / lat.median:.2f}x | "
            f"{e.measurement.throughput:.1f}/s @b{e.measurement.throughput_batch} | {prec} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="runs/bench-targets")
    args = parser.parse_args()
    out = Path(args.out)
    targets = ["torch", "onnxruntime", "openvino"]
    env = slimkit.measure.env.environment(args.threads)
    print(f"Machine: {env['cpu']['model']}, {env['cpu']['cores']} cores, threads={env['threads']}, "
          f"torch {env['versions']['torch']}, onnxruntime {env['versions']['onnxruntime']}, "
          f"openvino {env['versions']['openvino']}\n")
    for name, task in (("ResNet-18 224x224 (random weights)", resnet18_224()), ("digits-resnet18", "digits-resnet18")):
        report = slimkit.benchmark(task, targets, out=out / str(getattr(task, "name", task)),
                                   threads=args.threads, progress=lambda m: print(m, file=sys.stderr))
        print(f"### {name}\n\n{table(report)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
