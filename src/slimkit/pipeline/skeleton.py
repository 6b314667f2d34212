"""The run skeleton every measuring command goes through: claim the folder, measure the baseline,
apply a recipe's steps, deploy on each target, measure, select, write report, artifacts and recipe."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.core.task import Task
from slimkit.core.technique import StepState
from slimkit.measure.env import environment
from slimkit.measure.memory import PeakMemory
from slimkit.pipeline.checks import check_seed, check_targets, default_threads
from slimkit.pipeline.describe import describe_all, entry_artifact
from slimkit.pipeline.folder import Progress, claim_out, command_line, drop_stale_artifacts, fresh_dir
from slimkit.pipeline.measure import measure_entry, measure_model
from slimkit.pipeline.paired import pair_speedups
from slimkit.pipeline.recipe import Recipe, apply_steps
from slimkit.pipeline.runfile import write_run_recipe
from slimkit.pipeline.select import finalize
from slimkit.report import write_report
from slimkit.report.schema import Entry, Report
from slimkit.targets import Deployed
from slimkit.tasks import load_task
from slimkit.tasks._loader import task_key


@dataclass(frozen=True)
class Naming:
    """Entry ids of a recipe run: the unmodified model on a target (the candidate's reference) and
    the candidate. Commands keep the ids their reports always had (``openvino-fp32``,
    ``pruned-onnxruntime``); a plain ``slimkit run`` uses the defaults."""

    reference: Callable[[str], str] = lambda target: f"unmodified-{target}"
    candidate: Callable[[str], str] = lambda target: target
    # How the progress lines call the two models ("the float model", "the pruned model").
    reference_noun: str = "the unmodified model"
    candidate_noun: str = "the modified model"


# After the model-changing steps: the command may store the model its own way and hand back the model
# to measure, and for torch eager the deployed artifact to measure (pruning's sparse storage).
AfterSteps = Callable[[nn.Module, StepState], tuple[nn.Module, Deployed | None]]


@dataclass
class Run:
    """One command's run in its folder: the task, the baseline, the candidates, then the report.

    Example:
        >>> import tempfile
        >>> run = Run.open("bench", "digits-cnn", tempfile.mkdtemp(), quick=True)
        >>> report = run.recipe(Recipe(), ["torch"])
        >>> run.finish(max_drop=1.0).baseline.id
        'baseline'
    """

    command: str
    task: Task
    out: Path
    threads: int
    quick: bool = False
    seed: int = 0
    say: Progress = lambda _m: None
    report: Report | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry id -> its steps' full results
    task_spec: str = ""  # the task as a recipe records it: a built-in name, or a task file by absolute path
    api_name: str = ""  # the Python function of the command, for the report's command line

    @classmethod
    def open(cls, command: str, task: str | Task, out: str | Path, *, threads: int | None = None,
             quick: bool = False, seed: int = 0, progress: Progress | None = None, api_name: str = "") -> Run:
        """Claim ``out`` for ``command`` and load the task (its baseline model is trained or cached)."""
        check_seed(seed)
        out_dir = claim_out(out, command)
        task_obj = load_task(task, seed=seed)
        if progress is not None and task_obj.description:
            # A task made from the user's model says what it read and chose (the metric, labels unused).
            progress(f"task {task_obj.name}: {task_obj.description} (metric: {task_obj.metric.name})")
        return cls(command, task_obj, out_dir, threads or default_threads(), quick, seed,
                   progress or (lambda _m: None), task_spec=task_key(task) if isinstance(task, str) else task_obj.name,
                   api_name=api_name or command)

    def folder(self, name: str) -> Path:
        """A fresh artifact folder ``out/artifacts/<name>`` (an earlier run's is replaced)."""
        return self.fresh(f"artifacts/{name}")

    def fresh(self, relative: str) -> Path:
        """A fresh folder under the run folder (an earlier run's is replaced)."""
        return fresh_dir(self.out / relative)

    def measure_baseline(self, model: nn.Module, folder: str = "torch") -> Entry:
        """The unmodified model on torch eager: every speed-up in the report is against it."""
        self.say(f"measuring the baseline (torch eager, {self.threads} threads)")
        baseline = measure_model(model, self.task, "torch", self.folder(folder), self.threads, entry_id="baseline",
                                 recipe=[], quick=self.quick, out=self.out)
        self.report = Report(self.task.name, command_line(self.api_name or self.command), environment(self.threads),
                             baseline)
        return baseline

    def add(self, entry: Entry) -> Entry:
        assert self.report is not None, "measure the baseline first"
        self.report.candidates.append(entry)
        return entry

    def measure(self, model: nn.Module, target: str, entry_id: str, recipe: list[dict[str, Any]],
                task: Task | None = None) -> Entry:
        """Deploy ``model`` on ``target`` in the folder named after the entry and measure it (on the
        run's task, or on ``task``: a distilled student may read inputs of its own)."""
        return self.add(measure_model(model, task or self.task, target, self.folder(entry_id), self.threads,
                                      entry_id=entry_id, recipe=recipe, quick=self.quick, out=self.out))

    def measure_deployed(self, deployed: Deployed, model: nn.Module, entry_id: str, recipe: list[dict[str, Any]],
                         load_memory: int = 0) -> Entry:
        return self.add(measure_entry(deployed, self.task, model, entry_id=entry_id, recipe=recipe, quick=self.quick,
                                      out=self.out, load_memory=load_memory))

    def recipe(self, recipe: Recipe, targets: Sequence[str], *, naming: Naming = Naming(),
               model: nn.Module | None = None, max_drop: float | None = None,
               after_steps: AfterSteps | None = None) -> Report:
        """Baseline, then ``recipe``'s steps on each target, each beside the unmodified model there.

        The model-changing steps (fuse, prune, distill) run once and are shared by every target;
        a deploying step (quantize) runs per target. A target that cannot run here is skipped
        and listed. Recovery may stop once the metric is back within ``max_drop`` (default: the
        task's budget) of the baseline's: the floor a search trial recovers to, so a re-run matches.
        """
        base = model if model is not None else self.task.build_model()
        baseline = self.measure_baseline(base)
        assert self.report is not None
        drop = self.max_drop(max_drop)
        self.steps = recipe.to_dict()["steps"]
        self.targets = list(targets)
        prefix, rest = recipe.split()
        modified, torch_deployed, info = base, None, {}
        if prefix.steps:
            # The teacher of distillation-based recovery is a copy, made when a step asks: a step may
            # put it in eval mode or freeze it, and ``base`` is still to be measured on every target.
            state = StepState(self.task, copy.deepcopy(base), "torch", self.out, self.threads,
                              make_teacher=lambda: copy.deepcopy(base), progress=self.say)
            state.info["metric_floor"] = baseline.measurement.metric - drop
            state = apply_steps(state, prefix)
            modified, torch_deployed = after_steps(state.model, state) if after_steps else (state.model, None)
            info = {k: v for k, v in state.info.items() if k != "metric_floor"}
        for target, why_not in check_targets(targets):
            if why_not is not None:
                self.say(f"skipping {target}: {why_not}")
                self.report.skipped.append({"target": target, "reason": why_not})
                continue
            if not recipe.steps:
                if target != "torch":
                    self.say(f"exporting and measuring on {target}")
                    self.measure(base, target, naming.candidate(target), [])
                continue
            self._candidate(base, modified, target, rest, baseline, naming, torch_deployed, info,
                            unchanged=modified is base)
        return self.report

    def _candidate(self, base: nn.Module, modified: nn.Module, target: str, rest: Recipe, baseline: Entry,
                   naming: Naming, torch_deployed: Deployed | None, info: dict[str, Any], *,
                   unchanged: bool) -> Entry:
        """The model after the recipe's steps on ``target``, beside the unmodified model there.
        ``unchanged``: no step changed the torch model, so a deploying step may reuse the
        reference's export and compare against its metric."""
        reference = baseline
        if target != "torch":
            # The unmodified model on the same runtime: without it the runtime's own speed-up over
            # torch eager reads as the technique's.
            self.say(f"exporting and measuring {naming.reference_noun} on {target}")
            reference = self.measure(base, target, naming.reference(target), [])
        entry_id = naming.candidate(target)
        if rest.steps:
            state = StepState(self.task, copy.deepcopy(modified), target, self.folder(entry_id), self.threads,
                              make_teacher=lambda: copy.deepcopy(base), progress=self.say, info=copy.deepcopy(info),
                              float_artifact=entry_artifact(reference, self.out) if unchanged else None,
                              reference_metric=reference.measurement.metric if unchanged else None)
            with PeakMemory() as mem:
                state = apply_steps(state, rest)
            self.say(f"measuring {naming.candidate_noun} on {target}")
            if state.deployed is None:
                entry = self.measure(state.model, target, entry_id, self.steps)
            else:
                entry = self.measure_deployed(state.deployed, state.model, entry_id, self.steps, mem.peak_increase)
            info = state.info
            self.results[entry_id] = state.results
        elif target == "torch" and torch_deployed is not None:
            self.say(f"measuring {naming.candidate_noun} on torch eager")
            torch.set_num_threads(self.threads)
            entry = self.measure_deployed(torch_deployed, modified, entry_id, self.steps)
        else:
            self.say(f"exporting and measuring {naming.candidate_noun} on {target}")
            entry = self.measure(modified, target, entry_id, self.steps)
        entry.float_reference = reference.id
        note_steps(entry, info)
        return entry

    def max_drop(self, given: float | None) -> float:
        """The accuracy budget: ``given``, else the task's default for the measured baseline."""
        assert self.report is not None, "measure the baseline first"
        return given if given is not None else self.task.default_drop(self.report.baseline.measurement.metric)

    def finish(self, max_drop: float | None = None, *, latency_budget: float | None = None,
               size_budget: int | None = None, record: dict[str, Any] | None = None,
               objective: str = "latency") -> Report:
        """Select the best (for ``objective``: see :func:`finalize`), then write the resolved
        ``recipe.yaml``, the report, and drop artifact folders an earlier run left that this report
        no longer names."""
        assert self.report is not None, "measure the baseline first"
        max_drop = self.max_drop(max_drop)
        finalize(self.report, max_drop, latency_budget, size_budget, objective)
        source = {"source": dict(self.task.source)} if self.task.source else {}
        write_run_recipe(self.out / "recipe.yaml", command=self.command, task=self.task_spec, steps=self.steps,
                         targets=self.targets, max_drop=max_drop, seed=self.seed, threads=self.threads,
                         extra={**(record or {}), **source})
        drop_stale_artifacts(self.report, self.out)
        describe_all(self.report.entries, self.out, self.task)
        pair_speedups(self.report, self.task, self.out, self.threads, quick=self.quick, say=self.say)
        write_report(self.report, self.out)
        return self.report


def note_steps(entry: Entry, info: dict[str, Any]) -> None:
    """What a step says about itself (a pruning fallback, layers kept in float) goes beside the
    entry in every report, not only in its details."""
    steps_info = {k: v for k, v in info.items() if k != "metric_floor"}
    if not steps_info:
        return
    entry.measurement.details["steps"] = steps_info
    for step in steps_info.values():
        if not isinstance(step, dict):
            continue
        for note in ([step["note"]] if step.get("note") else []) + list(step.get("notes", [])):
            if note not in entry.notes:
                entry.notes.append(note)
