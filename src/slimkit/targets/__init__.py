"""Runtime targets, looked up by name."""

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


__all__ = ["TARGETS", "Availability", "Deployed", "Target", "get_target"]
