"""What every runtime target provides: availability, deploying a torch model, loading an artifact."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from slimkit.core.data import Inputs, token_inputs
from slimkit.core.files import dir_size
from slimkit.errors import ShapeError, UnavailableError
from slimkit.targets.manifest import ArtifactError, NeedsModelError, artifact_path, read_manifest, write_manifest


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str  # version when ok, else why not and what to do


@dataclass
class Deployed(ABC):
    """A model loaded on a target, ready to run named inputs.

    ``input_shapes`` maps each input to its expected shape with ``None`` for dynamic axes;
    inputs are checked against it so a wrong shape names expected vs got. ``input_dtypes`` maps
    them to dtype names ("float32", "int64") where known; the manifest records both.
    """

    # The Python distribution that runs the artifact: its version goes into the manifest.
    runtime: ClassVar[str | None] = None

    target: str
    artifact: Path | None
    input_shapes: dict[str, list[int | None]]
    details: dict[str, Any] = field(default_factory=dict)
    input_dtypes: dict[str, str] = field(default_factory=dict)

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
        # Token inputs (ids, masks) may be of any length, but of one length together.
        lengths = {name: inputs[name].shape[1] for name, expected in self.input_shapes.items()
                   if len(expected) >= 2 and expected[1] is None and inputs[name].dim() >= 2}
        if len(set(lengths.values())) > 1:
            raise ShapeError(f"the sequence inputs differ in length ({lengths}); expected one length for all "
                             f"on target {self.target}", hint="pad or cut them together (a tokenizer does)")

    def files(self) -> list[Path]:
        """The files the artifact is made of: an OpenVINO IR is its ``.xml`` and its ``.bin``."""
        if self.artifact is None:
            return []
        if self.artifact.suffix == ".xml":
            return [self.artifact, self.artifact.with_suffix(".bin")]
        return [self.artifact]

    def size_bytes(self) -> int:
        """Bytes on disk of the artifact (and its weights file), 0 when there is none."""
        if self.artifact is None or not self.artifact.exists():
            return 0
        return sum(dir_size(p) for p in self.files() if p.exists())

    def precision(self) -> str:
        """The precision the artifact runs in, as the manifest records it."""
        return "fp32"


def dtype_name(dtype: torch.dtype) -> str:
    """A torch dtype as the manifest names it.

    Example:
        >>> dtype_name(torch.int64)
        'int64'
    """
    return str(dtype).removeprefix("torch.")


def _describing(deploy: Callable[..., Deployed]) -> Callable[..., Deployed]:
    """``deploy`` that also writes the artifact's manifest (see ``Target.__init_subclass__``)."""

    @functools.wraps(deploy)
    def wrapper(self: Target, model: nn.Module, example_inputs: Inputs, workdir: Path, threads: int,
                **kwargs: Any) -> Deployed:
        deployed = deploy(self, model, example_inputs, workdir, threads, **kwargs)
        if deployed.artifact is not None:
            # The example inputs say the dtypes where the runtime could not (torch weights).
            for name in deployed.input_shapes:
                if name in example_inputs and name not in deployed.input_dtypes:
                    deployed.input_dtypes[name] = dtype_name(example_inputs[name].dtype)
            write_manifest(deployed)
        return deployed

    wrapper._writes_manifest = True  # type: ignore[attr-defined]
    return wrapper


class Target(ABC):
    """A runtime. Subclasses are small: they export or load, and they run.

    Every subclass's ``deploy`` writes ``manifest.json`` beside the artifact it returns, without
    the subclass doing anything (plug-in targets included); ``load`` reads the folder back on the
    runtime, for the file kinds named in ``formats``, through the subclass's ``_load``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    formats: ClassVar[tuple[str, ...]] = ()  # artifact file suffixes this runtime reads
    # The artifact is weights only (torch targets): loading it needs the model's class.
    needs_model: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Callers (commands, the search, plug-ins) call deploy() directly, so the manifest is
        # written by wrapping each subclass's deploy rather than by asking every caller to.
        deploy = cls.__dict__.get("deploy")
        if deploy is not None and not getattr(deploy, "__isabstractmethod__", False) \
                and not getattr(deploy, "_writes_manifest", False):
            cls.deploy = _describing(deploy)  # type: ignore[method-assign]

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

    def load(self, artifact_dir: Path, threads: int, precision: str | None = None) -> Deployed:
        """The artifact that ``artifact_dir``'s manifest describes, loaded on this runtime.

        ``precision`` overrides the manifest's where the runtime has a choice (OpenVINO's
        inference precision). Raises ArtifactError (a SlimkitError) with a hint when the folder,
        its manifest or its files are missing, damaged or changed, or are not this runtime's.

        Example:
            >>> import tempfile, torch
            >>> from slimkit.targets import get_target
            >>> folder, x = Path(tempfile.mkdtemp()), {"input": torch.randn(1, 4)}
            >>> deployed = get_target("onnxruntime").deploy(torch.nn.Linear(4, 2), x, folder, 1)
            >>> torch.allclose(get_target("onnxruntime").load(folder, 1).run(x), deployed.run(x))
            True
        """
        manifest = read_manifest(artifact_dir)
        suffix = Path(manifest["artifact"]).suffix
        if suffix not in self.formats:
            reads = f"it reads {', '.join(self.formats)} files" if self.formats else "it loads no artifact files"
            raise ArtifactError(f"target '{self.name}' cannot run {manifest['artifact']}, the "
                                f"{manifest['target']} artifact in {artifact_dir} ({reads})",
                                hint=f"load it on target '{manifest['target']}', the one that deployed it")
        if self.needs_model:
            raise NeedsModelError(
                f"{manifest['artifact']} in {artifact_dir} holds the weights of a torch model for target "
                f"'{self.name}', not the model itself: loading it needs the model's class, which only its "
                "task and recipe can rebuild",
                hint="rebuild the model from its task (slimkit.load_task(name).build_model()) and load these "
                     "weights into it with safetensors.torch.load_file; or deploy it on onnxruntime or openvino, "
                     "whose artifacts load from their folder alone")
        path = artifact_path(manifest, Path(artifact_dir))
        self.ensure_available()
        return self._load(path, manifest, threads, precision)

    def _load(self, path: Path, manifest: dict[str, Any], threads: int, precision: str | None) -> Deployed:
        """Load the checked artifact file ``path``; every target that reads its ``formats`` overrides this."""
        raise ArtifactError(f"target '{self.name}' does not load artifacts back",
                            hint="load the folder on the target named in its manifest")


def dynamic_shapes(example_inputs: Inputs) -> dict[str, list[int | None]]:
    """Expected input shapes with a dynamic batch axis, and a dynamic sequence axis for token inputs.

    Example:
        >>> dynamic_shapes({"input_ids": torch.zeros(1, 8, dtype=torch.long), "x": torch.zeros(1, 3)})
        {'input_ids': [None, None], 'x': [None, 3]}
    """
    tokens = token_inputs(example_inputs)
    return {n: [None, *([None] if n in tokens else t.shape[1:2]), *t.shape[2:]] for n, t in example_inputs.items()}
