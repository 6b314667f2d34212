"""Whether the quantization a space or a point asks for is offered on its targets."""

from __future__ import annotations

from slimkit.errors import SlimkitError, UsageError
from slimkit.pipeline.recipe import Recipe
from slimkit.search.space import SearchSpace


def _check_space_runs_here(space: SearchSpace) -> None:
    """A space whose targets cannot run here, or a quantization scheme no target of it offers, is a
    usage error before any work (every such trial failed, and the search ended with no answer)."""
    from slimkit.pipeline import check_targets

    missing = [f"{name} ({why})" for name, why in check_targets(list(space.targets)) if why is not None]
    if missing:
        raise UsageError(f"search space: target(s) not available here: {'; '.join(missing)}",
                         hint="drop them from the space's targets (see `slimkit list`)")
    for scheme in (s for s in space.quant_scheme if s and s != "none"):
        why = _offered_nowhere(space.targets, scheme, None)
        if why:
            raise UsageError(f"search space: quant_scheme {scheme} runs on none of its targets: {why}",
                             hint="see `slimkit list` for the scheme x target matrix")
    for calibration in space.calibration if "int8-static" in space.quant_scheme else ():
        why = _offered_nowhere(space.targets, "int8-static", calibration)
        if why:
            raise UsageError(f"search space: calibration {calibration} is offered on none of its targets: {why}",
                             hint="see `slimkit list` for what each runtime offers")


def _offered_nowhere(targets: tuple[str, ...], scheme: str, calibration: str | None) -> str | None:
    """Why ``scheme`` (with ``calibration``) runs on none of ``targets``; None when one offers it."""
    from slimkit.techniques.quantize import check

    why = []
    for target in targets:
        try:
            check(scheme, target, calibration)
            return None
        except SlimkitError as err:
            why.append(err.message)
    return "; ".join(why)


def _not_offered(recipe: Recipe) -> str | None:
    """Why a point's quantization cannot run on its target (the space crosses every scheme with every
    target, e.g. int8-static with torch); the point is answered at once instead of after its pruning."""
    from slimkit.techniques.quantize import QuantizeConfig, check

    for step in recipe.steps:
        if isinstance(step, QuantizeConfig):
            try:
                check(step.scheme, recipe.target, step.calibration)
            except SlimkitError as err:
                return err.message
    return None
