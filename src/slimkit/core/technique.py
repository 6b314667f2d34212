"""The technique protocol: a config dataclass, an apply function and the search dimensions it offers.

A technique package builds one :class:`Technique` and registers it (``slimkit.plugins`` for the
built-in ones, the ``slimkit.techniques`` entry-point group for anyone else's). The core only
defines the shapes here; it never imports a technique.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.config import StepConfig
from slimkit.core.task import Task


@dataclass
class StepState:
    """What a technique's apply function reads and returns: the model so far, and once a step
    deployed it (quantization writes the target's artifact), the loaded artifact."""

    task: Task
    model: nn.Module
    target: str
    workdir: Path
    threads: int
    teacher: nn.Module | None = None  # the unmodified model, for distillation-based recovery
    # Builds the teacher when a step first asks for it (default: the task's model); a run on a user's
    # own model hands a copy of that model instead.
    make_teacher: Callable[[], nn.Module] | None = None
    deployed: Any = None  # a slimkit.targets.Deployed once a step produced the target artifact
    info: dict[str, Any] = field(default_factory=dict)  # per-step facts for the report (JSON)
    results: dict[str, Any] = field(default_factory=dict)  # each step's full result, for the command only
    progress: Callable[[str], None] | None = None  # where long steps (pruning recovery) report
    # Called after each pruning-recovery epoch with (epoch, validation metric, MACs left as a
    # fraction); may raise to stop the recipe (the search's early-stopping pruner).
    on_validation: Callable[[int, float, float], None] | None = None
    # The unmodified model already deployed on this target and its metric there, when a run measured
    # it first: a deploying step (quantize) reuses the export and compares against that metric.
    float_artifact: Path | None = None
    reference_metric: float | None = None
    # The teacher's own task when its inputs differ from the model's (distilling into a student of
    # another architecture: the same items, shaped for each).
    teacher_task: Task | None = None
    history: bool = False  # training steps evaluate after each epoch (a command's per-epoch record)

    def unmodified(self) -> nn.Module:
        """The task's model before any step (built once): the teacher of distillation-based recovery."""
        if self.teacher is None:
            self.teacher = self.make_teacher() if self.make_teacher else self.task.build_model()
        return self.teacher


Apply = Callable[[StepState, Any], StepState]
# The search's choices of one trial (dimension name -> value, plus "target") and the space's fixed
# settings -> the steps this technique adds to the trial's recipe (none when the choices leave it out).
StepsFor = Callable[[Mapping[str, Any], Mapping[str, Any]], list[StepConfig]]


@dataclass(frozen=True)
class Dimension:
    """One search dimension a technique offers: a key of the search space and what it means.

    Example:
        >>> Dimension("fuse", "fold BatchNorm into convolutions", (False, True)).default
        (False, True)
    """

    name: str
    help: str
    default: tuple[Any, ...] = ()  # the choices a default search draws ((): the dimension is left out)


@dataclass(frozen=True)
class Technique:
    """A model transformation slimkit can chain in a recipe and draw in a search.

    ``changes_model``: the step turns a torch model into a torch model (fuse, prune, distill), so a
    search may reuse its result across trials; False for steps that deploy (quantize), which set
    ``StepState.deployed``. ``order`` places its steps in a drawn recipe (lower first).
    ``settings`` are space keys read by ``steps`` that are fixed for the whole search (e.g. the
    number of recovery epochs), with their defaults.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class Noop(StepConfig):
        ...     level: int = 1
        >>> Noop.TYPE = "noop"
        >>> t = Technique("noop", Noop, lambda state, cfg: state, "does nothing",
        ...               dimensions=(Dimension("noop", "on or off", (False, True)),
        ...                           Dimension("noop_level", "how much")))
        >>> t.steps_for({"noop": True, "noop_level": 3}, {}), t.steps_for({"noop": False}, {})
        ([Noop(level=3)], [])
    """

    name: str
    config: type[StepConfig]
    apply: Apply
    description: str
    dimensions: tuple[Dimension, ...] = ()
    steps: StepsFor | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    order: int = 50
    changes_model: bool = True
    requires: tuple[str, ...] = ()  # importable modules it needs (optional backends)
    # A deploying step's config as it will run on one target, checked (raises UsageError): a recipe
    # run checks every target before any work instead of failing after the baseline.
    for_target: Callable[[Any, str], StepConfig] | None = None

    def steps_for(self, params: Mapping[str, Any], settings: Mapping[str, Any]) -> list[StepConfig]:
        """The steps a search trial with ``params`` adds. By default: one step when any of this
        technique's dimensions was drawn (and its on/off dimension, named like the technique, is on),
        whose config fields are the drawn values of the dimensions named ``<technique>_<field>``."""
        if self.steps is not None:
            return self.steps(params, settings)
        drawn = [d.name for d in self.dimensions if d.name in params]
        if not drawn or (self.name in drawn and not params[self.name]):
            return []
        return [self.config(**{name.removeprefix(self.name + "_"): params[name] for name in drawn
                               if name != self.name})]
