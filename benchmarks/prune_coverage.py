"""Coverage of structured pruning over torchvision's classification models, one run.

    python benchmarks/prune_coverage.py [--ratio 0.3] [--timeout 240] [--size 64] [--models a,b]

For every model of ``torchvision.models.list_models(module=torchvision.models)`` (random
weights: nothing can be downloaded here, and whether pruning works does not depend on them):
prune 30% of the channels with slimkit's structured pruner (L2 magnitude, uniform), export to
ONNX with the TorchScript exporter (torch.export-based export, slimkit's first choice, takes ~30 s
per model here: too slow for 80 models on 2 shared cores), run it with ONNX Runtime at batch 2
(dynamic batch axis), compare the output shape with the unpruned model's and the values with
the pruned torch model (cosine). Models the TorchScript exporter rejects go through slimkit's
export_onnx (torch.export-based). Each model runs in its own process with a time limit; a
model that fails, times out or is not run counts as a failure. Inputs are 3x64x64 to fit 2 CPU
cores (ViTs and MaxViT need their fixed 224, Inception-v3 at least 75). Prints one line per
model and the success rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import torch

_SIZE = {"vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224, "vit_h_14": 224,
         "maxvit_t": 224, "inception_v3": 96}


class _Positional(torch.nn.Module):
    """The TorchScript exporter passes inputs by position; slimkit models take named inputs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from slimkit.core.task import run_model

        return run_model(self.model, {"x": x})


def one(name: str, ratio: float, size: int) -> dict:
    import tempfile
    from pathlib import Path

    import numpy as np
    import onnxruntime as ort
    import torchvision

    from slimkit.core.task import run_model
    from slimkit.export.onnx import export_onnx
    from slimkit.export.parity import compare
    from slimkit.measure.flops import count_params
    from slimkit.techniques.prune import PruneConfig, prune_structured

    torch.manual_seed(0)
    torch.set_num_threads(1)
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    side = _SIZE.get(name, size)
    inputs = {"x": torch.randn(1, 3, side, side)}
    with torch.no_grad():
        ref_shape = run_model(model, inputs).shape
    params = count_params(model)
    prune_structured(model, inputs, PruneConfig(ratio=ratio))
    path = Path(tempfile.mkdtemp()) / "m.onnx"
    batch = torch.cat([inputs["x"], torch.randn_like(inputs["x"])])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Positional(model).eval(), (batch,), str(path), dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["output"],
                              dynamic_axes={"x": {0: "batch"}, "output": {0: "batch"}})
    except Exception:  # e.g. adaptive pooling at a size TorchScript cannot express: slimkit's exporter
        export_onnx(model, inputs, path, check=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": batch.numpy()})[0]
    if tuple(out.shape) != (2, *ref_shape[1:]):
        raise RuntimeError(f"ONNX Runtime output shape {out.shape} != {(2, *ref_shape[1:])}")
    with torch.no_grad():
        parity = compare(run_model(model, {"x": batch}), torch.from_numpy(np.asarray(out)))
    return {"params_before": params, "params_after": count_params(model), "input": side,
            "cosine_onnx_vs_torch": None if parity is None else round(parity.cosine, 6)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--models", default="")
    ap.add_argument("--one", default="")
    args = ap.parse_args()
    if args.one:  # child process: one model, result as JSON on the last line
        try:
            print(json.dumps({"ok": True, **one(args.one, args.ratio, args.size)}))
        except Exception as exc:  # report every failure as one line
            print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"}))
        return 0
    import torchvision

    names = args.models.split(",") if args.models else torchvision.models.list_models(module=torchvision.models)
    ok = 0
    for name in names:
        start = time.time()
        try:
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--ratio", str(args.ratio),
                                   "--size", str(args.size)], capture_output=True, text=True, timeout=args.timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            res = json.loads(lines[-1]) if lines else {"ok": False, "error": (proc.stderr.strip().splitlines()
                                                                           or ["crashed"])[-1][:400]}
        except subprocess.TimeoutExpired:
            res = {"ok": False, "error": f"not finished within {args.timeout} s (counted as a failure)"}
        secs = time.time() - start
        if res.pop("ok"):
            ok += 1
            print(f"OK    {name:22s} {secs:6.1f}s params {res['params_before']/1e6:.2f}M -> "
                  f"{res['params_after']/1e6:.2f}M input {res['input']} onnx cos {res['cosine_onnx_vs_torch']}",
                  flush=True)
        else:
            print(f"FAIL  {name:22s} {secs:6.1f}s {res['error']}", flush=True)
    print(f"\nstructured {args.ratio:.0%} + ONNX export + ONNX Runtime: {ok}/{len(names)} "
          f"= {100 * ok / len(names):.1f}% succeeded", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
