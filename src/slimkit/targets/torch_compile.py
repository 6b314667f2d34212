"""Target ``torch-compile``: torch.compile (Inductor) on the same weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.targets.base import Availability, Deployed, Target, dynamic_shapes
from slimkit.targets.torch_eager import TorchDeployed, save_state


class TorchCompile(Target):
    name = "torch-compile"
    description = "torch.compile with the Inductor backend (compiles on first run)"
    formats = (".safetensors",)
    needs_model = True

    def availability(self) -> Availability:
        # Inductor on CPU generates C++; without a compiler it cannot build kernels.
        if shutil.which("g++") is None and shutil.which("c++") is None and shutil.which("clang++") is None:
            return Availability(False, "no C++ compiler found (Inductor needs one on CPU); install g++")
        return Availability(True, torch.__version__)

    def deploy(self, model: nn.Module, example_inputs: Inputs, workdir: Path, threads: int) -> Deployed:
        self.ensure_available()
        torch.set_num_threads(threads)
        path = save_state(model, Path(workdir) / "model.safetensors")
        # dynamic=False: one specialised graph per batch size is fastest at batch 1; the
        # evaluation's other batch sizes compile once each.
        compiled = torch.compile(model.eval(), dynamic=False)
        return TorchDeployed(self.name, path, dynamic_shapes(example_inputs),
                             {"threads": threads, "backend": "inductor"}, model=compiled)  # type: ignore[arg-type]
