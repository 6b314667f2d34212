"""Runtime targets, looked up by name."""

from pathlib import Path

from slimkit.core.registry import Registry
from slimkit.targets.base import Availability, Deployed, Target
from slimkit.targets.manifest import (
    MANIFEST,
    ArtifactError,
    NeedsModelError,
    manifest_for,
    read_manifest,
    write_manifest,
)
from slimkit.targets.onnxruntime import OnnxRuntime
from slimkit.targets.openvino import OpenVino
from slimkit.targets.tensorrt import TensorRT
from slimkit.targets.torch_compile import TorchCompile
from slimkit.targets.torch_eager import TorchEager


def _as_target(obj: object) -> Target:
    """An entry point of the ``slimkit.targets`` group: a Target subclass or instance."""
    if isinstance(obj, type) and issubclass(obj, Target):
        obj = obj()
    if not isinstance(obj, Target):
        raise TypeError(f"a {type(obj).__name__}, not a slimkit.targets.Target")
    return obj


# Third-party targets join from the "slimkit.targets" entry-point group the first time it is read.
TARGETS: Registry[Target] = Registry("target", group="slimkit.targets", check=_as_target)
for _target in (TorchEager(), TorchCompile(), OnnxRuntime(), OpenVino(), TensorRT()):
    TARGETS.register(_target.name, _target)


def get_target(name: str) -> Target:
    """A target by name; an unknown name lists the known ones.

    Example:
        >>> get_target("torch").name
        'torch'
    """
    return TARGETS.get(name)


def load(artifact_dir: Path, threads: int, target: str | None = None, precision: str | None = None) -> Deployed:
    """The artifact in ``artifact_dir`` (a folder a target's deploy wrote), loaded from its manifest.

    It runs on the target the manifest names, or on ``target`` where that runtime reads the file
    (an ONNX Runtime artifact runs on openvino too); ``precision`` as in ``Target.load``. Raises
    ArtifactError (a SlimkitError, with a hint) when the folder cannot be loaded, NeedsModelError
    for a torch target's weights, which only the model's class can rebuild.

    Example:
        >>> import tempfile, torch
        >>> folder, x = Path(tempfile.mkdtemp()), {"input": torch.randn(1, 4)}
        >>> deployed = get_target("onnxruntime").deploy(torch.nn.Linear(4, 2), x, folder, 1)
        >>> torch.allclose(load(folder, 1).run(x), deployed.run(x))
        True
    """
    manifest = read_manifest(artifact_dir)
    if target is None:
        target = manifest["target"]
        if target not in TARGETS:
            raise ArtifactError(f"the manifest of {artifact_dir} names target '{target}', which this slimkit "
                                f"does not know (it knows {', '.join(TARGETS.names())})",
                                hint="install the plug-in that provides that target, or pass target= naming one "
                                     "that reads the artifact")
    return get_target(target).load(artifact_dir, threads, precision)


def load_artifact(target: str, path: Path, threads: int, precision: str | None = None) -> Deployed | None:
    """An exported artifact file loaded again on its runtime; None for targets whose artifact is a torch
    model, which only its recipe can rebuild.

    A file its folder's ``manifest.json`` describes loads with ``Target.load`` (in the precision it
    was deployed in, its files checked); a file written before manifests existed (ONNX Runtime's
    .onnx, OpenVINO's .xml) loads directly, in ``precision`` where given, else f32.

    Example:
        >>> load_artifact("torch", Path("model.safetensors"), 1) is None
        True
    """
    if manifest_for(path) is not None:
        try:
            return get_target(target).load(Path(path).parent, threads)
        except NeedsModelError:
            return None
    if target == "onnxruntime":
        from slimkit.targets.onnxruntime import load_onnx

        return load_onnx(path, threads, describe=False)
    if target == "openvino":
        from slimkit.targets.openvino import load_ir

        return load_ir(path, threads, None, (precision,) if precision else ("f32",), describe=False)
    return None


__all__ = ["MANIFEST", "TARGETS", "ArtifactError", "Availability", "Deployed", "NeedsModelError", "Target",
           "get_target", "load", "load_artifact", "manifest_for", "read_manifest", "write_manifest"]
