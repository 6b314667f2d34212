"""What an artifact folder says about itself beyond its files: the inputs in ``forward()``'s order, the
metric measured, and the preprocessing raw data needs, with the files it reads (a tokenizer's)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from slimkit.core.files import atomic_write_json
from slimkit.core.task import Task
from slimkit.report.schema import Entry
from slimkit.targets.manifest import MANIFEST, ArtifactError, read_manifest, sha256_of


def artifact_folder(entry: Entry, out: Path) -> Path | None:
    """The folder holding ``entry``'s artifact, or None when it kept none."""
    if entry.artifact is None:
        return None
    path = Path(entry.artifact)
    path = path if path.is_absolute() else out / path
    return path if path.is_dir() else path.parent


def describe(folder: Path, task: Task, entry: Entry | None = None) -> None:
    """Add the task's side to the manifest in ``folder`` (none there: nothing to do)."""
    if not (folder / MANIFEST).is_file():
        return
    try:
        manifest = read_manifest(folder)
    except ArtifactError:
        return  # a damaged manifest is reported when it is loaded, not rewritten here
    manifest["input_order"] = list(task.example_inputs)
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
    for entry in entries:
        folder = artifact_folder(entry, out)
        if folder is not None:
            describe(folder, task, entry)
