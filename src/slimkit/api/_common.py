"""Shared by every measuring command: deploy on targets, measure, mark Pareto/constraints/best."""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.core.files import atomic_write_json
from slimkit.core.task import Task
from slimkit.errors import SlimkitError, UsageError
from slimkit.measure.flops import count_macs, count_params
from slimkit.measure.measure import measure_deployed
from slimkit.measure.memory import PeakMemory
from slimkit.report.schema import Entry, Report
from slimkit.targets import Deployed, get_target

Progress = Callable[[str], None]


def command_line(api_name: str) -> str:
    """The command as the user typed it, or ``slimkit.<api_name>(...)`` when called from Python."""
    import shlex
    import sys

    if Path(sys.argv[0]).name == "slimkit":
        return shlex.join(["slimkit", *sys.argv[1:]])
    return f"slimkit.{api_name}(...)"


def default_threads() -> int:
    """Cores this process may use (the one thread setting applied to every target)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_targets(names: Sequence[str]) -> list[tuple[str, str | None]]:
    """Each target name with None when available, else the reason it is not (unknown names raise)."""
    result = []
    for name in names:
        avail = get_target(name).availability()
        result.append((name, None if avail.ok else avail.reason))
    return result


def measure_model(
    model: nn.Module, task: Task, target: str, workdir: Path, threads: int, *,
    entry_id: str, recipe: list[dict[str, Any]], quick: bool = False, out: Path | None = None,
) -> Entry:
    """Deploy a torch ``model`` on ``target`` under ``workdir``, run every measurement, return an Entry."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    with PeakMemory() as load_mem:
        deployed = get_target(target).deploy(model, task.example_inputs, workdir, threads)
    return measure_entry(deployed, task, model, entry_id=entry_id, recipe=recipe, quick=quick, out=out,
                         load_memory=load_mem.peak_increase)


def measure_entry(
    deployed: Deployed, task: Task, model: nn.Module, *, entry_id: str, recipe: list[dict[str, Any]],
    quick: bool = False, out: Path | None = None, load_memory: int = 0,
) -> Entry:
    """Measure an already deployed artifact (e.g. a quantized IR); ``model`` is the torch model it
    came from, used for parameter and MAC counts (quantization does not change them)."""
    measurement = measure_deployed(deployed, task, quick=quick, load_memory=load_memory)
    artifact = None
    if deployed.artifact is not None:
        artifact = str(deployed.artifact.relative_to(out) if out and deployed.artifact.is_relative_to(out)
                       else deployed.artifact)
    return Entry(entry_id, recipe, deployed.target, measurement, count_params(model),
                 count_macs(model, task.example_inputs), artifact)


def pareto_ids(entries: Sequence[Entry], cost: Callable[[Entry], float]) -> list[str]:
    """Ids on the front of metric (higher is better) against ``cost`` (lower is better)."""

    def dominates(o: Entry, e: Entry) -> bool:
        mo, me = o.measurement.metric, e.measurement.metric
        return mo >= me and cost(o) <= cost(e) and (mo > me or cost(o) < cost(e))

    return [e.id for e in entries if not any(o is not e and dominates(o, e) for o in entries)]


def finalize(report: Report, max_drop: float, latency_budget: float | None = None,
             size_budget: int | None = None) -> Report:
    """Mark constraints and the metric-vs-latency Pareto front; pick the best candidate.

    The best is the fastest candidate that meets every constraint and is faster than the
    baseline: never a model slower than the unmodified one.
    """
    base = report.baseline
    floor = base.measurement.metric - max_drop
    report.constraints = {"max_drop": max_drop, "metric_floor": floor,
                          "latency_budget_ms": latency_budget, "size_budget_bytes": size_budget}
    for e in report.entries:
        m = e.measurement
        ok = meets_floor(m.metric, floor)
        if latency_budget is not None:
            ok = ok and m.latency.median <= latency_budget
        if size_budget is not None:
            ok = ok and m.size_bytes <= size_budget
        e.meets_constraints = ok
    front = set(pareto_ids(report.entries, lambda e: e.latency_ms))
    for e in report.entries:
        e.pareto = e.id in front
    by_id = {e.id: e for e in report.entries}
    eligible = []
    for c in report.candidates:
        slower_than = [base]
        ref = by_id.get(c.float_reference) if c.float_reference else None
        if ref is not None and ref is not c:
            slower_than.append(ref)
        too_slow = [r for r in slower_than if c.latency_ms >= r.latency_ms]
        for r in too_slow:
            what = "the baseline" if r is base else f"the unmodified model on {r.target} ({r.id})"
            digits = next((d for d in (3, 4, 5, 6) if f"{c.latency_ms:.{d}f}" != f"{r.latency_ms:.{d}f}"), 6)
            note = (f"{'slower than' if c.latency_ms > r.latency_ms else 'no faster than'} {what} "
                    f"({c.latency_ms:.{digits}f} ms vs {r.latency_ms:.{digits}f} ms): never reported as best")
            if note not in c.notes:
                c.notes.append(note)
        if c.meets_constraints and not too_slow:
            eligible.append(c)
    report.best = min(eligible, key=lambda c: c.latency_ms).id if eligible else None
    if report.best:
        best = by_id[report.best]
        ref = by_id.get(best.float_reference) if best.float_reference else None
        for r in [x for x in (base, ref) if x is not None and x is not best]:
            # Picked on the medians; where the 95% intervals overlap the gain may be noise (a model
            # identical to the baseline was "best" at 1.01x): say so instead of implying a speed-up.
            if best.measurement.latency.ci95[1] >= r.measurement.latency.ci95[0]:
                note = (f"within timing noise of {r.id}: the 95% intervals of the medians overlap "
                        f"({_ci(best)} vs {_ci(r)})")
                if note not in best.notes:
                    best.notes.append(note)
    return report


def _ci(e: Entry) -> str:
    low, high = e.measurement.latency.ci95
    return f"{low:.3f}-{high:.3f} ms"


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


def claim_out(out: str | Path, command: str) -> Path:
    """``out`` as a Path, created and marked as ``command``'s run folder.

    Refused: an empty path (it meant the current folder), a folder holding another command's run
    (the two would mix: one report overwritten, the other's artifacts left beside it) and a folder
    with files slimkit did not write (artifact folders are replaced: a user's file there was
    deleted). The same command again replaces its own outputs.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "tune.json").write_text("{}")
        >>> claim_out(folder, "bench")
        Traceback (most recent call last):
        slimkit.errors.UsageError: ... holds a `slimkit tune` run; this bench run there would mix the two
          hint: choose another --out, or delete that folder first
    """
    if not str(out).strip():
        raise UsageError("--out is empty", hint="give the run folder a name, e.g. --out runs/" + command)
    out = Path(out)
    if out.is_dir():
        owner = run_kind(out)
        if owner is not None and owner != command:
            raise UsageError(f"{out} holds a `slimkit {owner}` run; this {command} run there would mix the two",
                             hint="choose another --out, or delete that folder first")
        if owner is None and any(out.iterdir()):
            raise UsageError(f"{out} already holds files that are not a slimkit run",
                             hint="choose a new or empty folder for --out (slimkit replaces what it writes there)")
    elif out.exists():
        raise UsageError(f"--out {out} is a file, not a folder", hint="choose a folder path for --out")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / _MARK).exists():
        atomic_write_json(out / _MARK, {"command": command})
    return out


def refusal_leaves_no_folder(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command's API function: a run refused for its input (exit code 2) removes the
    ``out`` folder it created, as the CLI does; a folder that existed before is left as it was."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        out = bound.arguments.get("out")
        new = Path(out) if isinstance(out, (str, Path)) and str(out).strip() and not Path(out).exists() else None
        try:
            return fn(*args, **kwargs)
        except SlimkitError as err:
            if new is not None and err.exit_code == 2:
                shutil.rmtree(new, ignore_errors=True)
            raise

    return wrapper


def drop_stale_artifacts(report: Report, out: Path) -> None:
    """Remove folders under ``out/artifacts`` that no entry of ``report`` points to: what an earlier
    run of the same command left (other targets, another scheme) beside a report that no longer
    names it."""
    folder = out / "artifacts"
    if not folder.is_dir():
        return
    used = {Path(e.artifact).parts[1] for e in report.entries
            if e.artifact and len(Path(e.artifact).parts) > 2 and Path(e.artifact).parts[0] == "artifacts"}
    for child in folder.iterdir():
        if child.is_dir() and child.name not in used:
            shutil.rmtree(child, ignore_errors=True)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def check_budgets(**budgets: float | None) -> None:
    """Budgets are numbers; a drop may be 0, every other budget must leave room for a model.

    Example:
        >>> check_budgets(max_drop=0.0, time_budget=None)
        >>> check_budgets(latency_budget=0.0)
        Traceback (most recent call last):
        slimkit.errors.UsageError: --latency-budget must be a number > 0, got 0.0
          hint: leave it out for no budget
    """
    for name, value in budgets.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UsageError(f"{flag} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and name != "max_drop"):
            bound = ">= 0" if name == "max_drop" else "> 0"
            raise UsageError(f"{flag} must be a number {bound}, got {value}",
                             hint="leave it out for no budget" if name != "max_drop" else
                             "it is the metric points (or fraction) the model may lose")


def meets_floor(metric: float, floor: float) -> bool:
    """``metric >= floor`` up to the rounding of metrics computed in float32: 341/360 correct is
    94.722223 there, against a floor of 94.722224 from a drop of exactly 5 points.

    Example:
        >>> meets_floor(94.722223, 94.722224), meets_floor(94.70, 94.72)
        (True, False)
    """
    return metric >= floor - 1e-6 * max(1.0, abs(floor))


def as_names(value: object, what: str) -> list[str]:
    """A list of names from a list/tuple of strings, or from one string (one name, never its letters).

    Example:
        >>> as_names("onnxruntime", "targets"), as_names(("torch", "openvino"), "targets")
        (['onnxruntime'], ['torch', 'openvino'])
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UsageError(f"{what} must be a list of names, got {value!r}", hint=f'e.g. {what}=["onnxruntime"]')


def target_names(value: object) -> list[str]:
    """The targets asked for, as :func:`as_names` reads them, each once (a repeated one gave two rows
    with one id and one artifact folder); none at all is a usage error.

    Example:
        >>> target_names(["openvino", "onnxruntime", "openvino"])
        ['openvino', 'onnxruntime']
    """
    names = list(dict.fromkeys(as_names(value, "targets")))
    if not names:
        raise UsageError("no targets given", hint="e.g. --targets onnxruntime,openvino, or targets=['onnxruntime'] "
                         "in Python (see `slimkit list`)")
    return names


def check_threads(threads: object) -> None:
    """None (all cores this process may use) or a whole number >= 1."""
    if threads is None:
        return
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise UsageError(f"threads must be a whole number >= 1, got {threads!r}")
