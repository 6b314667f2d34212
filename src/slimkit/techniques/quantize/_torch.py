"""torch engine: torchao int8 (dynamic, weight-only) and fp16/bf16 casts, for the eager target.

torchao's int8 dynamic quantization can run *slower* than fp32 in eager mode on CPU
(BENCHMARKS.md): the result is still offered, and the never-slower guard in the report keeps it
from being called the best.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from slimkit._optional import require
from slimkit.core.data import Inputs
from slimkit.core.files import atomic_path
from slimkit.core.task import run_model
from slimkit.targets.base import dtype_name, dynamic_shapes
from slimkit.targets.manifest import write_manifest
from slimkit.targets.torch_eager import TorchDeployed
from slimkit.techniques.quantize._config import QuantizeConfig

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class CastModel(nn.Module):
    """Run a model in a lower float precision: float inputs cast in, the output cast back to fp32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        cast = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        return run_model(self.model, cast).float()


def quantize_torch(model: nn.Module, cfg: QuantizeConfig) -> nn.Module:
    """A quantized copy of ``model`` for eager torch."""
    model = copy.deepcopy(model).eval()
    if cfg.scheme in _DTYPES:
        return CastModel(model, _DTYPES[cfg.scheme]).eval()
    require("torchao", "int8 quantization for torch")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    config = Int8DynamicActivationInt8WeightConfig() if cfg.scheme == "int8-dynamic" else Int8WeightOnlyConfig()
    quantize_(model, config)
    return model


def _flat_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State as plain tensors: torchao's tensor subclasses are flattened into their int8 data and scales."""
    state = {}
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        if type(tensor) is not torch.Tensor and hasattr(tensor, "__tensor_flatten__"):
            attrs, _ = tensor.__tensor_flatten__()
            for attr in attrs:
                state[f"{name}.{attr}"] = getattr(tensor, attr).detach().contiguous().clone()
        else:
            state[name] = tensor.detach().contiguous().clone()
    return state


def deploy_torch(model: nn.Module, example_inputs: Inputs, path: Path, threads: int, scheme: str) -> TorchDeployed:
    """Save the quantized weights (their real on-disk cost) and wrap the model as a torch target."""
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    with atomic_path(path) as tmp:
        save_file(_flat_state(model), str(tmp))
    deployed = TorchDeployed("torch", path, dynamic_shapes(example_inputs), {"threads": threads, "scheme": scheme},
                             {k: dtype_name(v.dtype) for k, v in example_inputs.items()}, model=model.eval())
    write_manifest(deployed)  # precision = the scheme: slimkit.load(folder, model=original) rebuilds it
    return deployed


def rebuild(model: nn.Module, scheme: str, weights: Path) -> nn.Module:
    """``model`` quantized with ``scheme`` again, proven to be the model whose weights are in ``weights``
    (torch quantization here is a function of the float weights alone: no calibration)."""
    from safetensors.torch import load_file

    from slimkit.targets.manifest import ArtifactError

    rebuilt = quantize_torch(model, QuantizeConfig(scheme, "torch"))
    stored, again = load_file(str(weights)), _flat_state(rebuilt)
    if set(stored) != set(again) or any(not torch.equal(stored[k], again[k]) for k in stored):
        raise ArtifactError(f"the model given, quantized {scheme} again, does not give the weights in {weights}",
                            hint="pass the model this artifact was made from (before any step of its recipe)")
    return rebuilt
