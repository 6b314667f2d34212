"""``slimkit.load``: a run folder, a search's ``best/`` or one artifact folder back to a model to call."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.errors import UsageError
from slimkit.pipeline.checks import check_threads, default_threads
from slimkit.pipeline.describe import artifact_folder
from slimkit.report.schema import Entry, Report
from slimkit.targets import load as load_deployed
from slimkit.targets.manifest import MANIFEST, ArtifactError, read_manifest
from slimkit.targets.predictor import Predictor
from slimkit.targets.torch_eager import TorchDeployed


def load(
    path: str | Path,
    *,
    entry: str | None = None,
    model: nn.Module | None = None,
    target: str | None = None,
    threads: int | None = None,
) -> Predictor:
    """The deployed model in ``path``, ready to call like the original model.

    ``path`` is a run folder (its best entry is loaded, or ``entry`` by id), a search's ``best/``
    folder, or an artifact folder (with its ``manifest.json``). ONNX Runtime and OpenVINO
    artifacts load from the folder alone, on the runtime and precision the manifest names
    (``target`` asks for another runtime that reads the file). A torch artifact holds weights
    only: pass the original ``model`` (unpruned) and the weights, pruned shapes included, are
    loaded into a copy of it.

    Example:
        >>> import tempfile, torch
        >>> import slimkit
        >>> x = torch.randn(64, 4)
        >>> out = tempfile.mkdtemp()
        >>> result = slimkit.benchmark(torch.nn.Linear(4, 3), x, targets=["onnxruntime"], out=out, quick=True)
        >>> load(out, entry="onnxruntime")(x[:5]).shape
        torch.Size([5, 3])
    """
    if not isinstance(path, (str, Path)):
        raise UsageError(f"slimkit.load takes a folder path, not {type(path).__name__}")
    check_threads(threads)
    folder = Path(path)
    threads = threads or default_threads()
    if (folder / "report.json").is_file() and not (folder / MANIFEST).is_file():
        folder = _entry_folder(folder, entry)
    elif entry is not None:
        raise UsageError(f"entry= picks an entry of a run folder; {folder} is not one (no report.json)")
    manifest = read_manifest(folder)
    order = manifest.get("input_order")
    if order is not None and not (isinstance(order, list) and all(isinstance(n, str) for n in order)):
        raise ArtifactError(f"the manifest of {folder} has an 'input_order' that is not a list of names",
                            hint="the file was edited or damaged: deploy the model again to rewrite it")
    names = list(order or manifest["inputs"])
    if manifest["target"] == "torch" and target in (None, "torch"):
        return Predictor(_torch_model(folder, manifest, model, threads), names, manifest, folder)
    return Predictor(load_deployed(folder, threads, target), names, manifest, folder)


def _entry_folder(run: Path, entry_id: str | None) -> Path:
    """The artifact folder of ``run``'s best entry (or of ``entry_id``)."""
    try:
        report = Report.from_dict(json.loads((run / "report.json").read_text()))
        if not all(e.artifact is None or isinstance(e.artifact, str) for e in report.entries):
            raise TypeError("an entry's artifact is not a path")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UsageError(f"{run}/report.json cannot be read: {str(exc)[:200]}",
                         hint="give the artifact folder itself (it has a manifest.json)") from None
    wanted = entry_id or report.best
    if wanted is None:
        raise UsageError(f"the run in {run} found no best model (no candidate met every constraint)",
                         hint="pick one by id (--entry ID in slimkit predict, entry= in slimkit.load): "
                              + ", ".join(e.id for e in report.entries))
    try:
        chosen: Entry = report.entry(wanted)
    except StopIteration:
        raise UsageError(f"the run in {run} has no entry '{wanted}'",
                         hint="its entries: " + ", ".join(e.id for e in report.entries)) from None
    folder = artifact_folder(chosen, run)
    if folder is None:
        raise UsageError(f"entry '{wanted}' of {run} kept no artifact")
    return folder


TORCH_SCHEMES = ("int8-dynamic", "int8-weight-only", "fp16", "bf16")


def _torch_model(folder: Path, manifest: dict[str, Any], model: nn.Module | None, threads: int) -> TorchDeployed:
    """The original model's architecture with the artifact's weights (a pruned model's shapes first)."""
    if model is None:
        raise ArtifactError(f"{folder} holds torch weights only: loading them needs the model they belong to",
                            hint="in Python pass the original model (slimkit.load(path, model=my_model)); from the "
                                 "command line pick an ONNX Runtime or OpenVINO entry (--entry)")
    if not isinstance(model, nn.Module):
        raise UsageError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    from safetensors.torch import load_file

    from slimkit.targets.manifest import artifact_path
    from slimkit.techniques.prune import load_pruned

    weights = artifact_path(manifest, folder)
    fresh = copy.deepcopy(model).eval()
    if manifest.get("precision") in TORCH_SCHEMES:  # quantized in torch (torchao int8, fp16/bf16 casts)
        from slimkit.techniques.quantize._torch import rebuild

        loaded = rebuild(fresh, manifest["precision"], weights)
    elif (folder / "structure.json").is_file():
        loaded = load_pruned(folder, fresh)
    else:
        try:
            missing, unexpected = fresh.load_state_dict(load_file(str(weights)), strict=False)
        except RuntimeError:  # shapes that differ: another architecture's weights
            missing, unexpected = ["(tensor shapes differ)"], []
        if missing or unexpected:
            raise ArtifactError(f"the weights in {folder} do not fit the model given ({len(missing)} missing, "
                                f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})",
                                hint="pass the model these weights were saved from")
        loaded = fresh
    torch.set_num_threads(threads)
    shapes = {k: v["shape"] for k, v in manifest["inputs"].items()}
    dtypes = {k: v["dtype"] for k, v in manifest["inputs"].items() if v.get("dtype")}
    return TorchDeployed("torch", weights, shapes, {"threads": threads}, dtypes, model=loaded.eval())
