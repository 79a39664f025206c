"""Text sources by name: what `data.corpus=<name>` of the masked-LM data resolves to.

A source file registers a factory with `@register_text_source("name")`; the factory takes the
options it needs by name from those a DataModule offers (`data_dir`, `download`, `seed`, ...),
so adding a corpus needs no edit of any DataModule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from attnlab.data.sources.base import TextSource

TEXT_SOURCES: dict[str, Callable[..., TextSource]] = {}


def register_text_source(
    name: str,
) -> Callable[[Callable[..., TextSource]], Callable[..., TextSource]]:
    def register(factory: Callable[..., TextSource]) -> Callable[..., TextSource]:
        if name in TEXT_SOURCES:
            raise ValueError(f"a text source is already registered as {name!r}")
        TEXT_SOURCES[name] = factory
        return factory

    return register


def needs_files(name: str) -> bool:
    """Whether the named source reads files (its factory takes a `data_dir`)."""
    return "data_dir" in inspect.signature(TEXT_SOURCES[name]).parameters


def text_source(name: str, **options: Any) -> TextSource:
    """The source registered as `name`, given the `options` its factory names."""
    if name not in TEXT_SOURCES:
        raise ValueError(f"data.corpus={name!r} is not a text corpus; choose one of {names()}")
    factory = TEXT_SOURCES[name]
    wanted = inspect.signature(factory).parameters
    return factory(**{key: value for key, value in options.items() if key in wanted})


def names() -> list[str]:
    return list(TEXT_SOURCES)
