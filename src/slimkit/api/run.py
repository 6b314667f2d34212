"""``slimkit run``: re-run a recipe (a run's ``recipe.yaml``, a search's ``best/``) on a task."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from slimkit.core.task import Task
from slimkit.errors import UsageError
from slimkit.pipeline import (
    Progress,
    Recipe,
    check_budgets,
    check_targets,
    check_threads,
    refusal_leaves_no_folder,
    target_names,
)
from slimkit.pipeline.recipe import check_steps_on
from slimkit.pipeline.runfile import RunRecipe
from slimkit.pipeline.skeleton import Naming, Run
from slimkit.report.schema import Report


def _read(recipe: str | Path | RunRecipe | Recipe | Mapping[str, Any]) -> RunRecipe:
    if isinstance(recipe, RunRecipe):
        return recipe
    if isinstance(recipe, Recipe):
        return RunRecipe(Recipe(recipe.steps), (recipe.target,))
    if isinstance(recipe, Mapping):
        return RunRecipe.from_dict(recipe)
    if isinstance(recipe, (str, Path)):
        return RunRecipe.load(recipe)
    raise UsageError(f"a recipe is a file path, a mapping or a slimkit Recipe, not a {type(recipe).__name__}")


def _candidate_id(recipe: Recipe) -> Callable[[str], str]:
    kinds = "+".join(dict.fromkeys(step.TYPE for step in recipe.steps))
    return lambda target: f"{kinds}-{target}" if kinds else target


@refusal_leaves_no_folder
def run(
    recipe: str | Path | RunRecipe | Recipe | Mapping[str, Any],
    task: str | Task | None = None,
    *,
    out: str | Path = "runs/run",
    targets: Sequence[str] | None = None,
    max_drop: float | None = None,
    threads: int | None = None,
    quick: bool = False,
    seed: int | None = None,
    progress: Progress | None = None,
) -> Report:
    """Apply a recipe's steps to ``task``'s model, deploy the result on each target beside the
    unmodified model there, measure, and report, as the command that wrote the recipe did.

    ``task``, ``targets``, ``max_drop`` and ``seed`` default to the recipe's own. Re-running the
    best recipe of a search with its seed gives the metric the search measured.

    Example:
        >>> import tempfile
        >>> recipe = {"steps": [{"type": "fuse", "data": {}}], "targets": ["torch"], "max_drop": 1.0}
        >>> report = run(recipe, "digits-cnn", out=tempfile.mkdtemp(), quick=True)
        >>> [c.id for c in report.candidates]
        ['fuse-torch']
    """
    check_threads(threads)
    plan = _read(recipe)
    if plan.command == "distill":
        raise UsageError("a distill run's recipe trains a student of its own; `slimkit run` does not repeat it",
                         hint="run `slimkit distill` again with the arguments recorded in that recipe.yaml")
    task = task if task is not None else plan.task
    if task is None:
        raise UsageError("the recipe names no task", hint="give one: --task NAME or path/to/file.py:function")
    chosen = target_names(targets if targets is not None else list(plan.targets))
    available = [name for name, why_not in check_targets(chosen) if why_not is None]  # unknown names fail here
    check_steps_on(plan.recipe, available)
    max_drop = plan.max_drop if max_drop is None else max_drop
    check_budgets(max_drop=max_drop)
    runner = Run.open("run", task, out, threads=threads, quick=quick, seed=plan.seed if seed is None else seed,
                      progress=progress)
    runner.recipe(plan.recipe, chosen, naming=Naming(candidate=_candidate_id(plan.recipe)), max_drop=max_drop)
    return runner.finish(max_drop)
