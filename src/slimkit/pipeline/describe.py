"""What an artifact folder says about itself beyond its files: the inputs in ``forward()``'s order, the
metric measured, and the preprocessing raw data needs, with the files it reads (a tokenizer's)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from slimkit.core.data import token_inputs
from slimkit.core.files import atomic_write_json
from slimkit.core.task import Task, run_model
from slimkit.report.schema import Entry
from slimkit.targets.manifest import MANIFEST, ArtifactError, read_manifest, sha256_of


def entry_artifact(entry: Entry, out: Path) -> Path | None:
    """``entry``'s artifact (its path in the report is relative to the run folder ``out``), or None."""
    if entry.artifact is None:
        return None
    path = Path(entry.artifact)
    return path if path.is_absolute() else out / path


def artifact_folder(entry: Entry, out: Path) -> Path | None:
    """The folder holding ``entry``'s artifact, or None when it kept none."""
    path = entry_artifact(entry, out)
    if path is None:
        return None
    return path if path.is_dir() else path.parent


def outputs(task: Task) -> dict[str, Any]:
    """The artifact's output as the manifest records it: every artifact returns the model's primary
    output as one tensor named ``output``, its batch axis (and a token input's sequence axis) dynamic."""
    inputs = task.example_inputs
    with torch.no_grad():
        out = run_model(task.build_model(), inputs)
    lengths = {inputs[n].shape[1] for n in token_inputs(inputs)}
    shape: list[int | None] = [None, *out.shape[1:]]
    if out.dim() >= 2 and out.shape[1] in lengths:
        shape[1] = None  # one vector per token: as long as the text
    return {"output": {"dtype": "float32", "shape": shape}}


def describe(folder: Path, task: Task, entry: Entry | None = None, output: dict[str, Any] | None = None) -> None:
    """Add the task's side to the manifest in ``folder`` (none there: nothing to do)."""
    if not (folder / MANIFEST).is_file():
        return
    try:
        manifest = read_manifest(folder)
    except ArtifactError:
        return  # a damaged manifest is reported when it is loaded, not rewritten here
    manifest["input_order"] = list(task.example_inputs)
    manifest["outputs"] = output if output is not None else outputs(task)
    if entry is not None:
        m = entry.measurement
        manifest["metric"] = {"name": m.metric_name, "value": m.metric, **m.extras}
    if task.preprocess is not None:
        pre = dict(task.preprocess)
        names = _write_assets(folder, task) if task.write_assets is not None else []
        if names:
            pre["files"] = names
            manifest["files"] = {**(manifest.get("files") or {}), **{n: sha256_of(folder / n) for n in names}}
        manifest["preprocessing"] = pre
    atomic_write_json(folder / MANIFEST, manifest)


def _write_assets(folder: Path, task: Task) -> list[str]:
    """The preprocessing files, written beside the artifact (names that would replace one of its
    own files are left out)."""
    assert task.write_assets is not None
    staging = Path(tempfile.mkdtemp(prefix=".assets", dir=folder))
    try:
        task.write_assets(staging)
        names = []
        for path in sorted(staging.iterdir()):
            target = folder / path.name
            if path.is_file() and path.name != MANIFEST and not (target.exists() and not _is_asset(folder, path.name)):
                shutil.move(str(path), str(target))
                names.append(path.name)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_asset(folder: Path, name: str) -> bool:
    """Whether ``name`` in ``folder`` is a preprocessing file an earlier description wrote."""
    try:
        return name in read_manifest(folder).get("preprocessing", {}).get("files", [])
    except ArtifactError:
        return False


def describe_all(entries: Iterable[Entry], out: Path, task: Task) -> None:
    """Describe the artifact folder of every entry that kept one."""
    output = None
    for entry in entries:
        folder = artifact_folder(entry, out)
        if folder is not None:
            output = output or outputs(task)
            describe(folder, task, entry, output)
