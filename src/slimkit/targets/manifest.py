"""``manifest.json``: what an artifact folder holds, so the folder alone is enough to load it again.

Every target's ``deploy`` writes one beside its artifact (see ``Target.__init_subclass__``), and so
do the ONNX Runtime and OpenVINO loaders for a ``model.*`` file no manifest describes yet, which is
how quantized artifacts (written by their own engines, then loaded) get one too. The manifest is
plain JSON: loading an artifact never unpickles anything.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimkit.core.files import atomic_write_json
from slimkit.errors import SlimkitError

if TYPE_CHECKING:
    from slimkit.targets.base import Deployed

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# The artifact a target or a quantizer leaves for the user is always model.<ext>; the other files
# beside it (float.onnx, sens0.xml, ...) are steps on the way and get no manifest.
ARTIFACT_STEM = "model"
_MAX_BYTES = 1 << 20  # a manifest lists names, shapes and digests: anything larger is not one
_REQUIRED = {"format_version": int, "target": str, "artifact": str, "inputs": dict}


class ArtifactError(SlimkitError):
    """An artifact folder cannot be loaded: no manifest, a broken one, or files missing or changed
    (the folder given is the problem: a usage error)."""

    exit_code = 2


class NeedsModelError(ArtifactError):
    """The artifact holds weights only: only the model's class (its task and recipe) can rebuild it."""


def _version(distribution: str | None) -> str | None:
    if not distribution:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digests(deployed: Deployed) -> dict[str, str]:
    """SHA-256 of each file of ``deployed``'s artifact (an IR's ``.xml`` and ``.bin``), by file name.

    A plug-in's artifact that is a folder is not hashed: the manifest then checks that it exists.
    """
    return {p.name: sha256_of(p) for p in deployed.files() if p.is_file()}


def write_manifest(deployed: Deployed, files: dict[str, str] | None = None) -> Path:
    """Describe ``deployed``'s artifact in ``manifest.json`` beside it (atomically); returns its path.

    ``files`` are the artifact's digests when the caller has them already.

    Example:
        >>> import torch, tempfile
        >>> from slimkit.targets import get_target
        >>> net = torch.nn.Linear(4, 2)
        >>> d = get_target("torch").deploy(net, {"x": torch.randn(1, 4)}, Path(tempfile.mkdtemp()), 1)
        >>> m = read_manifest(write_manifest(d).parent)
        >>> m["target"], m["artifact"], m["precision"], m["inputs"]
        ('torch', 'model.safetensors', 'fp32', {'x': {'dtype': 'float32', 'shape': [None, 4]}})
    """
    if deployed.artifact is None:
        raise ValueError(f"a model on target {deployed.target} without an artifact has nothing to describe")
    runtime = deployed.runtime or deployed.target
    manifest = {
        "format_version": FORMAT_VERSION,
        "target": deployed.target,
        "artifact": deployed.artifact.name,
        "files": files if files is not None else digests(deployed),
        "runtime": {"name": runtime, "version": _version(runtime)},
        "precision": deployed.precision(),
        "inputs": {name: {"dtype": deployed.input_dtypes.get(name), "shape": list(shape)}
                   for name, shape in deployed.input_shapes.items()},
        "slimkit_version": _version("slimkit"),
    }
    path = deployed.artifact.parent / MANIFEST
    atomic_write_json(path, manifest)
    return path


def describe_if_new(deployed: Deployed) -> None:
    """Write the manifest of a freshly written ``model.*`` artifact that none describes yet.

    Loading an artifact again (a quantizer's float reference, a reload in f32) leaves the manifest
    of the deployment that made it, whose precision is the one chosen by measurement.
    """
    artifact = deployed.artifact
    if artifact is None or artifact.stem != ARTIFACT_STEM:
        return
    files = digests(deployed)
    try:
        if read_manifest(artifact.parent).get("files") == files:
            return
    except ArtifactError:
        pass  # none yet, or one for files since replaced
    write_manifest(deployed, files)


def _listing(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return shown or "nothing"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of artifact folder ``folder``, checked; raises ArtifactError with a hint otherwise.

    Example:
        >>> import tempfile
        >>> read_manifest(Path(tempfile.mkdtemp()))
        Traceback (most recent call last):
        slimkit.targets.manifest.ArtifactError: no manifest.json in ... (it holds nothing): ...
          hint: ...
    """
    folder = Path(folder)
    if not folder.is_dir():
        if folder.is_file():
            raise ArtifactError(f"{folder} is a file, not an artifact folder",
                                hint=f"give the folder that holds it: {folder.parent}")
        raise ArtifactError(f"artifact folder {folder} does not exist",
                            hint="give the folder a deployment wrote, e.g. <run>/artifacts/<name>")
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST} in {folder} (it holds {_listing(folder)}): "
                            "this slimkit did not deploy it, or an older one did",
                            hint="deploy the model again with this slimkit; an older run's file loads with "
                                 "slimkit.targets.load_artifact(target, file, threads)")
    if path.stat().st_size > _MAX_BYTES:
        raise ArtifactError(f"{path} is {path.stat().st_size} bytes, not a manifest slimkit wrote (under 1 MiB)",
                            hint="deploy the model again to rewrite it")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{path} is unreadable: {str(exc).splitlines()[0][:200]}",
                            hint="the file is damaged: deploy the model again to rewrite it") from exc
    return _checked(manifest, path)


def _checked(manifest: Any, path: Path) -> dict[str, Any]:
    hint = "the file is damaged or was edited: deploy the model again to rewrite it"
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} holds a JSON {type(manifest).__name__}, not an object", hint=hint)
    for key, kind in _REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise ArtifactError(f"{path} has no valid '{key}' (a {kind.__name__})", hint=hint)
    if manifest["format_version"] > FORMAT_VERSION:
        raise ArtifactError(f"{path} is format {manifest['format_version']}; this slimkit reads up to "
                            f"{FORMAT_VERSION}", hint="upgrade slimkit to load this artifact")
    if not isinstance(manifest.get("precision"), (str, type(None))):
        raise ArtifactError(f"{path} has no valid 'precision' (a str)", hint=hint)
    files = manifest.get("files")
    if files is not None and not (isinstance(files, dict) and all(
            isinstance(k, str) and Path(k).name == k and isinstance(v, str) for k, v in files.items())):
        raise ArtifactError(f"{path} has no valid 'files' (file name -> SHA-256)", hint=hint)
    name = manifest["artifact"]
    if Path(name).name != name or name in ("", ".", ".."):
        # A manifest only ever names a file in its own folder: a path there is not ours.
        raise ArtifactError(f"{path} names artifact '{name}', not a file of its folder", hint=hint)
    return manifest


def artifact_path(manifest: dict[str, Any], folder: Path) -> Path:
    """The artifact file ``manifest`` names in ``folder``, after checking its files are there and unchanged."""
    folder = Path(folder)
    # The artifact itself is checked even where no digest covers it (a plug-in's folder artifact).
    files = {manifest["artifact"]: None, **(manifest.get("files") or {})}
    for name, expected in files.items():
        path = folder / name
        if not path.exists():
            raise ArtifactError(f"{path.name}, the artifact the manifest of {folder} names, is missing "
                                f"(the folder holds {_listing(folder)})",
                                hint="the folder was copied in part or cleaned up: copy it whole, or deploy again")
        if expected is not None and sha256_of(path) != expected:
            raise ArtifactError(f"{path.name} in {folder} changed since it was deployed (its SHA-256 differs "
                                "from the manifest's)",
                                hint="the artifact was replaced or damaged: deploy the model again")
    return folder / manifest["artifact"]


def manifest_for(path: Path) -> dict[str, Any] | None:
    """The manifest of ``path``'s folder when it describes the file ``path``, else None (an older run).

    Example:
        >>> manifest_for(Path("/nonexistent/model.onnx")) is None
        True
    """
    path = Path(path)
    try:
        manifest = read_manifest(path.parent)
    except ArtifactError:
        return None
    return manifest if manifest["artifact"] == path.name else None
