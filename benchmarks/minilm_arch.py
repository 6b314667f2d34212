"""How fast can MiniLM's pruned architecture run on *this* CPU, before any training?

    python benchmarks/minilm_arch.py [--threads N] [--keep-layers N] [--out runs/bench-minilm-arch]

Latency does not depend on the weights, so the structure of the search benchmark's pruned MiniLM
(1/3 of attention heads and 56% of FFN neurons removed, widths rounded to 16) is made in seconds
with l2 scores and no recovery, then timed against the unmodified model, interleaved in one
process (batch 1, sequence 128): torch fp32 eager, OpenVINO fp32, OpenVINO + NNCF int8 alone
(NNCF defaults with ModelType.TRANSFORMER, as in benchmarks/search.py), ONNX Runtime fp32 and
slimkit's int8-static on ONNX Runtime, and the pruned model on each of those. It bounds what the
MiniLM part of the joint search can reach on a machine without the hour of pruning and
distillation, and shows which runtime's int8 pays on this CPU. ``--keep-layers N`` also drops
all but N of the 6 transformer layers from the pruned model (depth pruning on top of width
pruning; which layers are kept does not change the latency), to see how far depth would have to
go for a given speed-up before asking whether cosine could survive it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from prune import ab_latency  # benchmarks/prune.py: the same interleaved timing

from search import nncf_int8_alone  # benchmarks/search.py: the same "NNCF int8 alone"
from slimkit.core.task import run_model
from slimkit.measure.env import cpu_info, int8_dot_saturates
from slimkit.pipeline import default_threads, fresh_dir
from slimkit.tasks import load_task
from slimkit.techniques.prune import PruneConfig
from slimkit.techniques.prune._apply import prune_model


def _openvino(xml: Path, inputs: dict, threads: int) -> Callable[[], object]:
    """The IR on slimkit's openvino target, in f32 (the precision this project's hosts run fastest)."""
    from slimkit.targets.openvino import load_ir

    deployed = load_ir(xml, threads, None, ("f32",))
    return lambda: deployed.run(inputs)


def _ort_pair(model: torch.nn.Module, task: object, folder: Path, threads: int) -> tuple[object, object]:
    """ONNX Runtime fp32 and slimkit int8-static of ``model``, loaded."""
    from slimkit.targets.onnxruntime import load_onnx
    from slimkit.techniques.quantize import QuantizeConfig, quantize_for_target

    q = quantize_for_target(model, task, QuantizeConfig("int8-static", "onnxruntime"), folder, threads)
    return load_onnx(folder / "float.onnx", threads), q.deployed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--out", type=Path, default=Path("runs/bench-minilm-arch"))
    ap.add_argument("--keep-layers", type=int, default=None, help="transformer layers the pruned model keeps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = load_task("minilm")
    model = task.build_model().eval()
    pruned, result = prune_model(model, task, PruneConfig(ratio=0.56, head_ratio=1 / 3, criterion="l2", round_to=16,
                                                          recover_epochs=0, reconstruct=False))
    layers = pruned.bert.encoder.layer
    if args.keep_layers is not None:
        if not 1 <= args.keep_layers <= len(layers):
            ap.error(f"--keep-layers must be 1..{len(layers)}")
        pruned.bert.encoder.layer = torch.nn.ModuleList(list(layers)[: args.keep_layers])
        pruned.bert.config.num_hidden_layers = args.keep_layers
    depth = f" ({len(pruned.bert.encoder.layer)} of {len(layers)} layers)" if args.keep_layers else ""
    full_dir, pruned_dir = fresh_dir(args.out / "unpruned"), fresh_dir(args.out / "pruned")
    nncf_int8_alone(task, model, full_dir, args.threads)  # float.xml and NNCF's model.xml
    nncf_int8_alone(task, pruned, pruned_dir, args.threads)
    inputs = task.example_inputs
    ort_full = _ort_pair(model, task, fresh_dir(args.out / "ort-unpruned"), args.threads)
    ort_pruned = _ort_pair(pruned, task, fresh_dir(args.out / "ort-pruned"), args.threads)

    def eager() -> object:
        with torch.inference_mode():
            return run_model(model, inputs)

    med = ab_latency({
        "torch fp32 eager": eager,
        "OpenVINO fp32": _openvino(full_dir / "float.xml", inputs, args.threads),
        "OpenVINO + NNCF int8 alone": _openvino(full_dir / "model.xml", inputs, args.threads),
        "pruned, OpenVINO fp32": _openvino(pruned_dir / "float.xml", inputs, args.threads),
        "pruned, OpenVINO + NNCF int8": _openvino(pruned_dir / "model.xml", inputs, args.threads),
        "ONNX Runtime fp32": lambda: ort_full[0].run(inputs),
        "ONNX Runtime, slimkit int8-static": lambda: ort_full[1].run(inputs),
        "pruned, ONNX Runtime fp32": lambda: ort_pruned[0].run(inputs),
        "pruned, ONNX Runtime, slimkit int8-static": lambda: ort_pruned[1].run(inputs),
    }, rounds=15, runs=10)
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, flags {', '.join(cpu['flags'])}; int8 dot product saturates (no VNNI): "
          f"{int8_dot_saturates()}; threads {args.threads}")
    from slimkit.measure.flops import count_macs

    macs = count_macs(pruned, inputs) if args.keep_layers else result.macs[1]
    print(f"MACs: {result.macs[0] / 1e9:.2f} G unpruned, {macs / 1e9:.2f} G pruned{depth}\n")
    print("| model | interleaved b1 median ms | vs torch fp32 eager | vs OpenVINO + NNCF int8 alone |")
    print("|---|---|---|---|")
    for name, ms in med.items():
        name = name.replace("pruned,", f"pruned{depth},")
        print(f"| {name} | {ms:.2f} | {med['torch fp32 eager'] / ms:.2f}x | "
              f"{med['OpenVINO + NNCF int8 alone'] / ms:.2f}x |")


if __name__ == "__main__":
    main()
