"""The Task: what a user brings (model, data, metric, loss) in one object."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from slimkit.core.data import Batch, Inputs, primary_output
from slimkit.errors import ShapeError, SlimkitError, TaskError, first_line, resource_error, shown

RELATIVE_DROP = 0.01  # the default accuracy budget as a share of the baseline's metric
MetricFn = Callable[[torch.Tensor, torch.Tensor], float]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Metric:
    """A task metric where higher is better, computed over the whole evaluation set.

    ``fn(outputs, targets)`` receives every output and target of the evaluation set
    concatenated along the batch axis. ``extras`` are reported beside it (e.g. the
    minimum cosine similarity next to the mean).

    Example:
        >>> import torch
        >>> acc = Metric("accuracy", lambda o, t: (o.argmax(1) == t).float().mean().item())
        >>> acc.compute(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
        1.0
    """

    name: str
    fn: MetricFn
    extras: Mapping[str, MetricFn] = field(default_factory=dict)

    def compute(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return _one_number(self.name, _call_metric(self.name, self.fn, outputs, targets))

    def compute_extras(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {name: _one_number(name, _call_metric(name, fn, outputs, targets)) for name, fn in self.extras.items()}


def _call_metric(name: str, fn: MetricFn, outputs: torch.Tensor, targets: torch.Tensor) -> Any:
    try:
        return fn(outputs, targets)
    except SlimkitError:
        raise
    except Exception as exc:  # the user's metric function
        raise TaskError(f"metric '{name}' raised {type(exc).__name__}: {first_line(exc)} (on outputs of shape "
                        f"{list(outputs.shape)} and targets of shape {list(targets.shape)})",
                        hint="fix the metric function; it is called once with every output and target") from exc


def _one_number(name: str, value: Any) -> float:
    """A metric's value as a float; anything else (a per-item tensor) is the task's error, said so."""
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise TaskError(f"metric '{name}' returned a tensor of shape {list(value.shape)}, not one number",
                        hint="reduce it over the evaluation set, e.g. (o.argmax(1) == t).float().mean().item()")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TaskError(f"metric '{name}' returned {type(value).__name__}, not a number",
                        hint="return a float from the metric function") from None


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy in percent.

    Example:
        >>> import torch
        >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        50.0
    """
    return float((outputs.argmax(dim=1) == targets).float().mean().item() * 100.0)


@dataclass
class Task:
    """A model with its data, metric and loss.

    ``model`` is a module or a zero-argument factory returning one (e.g. one that trains
    or loads a baseline); :meth:`build_model` always returns a fresh copy so techniques
    never change the baseline. Inputs are named after the model's forward arguments.
    Every field but ``name`` and ``model`` has a default: ``calibration_data`` is the
    training data, ``eval_data`` the calibration data, ``example_inputs`` the first item of
    the evaluation data, the metric accuracy and the loss cross-entropy (a classifier's).
    For a model and data that are not yet slimkit Batches, :func:`slimkit.quantize` and
    the other one-call functions build the Task themselves.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from slimkit.core.data import Batches
        >>> x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
        >>> data = Batches({"input": x}, y, batch_size=8)
        >>> task = Task("toy", nn.Linear(4, 2), train_data=data)
        >>> task.build_model()(**task.example_inputs).shape, task.metric.name
        (torch.Size([1, 2]), 'accuracy')
    """

    name: str
    model: nn.Module | Callable[[], nn.Module]
    example_inputs: Inputs = field(default_factory=dict)
    train_data: Iterable[Batch] = ()
    calibration_data: Iterable[Batch] = ()
    eval_data: Iterable[Batch] = ()
    metric: Metric = field(default_factory=lambda: Metric("accuracy", accuracy))
    loss: LossFn = F.cross_entropy
    description: str = ""
    throughput_batch: int = 8
    # A metric drop this small (in the metric's units) still counts as "no loss": the default
    # accuracy budget of commands that take --max-drop. None: 1% of the baseline's value, so the
    # budget fits the metric's scale (a 0-1 cosine and a 0-100 accuracy alike).
    tolerance: float | None = None
    # An untrained model of the same architecture, for training from scratch (e.g. tuning
    # hyperparameters); None means training starts from the task's model.
    fresh_model: Callable[[], nn.Module] | None = None
    # More inputs for distillation, beyond the labelled training set (targets are the
    # original model's outputs): a student learns the teacher's function from any input it
    # sees, so a large transfer set recovers a pruned model better than a small training set.
    # A zero-argument factory is called once, on first use (building the set can be slow).
    transfer_data: Iterable[Batch] | Callable[[], Iterable[Batch]] | None = None
    # How raw data becomes the model's inputs (plain JSON: image transform, tokenizer settings),
    # recorded in every artifact's manifest, and a writer of the files that needs (a tokenizer's)
    # into a folder, so an artifact folder alone serves raw text or images.
    preprocess: Mapping[str, Any] | None = None
    write_assets: Callable[[Path], None] | None = None
    # The command-line options (--model, --data, ...) that build this task again: recorded in the
    # run's recipe.yaml, so `slimkit run` repeats a run made on a user's model.
    source: Mapping[str, Any] | None = None
    _cached: nn.Module | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module) and not callable(self.model):
            raise TaskError(f"task '{self.name}': model is {type(self.model).__name__} ({shown(self.model)}), "
                            "not an nn.Module", hint="give a torch.nn.Module, or a function returning one")
        # The empty tuple is the "not given" default (never compared with ==: a data set may be an array).
        if _unset(self.calibration_data):
            self.calibration_data = self.train_data
        if _unset(self.eval_data):
            self.eval_data = self.calibration_data
        if isinstance(self.example_inputs, Mapping) and not self.example_inputs:
            first = next(iter(self.eval_data), None)
            if first is None:
                raise TaskError(f"task '{self.name}' has no data to take example inputs from",
                                hint="give eval_data (or train_data), or example_inputs")
            self.example_inputs = {k: v[:1].clone() for k, v in first[0].items()}
        if not isinstance(self.example_inputs, Mapping):
            raise TaskError(
                f"task '{self.name}': example_inputs must be a dict of forward-argument names to tensors",
                hint="use slimkit.as_inputs(model, tensor_or_tuple) to name positional inputs",
            )

    def build_model(self) -> nn.Module:
        """A fresh copy of the task's model in eval mode."""
        if self._cached is None:
            model = self.model if isinstance(self.model, nn.Module) else self.model()
            if not isinstance(model, nn.Module):
                raise TaskError(
                    f"task '{self.name}': the model factory returned {type(model).__name__}, not an nn.Module",
                    hint="return a torch.nn.Module from the factory",
                )
            self._cached = model
        return copy.deepcopy(self._cached).eval()

    def default_drop(self, baseline_metric: float) -> float:
        """The accuracy budget when none is given: the task's ``tolerance``, else 1% of the baseline.

        Example:
            >>> import dataclasses, torch
            >>> t = Task("t", torch.nn.Linear(1, 1), {"input": torch.zeros(1, 1)}, [], [], [],
            ...          Metric("cosine", lambda o, t: 1.0), torch.nn.functional.mse_loss)
            >>> t.default_drop(0.98), dataclasses.replace(t, tolerance=0.5).default_drop(0.98)
            (0.0098, 0.5)
        """
        if self.tolerance is not None:
            return self.tolerance
        return RELATIVE_DROP * abs(baseline_metric)

    def transfer(self) -> Iterable[Batch]:
        """The distillation transfer set: ``transfer_data`` (built on first use), else the training data."""
        if callable(self.transfer_data) and not isinstance(self.transfer_data, Iterable):
            self.transfer_data = self.transfer_data()
        return self.transfer_data if self.transfer_data is not None else self.train_data

    @property
    def input_names(self) -> list[str]:
        return list(self.example_inputs)


def _unset(data: object) -> bool:
    return isinstance(data, tuple) and not data


def as_inputs(model: nn.Module, inputs: object) -> Inputs:
    """Name positional inputs after ``model.forward``'s arguments.

    Example:
        >>> import torch
        >>> as_inputs(torch.nn.Linear(2, 2), torch.zeros(1, 2)).keys()
        dict_keys(['input'])
    """
    if isinstance(inputs, Mapping):
        return dict(inputs)
    values = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)  # type: ignore[arg-type]
    params = [
        p.name
        for p in inspect.signature(model.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(values) > len(params):
        raise TaskError(f"model.forward takes {len(params)} inputs but {len(values)} were given")
    return dict(zip(params, values, strict=False))


def run_model(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """Call a torch model on named inputs; a shape mismatch becomes a ShapeError."""
    return primary_output(call_model(model, inputs))


def call_model(model: nn.Module, inputs: Inputs) -> Any:
    """``model(**inputs)``, its whole output; a forward() that does not take the inputs by name
    becomes a TaskError naming this model, a shape mismatch a ShapeError."""
    try:
        return model(**inputs)
    except TypeError as exc:
        # Models are called with the task's named inputs (as the exporters do): a forward() without
        # those parameter names (nn.Sequential's is forward(input)) cannot be run, say how to fix it.
        text = str(exc)
        if "forward()" not in text or not ("unexpected keyword argument" in text or "required positional" in text):
            raise _forward_failed(model, exc) from exc  # a TypeError inside the user's forward
        names = ", ".join(inputs)
        raise TaskError(f"{type(model).__name__}.forward() does not take the task's input(s) by name ({names}): "
                        f"{str(exc).splitlines()[0]}",
                        hint=f"give the model a forward({names}) (wrap nn.Sequential in a module whose "
                             f"forward takes {names})") from None
    except RuntimeError as exc:
        text = str(exc)
        if (resource := resource_error(exc)) is not None:  # before the shape words: an OOM says "size"
            raise resource from exc
        if any(k in text for k in ("shape", "size", "dimension", "Expected")):
            got = {k: list(v.shape) for k, v in inputs.items()}
            raise ShapeError(
                f"the model rejected inputs of shape {got}: {text.splitlines()[0]}",
                hint="the model and the task's inputs disagree: fix the model's layer sizes or the task's "
                     "example_inputs/data so they match",
            ) from exc
        raise _forward_failed(model, exc) from exc
    except SlimkitError:
        raise
    except Exception as exc:  # the user's forward(): anything can come out of it
        raise _forward_failed(model, exc) from exc


def _forward_failed(model: nn.Module, exc: Exception) -> SlimkitError:
    """The user's forward() raised: said in one line (the chained traceback stays for the Python API)."""
    if (resource := resource_error(exc)) is not None:
        return resource
    return TaskError(f"{type(model).__name__}.forward() raised {type(exc).__name__}: {first_line(exc)}",
                     hint="the model fails on the task's own inputs: call it once on them by hand to debug it")
