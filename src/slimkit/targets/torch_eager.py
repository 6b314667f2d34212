"""Target ``torch``: the model as it is, in eager PyTorch (the baseline every ratio is against)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.files import atomic_path
from slimkit.core.task import run_model
from slimkit.targets.base import Availability, Deployed, Target, dtype_name, dynamic_shapes

_PRECISION = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


@dataclass
class TorchDeployed(Deployed):
    runtime: ClassVar[str | None] = "torch"

    model: nn.Module | None = None

    @torch.inference_mode()
    def _run(self, inputs: Inputs) -> torch.Tensor:
        assert self.model is not None
        return run_model(self.model, inputs).float()

    def precision(self) -> str:
        """A quantization scheme where one was applied, else the dtype most weights are in."""
        if self.details.get("scheme"):
            return str(self.details["scheme"])
        counts: dict[torch.dtype, int] = {}
        for p in self.model.parameters() if self.model is not None else ():
            counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
        dtype = max(counts, key=lambda d: counts[d]) if counts else torch.float32
        return _PRECISION.get(dtype, dtype_name(dtype))


def save_state(model: nn.Module, path: Path) -> Path:
    """Weights as safetensors: what the model costs on disk, loadable without unpickling."""
    from safetensors.torch import save_file

    state = {}
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, torch.Tensor):
            state[name] = tensor.detach().contiguous().clone()
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path


class TorchEager(Target):
    name = "torch"
    description = "PyTorch eager mode, fp32 (the baseline)"
    formats = (".safetensors",)
    needs_model = True

    def availability(self) -> Availability:
        return Availability(True, torch.__version__)

    def deploy(self, model: nn.Module, example_inputs: Inputs, workdir: Path, threads: int) -> Deployed:
        torch.set_num_threads(threads)
        path = save_state(model, Path(workdir) / "model.safetensors")
        return TorchDeployed(self.name, path, dynamic_shapes(example_inputs), {"threads": threads},
                             model=model.eval())
