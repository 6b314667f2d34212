"""What every runtime target provides: availability, deploying a torch model, loading an artifact."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.files import dir_size
from slimkit.errors import ShapeError, UnavailableError


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str  # version when ok, else why not and what to do


@dataclass
class Deployed(ABC):
    """A model loaded on a target, ready to run named inputs.

    ``input_shapes`` maps each input to its expected shape with ``None`` for dynamic axes;
    inputs are checked against it so a wrong shape names expected vs got.
    """

    target: str
    artifact: Path | None
    input_shapes: dict[str, list[int | None]]
    details: dict[str, Any] = field(default_factory=dict)

    @abstractmethod
    def _run(self, inputs: Inputs) -> torch.Tensor: ...

    def run(self, inputs: Inputs) -> torch.Tensor:
        """Run one batch; returns the primary output as a float torch tensor."""
        self.check_inputs(inputs)
        return self._run(inputs)

    def check_inputs(self, inputs: Inputs) -> None:
        if not isinstance(inputs, Mapping):
            raise ShapeError(f"a batch's inputs are a {type(inputs).__name__}, not named tensors",
                             hint="each batch is (dict(name=tensor), targets), as slimkit.Batches yields; "
                                  f"name the inputs {list(self.input_shapes)}")
        for name, expected in self.input_shapes.items():
            if name not in inputs:
                raise ShapeError(f"input '{name}' is missing (got {list(inputs)})",
                                 hint=f"give inputs named {list(self.input_shapes)}")
            got = list(inputs[name].shape)
            if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got, strict=False)):
                shown = ["N" if e is None else e for e in expected]
                raise ShapeError(f"input '{name}' has shape {got}, expected {shown} on target {self.target}",
                                 hint="reshape the input to match the model's example inputs")

    def size_bytes(self) -> int:
        """Bytes on disk of the artifact (and its weights file), 0 when there is none."""
        if self.artifact is None or not self.artifact.exists():
            return 0
        if self.artifact.suffix == ".xml":
            return dir_size(self.artifact) + dir_size(self.artifact.with_suffix(".bin"))
        return dir_size(self.artifact)


class Target(ABC):
    """A runtime. Subclasses are small: they export or load, and they run."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def availability(self) -> Availability:
        """Whether this target can run here, and why not."""

    @abstractmethod
    def deploy(self, model: nn.Module, example_inputs: Inputs, workdir: Path, threads: int) -> Deployed:
        """Turn a torch model into this target's artifact under ``workdir`` and load it."""

    def ensure_available(self) -> None:
        avail = self.availability()
        if not avail.ok:
            raise UnavailableError(f"target '{self.name}' is not available here: {avail.reason}",
                                   hint="run `slimkit list` to see the available targets")


def dynamic_shapes(example_inputs: Inputs) -> dict[str, list[int | None]]:
    """Expected input shapes with a dynamic batch axis."""
    return {n: [None, *t.shape[1:]] for n, t in example_inputs.items()}
