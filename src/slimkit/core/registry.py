"""A name -> object registry that lists what exists when a name is wrong."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

from slimkit.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind (targets, tasks, techniques).

    Example:
        >>> r: Registry[int] = Registry("number")
        >>> r.register("one", 1)
        >>> r.get("one")
        1
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=1)
            maybe = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(
                f"unknown {self.kind} '{name}'{maybe}",
                hint=f"choose one of: {', '.join(self._items)}",
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items
