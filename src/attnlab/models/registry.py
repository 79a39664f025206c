"""The architectures by name: attnlab's own, and any a user registers.

A network class is used from Hydra by its import path (`model._target_: my_pkg.MyNet`) or,
once registered, by its name through `build_network` (`model._target_:
attnlab.models.build_network` with `model.name: my_net`). The names also tell a user which
`model=` options can do a task (builders' error messages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from hydra.utils import get_class
from torch import nn

NetworkClass = TypeVar("NetworkClass", bound=type[nn.Module])

NETWORKS: dict[str, type[nn.Module]] = {}


def register_network(name: str) -> Callable[[NetworkClass], NetworkClass]:
    """Class decorator: `@register_network("my_net")`. The class should declare
    `supported_tasks` and implement the protocols of those tasks (attnlab/protocols.py)."""

    def register(cls: NetworkClass) -> NetworkClass:
        if NETWORKS.get(name, cls) is not cls:
            raise ValueError(f"network {name!r} is registered already ({NETWORKS[name]})")
        NETWORKS[name] = cls
        return cls

    return register


def unregister_network(name: str) -> None:
    """Remove a registered network (e.g. a test's, when it is done)."""
    del NETWORKS[name]


def network_class(name: str) -> type[nn.Module]:
    """The class registered as `name`; an unknown name is an error listing the known ones."""
    if name not in NETWORKS:
        raise ValueError(f"model.name={name!r} is not valid: choose one of {sorted(NETWORKS)}")
    return NETWORKS[name]


def build_network(name: str, **arguments: Any) -> nn.Module:
    """The registered network `name` built with `arguments` (Hydra: `_target_` this)."""
    return network_class(name)(**arguments)


def network_class_of(model: Mapping[str, Any]) -> type[nn.Module]:
    """The class a `model` config builds: `_target_`'s, or the registered `name`'s when
    `_target_` is build_network."""
    target = model["_target_"]
    if target in (f"{__name__}.build_network", "attnlab.models.build_network"):
        return network_class(model["name"])
    return get_class(target)
