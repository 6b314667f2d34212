"""Joint-search targets of issue 6, one run per part, ratios measured side by side in one process.

    python benchmarks/search.py [--parts resnet18,minilm] [--minutes 30] [--out runs/bench-search]
                                [--threads N] [--reuse]

1. resnet18: ``slimkit.optimize`` on digits-resnet18 (64x64) within 1 point of the baseline's
   accuracy, TPE over structured pruning ratio x int8 x runtime (ONNX Runtime, OpenVINO), with
   the accuracy-recovery ladder, for ``--minutes`` (default 30). Target: the best result is
   >= 20x faster than torch fp32 eager and >= 2.5x faster than the best single technique,
   OpenVINO + NNCF int8 alone (NNCF's default settings, as a user would call it).
2. minilm: ``slimkit.optimize`` on the pretrained all-MiniLM-L6-v2 (sequence 128) with mean cosine
   >= 0.97 (max drop 0.03), grid over pruning off or the issue-4 recipe (1/3 of heads and 56% of
   FFN neurons by data-aware ``activation`` scores ranked across layers, least-squares re-fit,
   then up to 14 epochs of distillation with hidden-state matching on the transfer set) x int8
   x runtime (OpenVINO, ONNX Runtime: which int8 pays depends on the CPU). The pruning (~50 min
   here, shared by the pruned trials) needs ``--minutes 60`` or more for this part, more where
   the ladder runs.
   Target: >= 5x faster than torch fp32 eager and >= 1.5x faster than OpenVINO + NNCF int8 alone
   (NNCF defaults with ModelType.TRANSFORMER).

After each search, the three models (torch fp32 eager, OpenVINO + NNCF int8 alone, the search's
best) are loaded again and timed *interleaved* (blocks of runs alternating between them), so a
change of machine load hits all three alike; the ratios printed come from that timing. Each
search's report (json, md, html) stays under --out. ``--reuse`` skips the searches and only
re-times the stored best models (e.g. on a quieter machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from prune import ab_latency  # benchmarks/prune.py: the same interleaved timing

import slimkit
from slimkit.core.task import Task, run_model
from slimkit.pipeline import default_threads, fresh_dir, measure_entry
from slimkit.search import SearchSpace
from slimkit.tasks import load_task

PARTS = {
    "resnet18": {
        "task": "digits-resnet18", "max_drop": 1.0, "sampler": "tpe", "trials": 60,
        "space": SearchSpace(targets=("onnxruntime", "openvino"), fuse=(False,),
                             prune_ratio=(0.0, 0.3, 0.5, 0.6, 0.7, 0.8), recover_epochs=4, round_to=8,
                             quant_scheme=("none", "int8-static")),
        "goal": (20.0, 2.5),
    },
    "minilm": {
        "task": "minilm", "max_drop": 0.03, "sampler": "grid", "trials": None,
        # prune_ratio is the FFN fraction; heads go at prune_head_ratio: the issue-4 recipe.
        "space": SearchSpace(targets=("openvino", "onnxruntime"), fuse=(False,), prune_ratio=(0.0, 0.56),
                             prune_head_ratio=(1 / 3,), prune_criterion=("activation",),
                             prune_scope="global", recover_epochs=14,
                             recover="distill", recover_lr=2e-4, round_to=16,
                             quant_scheme=("none", "int8-static")),
        "goal": (5.0, 1.5),
    },
}


def nncf_int8_alone(task: Task, model: torch.nn.Module, folder: Path, threads: int):  # noqa: ANN201
    """OpenVINO + NNCF int8 as a user calls it: default settings (transformer model type for
    token inputs), 300 calibration samples, on the float IR slimkit exports."""
    import nncf
    import openvino as ov

    from slimkit.export.openvino import torch_to_openvino
    from slimkit.targets.openvino import load_ir
    from slimkit.techniques.quantize._calib import calibration_items

    float_xml = folder / "float.xml"
    torch_to_openvino(model, task.example_inputs, float_xml)
    items = calibration_items(task.calibration_data, 300)
    if len(items) < 300:
        items += calibration_items(task.train_data, 300 - len(items))
    transformer = "input_ids" in task.example_inputs
    q = nncf.quantize(ov.Core().read_model(str(float_xml)),
                      nncf.Dataset([{k: v.numpy() for k, v in i.items()} for i in items]), subset_size=len(items),
                      model_type=nncf.ModelType.TRANSFORMER if transformer else None)
    path = folder / "model.xml"
    ov.save_model(q, str(path), compress_to_fp16=False)
    return load_ir(path, threads, task.example_inputs)


def load_best(report: dict, out: Path, threads: int):  # noqa: ANN201
    """The search's best artifact, loaded on its target in the precision the search measured it in."""
    from slimkit.targets import load_artifact

    best = next(c for c in report["candidates"] if c["id"] == report["best"])
    path = out / best["artifact"]
    if best["target"] not in ("onnxruntime", "openvino"):
        raise SystemExit(f"best target {best['target']} is not re-timed by this script")
    # A search run before artifacts had manifests: report.json says the precision.
    deployed = load_artifact(best["target"], path, threads, best["details"].get("inference_precision"))
    return best, deployed


def part(name: str, out: Path, minutes: float, threads: int, reuse: bool) -> list[str]:
    spec = PARTS[name]
    run_dir = out / name
    started = time.time()
    if not reuse:
        space: SearchSpace = spec["space"]  # type: ignore[assignment]
        slimkit.optimize(spec["task"], max_drop=spec["max_drop"], space=space, sampler=spec["sampler"],
                         trials=spec["trials"] or space.size(), time_budget=minutes, out=run_dir, threads=threads,
                         progress=lambda m: print(f"[{time.time() - started:7.0f}s] {m}", file=sys.stderr,
                                                  flush=True))
    search_s = time.time() - started
    report = json.loads((run_dir / "report.json").read_text())
    if not report.get("best"):
        return [f"### {name}: no trial met the constraints ({report['search'].get('closest')})"]
    task = load_task(spec["task"])
    model = task.build_model()
    torch.set_num_threads(threads)
    best, best_deployed = load_best(report, run_dir, threads)
    alone = nncf_int8_alone(task, model, fresh_dir(run_dir / "nncf-int8-alone"), threads)
    alone_entry = measure_entry(alone, task, model, entry_id="openvino-nncf-int8-alone", recipe=[], out=run_dir)

    def eager() -> object:
        with torch.inference_mode():
            return run_model(model, task.example_inputs)

    med = ab_latency({"torch": eager, "alone": lambda: alone.run(task.example_inputs),
                      "best": lambda: best_deployed.run(task.example_inputs)}, rounds=20, runs=20)
    base = report["baseline"]
    goal_eager, goal_alone = spec["goal"]  # type: ignore[misc]
    vs_eager, vs_alone = med["torch"] / med["best"], med["alone"] / med["best"]
    metric = base["metric"]["name"]
    lines = [
        f"### {name}: {spec['task']}, max drop {spec['max_drop']}, sampler {spec['sampler']}", "",
        f"search: {report['search']['trials_finished']} trials measured in "
        f"{report['search']['seconds'] / 60:.1f} min (budget {minutes:g} min); report {run_dir}/report.md", "",
        "| model | target | metric | interleaved b1 median ms | vs torch fp32 eager | size MB |",
        "|---|---|---|---|---|---|",
        f"| torch fp32 eager (baseline) | torch | {base['metric']['value']:.4f} | {med['torch']:.3f} | 1.00x | "
        f"{base['size_bytes'] / 1e6:.1f} |",
        f"| OpenVINO + NNCF int8 alone (NNCF defaults) | openvino | {alone_entry.measurement.metric:.4f} | "
        f"{med['alone']:.3f} | {med['torch'] / med['alone']:.2f}x | {alone_entry.measurement.size_bytes / 1e6:.1f} |",
        f"| best: {best['id']} | {best['target']} | {best['metric']['value']:.4f} | {med['best']:.3f} | "
        f"{vs_eager:.2f}x | {best['size_bytes'] / 1e6:.1f} |", "",
        f"- best {metric} {best['metric']['value']:.4f} vs baseline {base['metric']['value']:.4f} "
        f"(drop {base['metric']['value'] - best['metric']['value']:.4f}, allowed {spec['max_drop']})",
        f"- best vs torch fp32 eager: {vs_eager:.2f}x ({'PASS' if vs_eager >= goal_eager else 'FAIL'}, "
        f"target >= {goal_eager:g}x)",
        f"- best vs OpenVINO + NNCF int8 alone: {vs_alone:.2f}x ({'PASS' if vs_alone >= goal_alone else 'FAIL'}, "
        f"target >= {goal_alone:g}x)",
        f"- wall time of this part: {search_s / 60:.1f} min search{' (reused)' if reuse else ''}", ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="resnet18,minilm")
    parser.add_argument("--minutes", type=float, default=30.0, help="search time budget per part")
    parser.add_argument("--out", default="runs/bench-search")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--reuse", action="store_true", help="re-time the stored searches' best models only")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    lines = []
    for name in args.parts.split(","):
        if name not in PARTS:
            parser.error(f"unknown part {name!r}; known: {', '.join(PARTS)}")
        lines += part(name, Path(args.out), args.minutes, threads, args.reuse)
        print("\n".join(lines), file=sys.stderr, flush=True)
    print("\n".join(lines))
    print(f"\nthreads: {threads}; command: python benchmarks/search.py --parts {args.parts} --minutes {args.minutes:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
