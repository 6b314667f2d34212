"""A rich progress bar for training: live loss and metric, ETA over the whole run."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """Steps of every epoch on one bar; ``update`` shows the running loss and last metric."""

    def __init__(self, total_steps: int, done: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self.total, self.done = total_steps, done

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            from slimkit.ui import console

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console, transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.total, completed=self.done, stats="")
        return self

    def update(self, epoch: int, epochs: int, loss: float, metric: str = "", advance: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=advance, description=f"epoch {epoch}/{epochs}",
                             stats=f"loss {loss:.4f}{metric}")

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(et, ev, tb)
