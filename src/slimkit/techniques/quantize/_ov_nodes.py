"""What stands behind an OpenVINO node's input: shared by the layer walk and the outlier scan."""

from __future__ import annotations

from typing import Any

# Ops OpenVINO puts between a weight constant and the op that reads it.
_LAYOUT = ("Convert", "Reshape", "Transpose")


def _constant_behind(node: Any, through: tuple[str, ...] = _LAYOUT) -> Any:
    while node.get_type_name() in through and node.inputs():
        node = node.input_value(0).get_node()
    if node.get_type_name() == "Constant" and len(node.get_output_partial_shape(0)) >= 2:
        return node
    return None


def _is_constant(node: Any) -> bool:
    return _constant_behind(node) is not None
