"""Name -> data set source, so configs pick a data set with ``data.dataset: <name>``.

Adding a data set is one registration, no change to the data module::

    @register_dataset("mydata")
    class MyDataSource(DatasetSource):
        ...

or, for a factory such as a configured torchvision source,
``register_dataset("flowers102", partial(TorchvisionSource, spec=FLOWERS_SPEC))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from silhouette_lightning.data.source import DatasetSource, SourceConfig
from silhouette_lightning.errors import ConfigError

DatasetFactory = Callable[[SourceConfig], DatasetSource]
F = TypeVar("F", bound=DatasetFactory)

_REGISTRY: dict[str, DatasetFactory] = {}


def register_dataset(name: str, factory: F | None = None, *, replace: bool = False) -> F | Callable[[F], F]:
    """Register ``factory`` (a :class:`DatasetSource` subclass or any callable ``SourceConfig -> source``).

    Use as ``@register_dataset("name")`` on a class or call ``register_dataset("name", factory)``.
    Names are case-insensitive. Registering a taken name raises unless ``replace=True``: two data sets
    silently shadowing each other would be a hard-to-find bug.
    """

    def add(f: F) -> F:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key] is not f and not replace:
            raise ValueError(f"dataset name '{key}' is already registered to {_REGISTRY[key]!r}")
        _REGISTRY[key] = f
        return f

    return add if factory is None else add(factory)


def unregister_dataset(name: str) -> None:
    """Remove a registration (for tests and plugins); unknown names are ignored."""
    _REGISTRY.pop(name.lower(), None)


def registered_datasets() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def create_source(config: SourceConfig) -> DatasetSource:
    """Build the source registered as ``config.name``; unknown names -> ConfigError listing the known ones."""
    key = config.name.lower()
    if key not in _REGISTRY:
        raise ConfigError(
            f"Unknown dataset '{config.name}'. Registered datasets: {', '.join(registered_datasets())}."
        )
    return _REGISTRY[key](config)
