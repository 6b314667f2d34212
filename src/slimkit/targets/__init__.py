"""Runtime targets, looked up by name."""

from pathlib import Path

from slimkit.core.registry import Registry
from slimkit.targets.base import Availability, Deployed, Target
from slimkit.targets.onnxruntime import OnnxRuntime
from slimkit.targets.openvino import OpenVino
from slimkit.targets.tensorrt import TensorRT
from slimkit.targets.torch_compile import TorchCompile
from slimkit.targets.torch_eager import TorchEager

TARGETS: Registry[Target] = Registry("target")
for _target in (TorchEager(), TorchCompile(), OnnxRuntime(), OpenVino(), TensorRT()):
    TARGETS.register(_target.name, _target)


def get_target(name: str) -> Target:
    """A target by name; an unknown name lists the known ones.

    Example:
        >>> get_target("torch").name
        'torch'
    """
    return TARGETS.get(name)


def load_artifact(target: str, path: Path, threads: int, precision: str | None = None) -> Deployed | None:
    """An exported artifact loaded again on its runtime (ONNX Runtime's .onnx, OpenVINO's .xml, in
    ``precision`` where given); None for targets whose artifact is a torch model, which only its
    recipe can rebuild.

    Example:
        >>> load_artifact("torch", Path("model.safetensors"), 1) is None
        True
    """
    if target == "onnxruntime":
        from slimkit.targets.onnxruntime import load_onnx

        return load_onnx(path, threads)
    if target == "openvino":
        from slimkit.targets.openvino import load_ir

        return load_ir(path, threads, None, (precision,) if precision else ("f32",))
    return None


__all__ = ["TARGETS", "Availability", "Deployed", "Target", "get_target", "load_artifact"]
