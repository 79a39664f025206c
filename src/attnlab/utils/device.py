"""The device of a command that runs a checkpoint itself (attnlab-generate, -translate,
-fill-mask): `device=auto` is the GPU when there is one."""

from __future__ import annotations

from attnlab.utils.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def choose_device(name: str, cuda_available: bool | None = None) -> str:
    """`auto`: `cuda` when a GPU is visible, else `cpu`; `cpu`, `cuda` and `cuda:<n>` as given.

    `cuda_available` defaults to torch.cuda.is_available() (given in tests)."""
    base, _, index = str(name).partition(":")
    if base not in DEVICE_CHOICES or (index and (base != "cuda" or not index.isdigit())):
        raise ConfigError(
            f"device={name!r} is not valid: choose one of {', '.join(DEVICE_CHOICES)} (or cuda:<n>)"
        )
    if base == "cpu":
        return "cpu"
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if base == "auto":
        return "cuda" if cuda_available else "cpu"
    if not cuda_available:
        raise ConfigError(
            f"device={name} is not valid here: no CUDA device; use device=auto or cpu"
        )
    return str(name)
