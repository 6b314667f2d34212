"""Run folders: which command a folder belongs to, claiming it, and keeping it tidy between runs."""

from __future__ import annotations

import functools
import inspect
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimkit.core.files import atomic_write_json
from slimkit.errors import FolderInUseError, SlimkitError, UsageError
from slimkit.pipeline.lock import LOCK_NAME, held, holding, lock_run, release, release_all
from slimkit.report.schema import Report

Progress = Callable[[str], None]


def command_line(api_name: str) -> str:
    """The command as the user typed it, or ``slimkit.<api_name>(...)`` when called from Python."""
    import shlex
    import sys

    if Path(sys.argv[0]).name == "slimkit":
        return shlex.join(["slimkit", *sys.argv[1:]])
    return f"slimkit.{api_name}(...)"




# Files that say which command made a run folder: slimkit's own mark, written when a command
# claims the folder, and the files runs made before that mark existed.
_MARK = ".slimkit-run"
_RUN_MARKERS = (("search.json", "optimize"), ("distill.json", "distill"), ("tune.json", "tune"),
                ("train.json", "train"), ("settings.json", "train"), ("checkpoints", "train"))


def _command_in(path: Path) -> str | None:
    try:
        command = json.loads(path.read_text()).get("command")
    except (ValueError, OSError, AttributeError):
        return None
    return command if isinstance(command, str) else None


def run_kind(out: Path) -> str | None:
    """The slimkit command whose run ``out`` holds, if any.

    Example:
        >>> import tempfile
        >>> run_kind(Path(tempfile.mkdtemp())) is None
        True
    """
    for name in (_MARK, "recipe.json"):
        if (out / name).is_file() and (command := _command_in(out / name)):
            return command
    return next((command for name, command in _RUN_MARKERS if (out / name).exists()), None)


def claim_out(out: str | Path, command: str, *, lock: bool = True) -> Path:
    """``out`` as a Path, created and marked as ``command``'s run folder.

    Refused: an empty path (it meant the current folder), a folder holding another command's run
    (the two would mix: one report overwritten, the other's artifacts left beside it) and a folder
    with files slimkit did not write (artifact folders are replaced: a user's file there was
    deleted). The same command again replaces its own outputs. The folder is locked for this
    process (``lock``; False for the worker processes of a run whose launcher holds it).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "tune.json").write_text("{}")
        >>> claim_out(folder, "bench")
        Traceback (most recent call last):
        slimkit.errors.UsageError: ... holds a `slimkit tune` run; this bench run there would mix the two
          hint: choose another --out, or delete that folder first
    """
    if not isinstance(out, (str, Path)):
        raise UsageError(f"out must be a folder path, not {type(out).__name__}", hint="e.g. out='runs/" + command + "'")
    if not str(out).strip():
        raise UsageError("--out is empty", hint="give the run folder a name, e.g. --out runs/" + command)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder", hint="choose a folder path for --out")
    out.mkdir(parents=True, exist_ok=True)
    had_lock = (out / LOCK_NAME).exists()
    was_held = held(out)  # by a command around this one (the demo around its search): not ours to drop
    # Locked first: what another process is writing there right now is neither read nor touched.
    if lock:
        lock_run(out)
    try:
        owner = run_kind(out)
        if owner is not None and owner != command:
            raise UsageError(f"{out} holds a `slimkit {owner}` run; this {command} run there would mix the two",
                             hint="choose another --out, or delete that folder first")
        if owner is None and any(p.name != LOCK_NAME for p in out.iterdir()):
            raise UsageError(f"{out} already holds files that are not a slimkit run",
                             hint="choose a new or empty folder for --out (slimkit replaces what it writes there)")
    except UsageError:
        if not was_held:
            release(out)
        if not had_lock:
            (out / LOCK_NAME).unlink(missing_ok=True)  # no stray file left in a folder refused
        raise
    if not (out / _MARK).exists():
        atomic_write_json(out / _MARK, {"command": command})
    return out


def first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what creating it would add), or None.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> first_missing(root / "a" / "b") == root / "a", first_missing(root)
        (True, None)
    """
    if path.exists():
        return None
    missing = path
    for parent in path.absolute().parents:
        if parent.exists():
            break
        missing = parent
    return missing


# What a failed run leaves that is worth keeping: a report, or the state a --resume continues from
# (a search's settings and trials: its study may live in PostgreSQL, not in study.db).
_KEPT = ("report.json", "study.db", "search.json", "trials", "checkpoints")


def worth_keeping(out: Path) -> bool:
    """Whether a failed run in ``out`` left something of value (else the folder it made is removed).

    Example:
        >>> import tempfile
        >>> worth_keeping(Path(tempfile.mkdtemp()))
        False
    """
    return any((out / name).exists() for name in _KEPT)


def remove_made(out: Path, created: Path) -> None:
    """Remove the run folder ``out`` a failed run made, and the parent folders it made for it (from
    ``out`` up to ``created``) while they are empty: another run may have started inside one meanwhile
    (`runs/` made by this run, `runs/other` by another). Nothing is removed while another process
    holds ``out``'s lock.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "runs" / "mine").mkdir(parents=True); (root / "runs" / "theirs").mkdir()
        >>> remove_made(root / "runs" / "mine", root / "runs")
        >>> sorted(p.name for p in (root / "runs").iterdir())
        ['theirs']
    """
    try:
        if out.is_dir():
            lock_run(out)  # a no-op when this process holds it; refused while another one works there
    except FolderInUseError:
        return
    shutil.rmtree(out, ignore_errors=True)
    release(out)
    stop = created.absolute()
    for parent in out.absolute().parents:
        if not parent.is_relative_to(stop):
            break
        try:
            parent.rmdir()  # only while empty
        except OSError:
            break


def refusal_leaves_no_folder(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command's API function: a run refused for its input (exit code 2) removes the
    ``out`` folder it created (with the parent folders it created for it), as the CLI does; a folder
    that existed before, or one another process works in, is left as it was. The run folder's lock
    (:func:`claim_out`) is released when the command returns."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        out = bound.arguments.get("out")
        new = first_missing(Path(out)) if isinstance(out, (str, Path)) and str(out).strip() else None
        before = holding()
        try:
            return fn(*args, **kwargs)
        except FolderInUseError:
            raise
        except SlimkitError as err:
            if new is not None and (err.exit_code == 2 or not worth_keeping(Path(str(out)))):
                remove_made(Path(str(out)), new)
            raise
        finally:
            release_all(keep=before)

    return wrapper


def drop_stale_artifacts(report: Report, out: Path) -> None:
    """Remove folders under ``out/artifacts`` that no entry of ``report`` points to: what an earlier
    run of the same command left (other targets, another scheme) beside a report that no longer
    names it. Only folders slimkit wrote (holding its manifest, or empty) go: a user's folder stays."""
    from slimkit.targets.manifest import MANIFEST

    folder = out / "artifacts"
    if not folder.is_dir():
        return
    used = {Path(e.artifact).parts[1] for e in report.entries
            if e.artifact and len(Path(e.artifact).parts) > 2 and Path(e.artifact).parts[0] == "artifacts"}
    for child in folder.iterdir():
        if child.is_dir() and child.name not in used and ((child / MANIFEST).is_file() or not any(child.iterdir())):
            shutil.rmtree(child, ignore_errors=True)


# What ``slimkit optimize`` (and so the demo) writes at the top of its run folder: the demo starts
# afresh by removing these, and refuses a folder holding anything else (a user's file there was lost).
SEARCH_OUTPUTS = frozenset({_MARK, LOCK_NAME, ".best.tmp", "search.json", "study.db", "study.db-journal",
                            "study.db-wal", "study.db-shm", "baseline", "baseline.json", "references",
                            "references.json", "trials", "best", ".retime", "report.json", "report.md",
                            "report.html", "recipe.yaml"})


def clear_own(out: Path, own: frozenset[str]) -> None:
    """Remove the entries named in ``own`` at the top of ``out``; refuse, removing nothing, when
    ``out`` holds anything else (slimkit never deletes a file it did not write).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "mine.txt").write_text("keep me")
        >>> clear_own(folder, SEARCH_OUTPUTS)
        Traceback (most recent call last):
        slimkit.errors.UsageError: ... holds files slimkit did not write: mine.txt
          hint: move them elsewhere, or choose another --out
    """
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise UsageError(f"{out} holds files slimkit did not write: {', '.join(foreign[:3])}{more}",
                         hint="move them elsewhere, or choose another --out")
    for p in out.iterdir():
        if p.name == LOCK_NAME:
            continue  # held by this process
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path

