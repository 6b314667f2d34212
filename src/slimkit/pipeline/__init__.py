"""The pipeline (the run layer): the one skeleton every command and every search trial goes through.

Claim the run folder, measure the baseline, apply a recipe's steps, deploy on each target,
measure, select (constraints, Pareto fronts, never slower than the unmodified model on its
target), write the report, the artifacts and the resolved ``recipe.yaml``.
"""

from slimkit.pipeline.checks import (
    as_names,
    check_budgets,
    check_seed,
    check_targets,
    check_threads,
    default_threads,
    target_names,
)
from slimkit.pipeline.folder import (
    Progress,
    claim_out,
    command_line,
    drop_stale_artifacts,
    fresh_dir,
    refusal_leaves_no_folder,
    run_kind,
)
from slimkit.pipeline.measure import measure_entry, measure_model
from slimkit.pipeline.recipe import Recipe, apply_steps
from slimkit.pipeline.runfile import RunRecipe, write_run_recipe
from slimkit.pipeline.select import finalize, meets_floor, pareto_ids
from slimkit.pipeline.skeleton import Naming, Run

__all__ = [
    "Naming",
    "Progress",
    "Recipe",
    "Run",
    "RunRecipe",
    "apply_steps",
    "as_names",
    "check_budgets",
    "check_seed",
    "check_targets",
    "check_threads",
    "claim_out",
    "command_line",
    "default_threads",
    "drop_stale_artifacts",
    "finalize",
    "fresh_dir",
    "meets_floor",
    "measure_entry",
    "measure_model",
    "pareto_ids",
    "refusal_leaves_no_folder",
    "run_kind",
    "target_names",
    "write_run_recipe",
]
