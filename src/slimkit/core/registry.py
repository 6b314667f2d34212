"""A name -> object registry that lists what exists when a name is wrong, and takes plug-ins from
Python entry points so other packages add to it without editing slimkit."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from slimkit.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind (targets, tasks, techniques).

    ``group`` names an entry-point group whose objects join the registry the first time it is
    read; ``check`` turns a loaded object into an item (or raises TypeError to refuse it). A
    plug-in that fails to load is kept in :attr:`broken` with why, never fatal.

    Example:
        >>> r: Registry[int] = Registry("number")
        >>> r.register("one", 1)
        >>> r.get("one")
        1
    """

    def __init__(self, kind: str, group: str | None = None,
                 check: Callable[[object], T] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._check = check
        self._items: dict[str, T] = {}
        self._plugins_read = group is None
        self._plugins: set[str] = set()  # names that came from entry points (dropped on a reload)
        self.broken: dict[str, str] = {}

    def _read_plugins(self) -> None:
        if self._plugins_read:
            return
        self._plugins_read = True
        for ep in entry_points(group=self.group or ""):
            try:
                loaded = ep.load()
                item = self._check(loaded) if self._check else loaded
            except Exception as err:  # a broken plug-in must not take slimkit down with it
                self.broken[ep.name] = f"{ep.value}: {type(err).__name__}: {err}"
                continue
            name = getattr(item, "name", ep.name)
            if name in self._items:
                if self._items[name] is not item:
                    self.broken[ep.name] = f"{ep.value}: {self.kind} '{name}' is already registered"
                continue
            self._items[name] = item
            self._plugins.add(name)

    def reload_plugins(self) -> None:
        """Read the entry points again (a plug-in installed or removed after this registry was first read)."""
        for name in self._plugins:
            self._items.pop(name, None)
        self._plugins.clear()
        self._plugins_read = self.group is None
        self.broken.clear()
        self._read_plugins()

    def register(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = item

    def get(self, name: str) -> T:
        self._read_plugins()
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
        self._read_plugins()
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._read_plugins()
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        self._read_plugins()
        return name in self._items
