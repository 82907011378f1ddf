"""Typed keys for the app's long-lived objects, and the registry that holds them.

The composition root (`ticketera.composition`) builds each object once per process and registers it
under its key; `kit.http.component(key)` hands it to the handlers that name it. A domain declares
the key of what it owns (the waiting room in `queue`, the payment processor in `payments`), so
no domain needs to import the root.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class Component(Generic[T]):
    """The typed key of one long-lived object of the app (one instance per process)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Component({self.name!r})"


class Components:
    """What the composition root built, by key: the only place handlers' objects come from."""

    def __init__(self) -> None:
        self._objects: dict[Component[Any], object] = {}

    def provide(self, key: Component[T], value: T) -> None:
        self._objects[key] = value

    def get(self, key: Component[T]) -> T:
        try:
            return cast(T, self._objects[key])
        except KeyError:
            raise LookupError(f"{key} is not built yet (the app's lifespan has not run?)") from None

    def find(self, key: Component[T]) -> T | None:
        """The object, or None when it is not built (an app whose lifespan has not run)."""
        return cast(T, self._objects[key]) if key in self._objects else None

    def __contains__(self, key: Component[Any]) -> bool:
        return key in self._objects
