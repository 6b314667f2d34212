"""Target ``tensorrt``: torch.compile with Torch-TensorRT's backend, GPU only."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.targets.base import Availability, Deployed, Target, dynamic_shapes
from slimkit.targets.torch_eager import TorchDeployed, save_state


class _CudaDeployed(TorchDeployed):
    runtime: ClassVar[str | None] = "torch-tensorrt"

    def _run(self, inputs: Inputs) -> torch.Tensor:
        out = super()._run({k: v.cuda() for k, v in inputs.items()})
        return out.cpu()


class TensorRT(Target):
    name = "tensorrt"
    description = "NVIDIA TensorRT through Torch-TensorRT (needs a CUDA GPU)"
    formats = (".safetensors",)
    needs_model = True

    def availability(self) -> Availability:
        if not torch.cuda.is_available():
            return Availability(False, "no CUDA GPU on this machine")
        if importlib.util.find_spec("torch_tensorrt") is None:
            return Availability(False, "torch_tensorrt is not installed; pip install torch-tensorrt")
        return Availability(True, f"GPU {torch.cuda.get_device_name(0)}")

    def deploy(self, model: nn.Module, example_inputs: Inputs, workdir: Path, threads: int) -> Deployed:
        self.ensure_available()
        import torch_tensorrt  # noqa: F401  (registers the "tensorrt" backend)

        path = save_state(model, Path(workdir) / "model.safetensors")
        compiled = torch.compile(model.eval().cuda(), backend="tensorrt", dynamic=False)
        return _CudaDeployed(self.name, path, dynamic_shapes(example_inputs), {"device": "cuda"},
                             model=compiled)  # type: ignore[arg-type]
