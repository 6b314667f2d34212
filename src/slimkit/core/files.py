"""Atomic file writes: nothing a user sees is ever half-written."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(p) as tmp:
        ...     _ = tmp.write_text("done")
        >>> p.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if tmp.is_file() and tmp.stat().st_mode & 0o777 == 0o600:
            # Some writers (safetensors) create private files; the artifact is meant to be shared
            # like every other file of the run, so it gets the usual permissions.
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN and infinities become null: other parsers reject them)."""
    atomic_write_text(path, json.dumps(_finite(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None.

    Example:
        >>> _finite({"a": [1.0, float("nan")], "b": float("inf")})
        {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dir_size(path: Path) -> int:
    """Bytes on disk of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


MAX_MAPPING_BYTES = 2**20


def read_mapping(path: str | Path, what: str, hint: str = "") -> Any:
    """Parse a YAML or JSON file with safe loaders; a missing or malformed file is a UsageError.

    JSON is read by the YAML parser too (YAML is a superset of JSON), so either suffix works.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.yaml"
        >>> _ = p.write_text("lr: [0.1, 0.01]")
        >>> read_mapping(p, "space")
        {'lr': [0.1, 0.01]}
        >>> _ = p.write_text("lr: {low: 1e-4, high: 1e-1}")  # YAML 1.1 read 1e-4 as a string
        >>> read_mapping(p, "space")
        {'lr': {'low': 0.0001, 'high': 0.1}}
    """
    import re

    import yaml

    from slimkit.errors import UsageError

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{what} file not found: {file}", hint=hint or f"give an existing {what} file")
    if file.stat().st_size > MAX_MAPPING_BYTES:
        # Settings files are small; a huge one is a mistake (or an attack) that would parse for minutes.
        raise UsageError(f"{what} file {file} is {file.stat().st_size / 2**20:.1f} MiB; a {what} file is at most "
                         f"{MAX_MAPPING_BYTES // 2**20} MiB", hint=f"give the {what} file itself")
    try:
        # PyYAML follows YAML 1.1, where a float needs a dot: 1e-4 (as in --lr 1e-4) was a string.
        class _Loader(yaml.SafeLoader):
            pass

        _Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                      re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                      list("-+0123456789"))
        return yaml.load(file.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise UsageError(f"{what} file {file} is not text (not UTF-8)",
                         hint=hint or f"give a YAML or JSON {what} file") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{what} file {file} is not valid YAML/JSON: {str(exc).splitlines()[0]}",
                         hint="fix the syntax at the position named") from exc
    except RecursionError:
        raise UsageError(f"{what} file {file} nests too deeply to read",
                         hint=f"a {what} file is a few levels of mappings and lists") from None
