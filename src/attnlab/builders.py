"""Kept for code that imports `attnlab.builders`: the same functions now live in attnlab.build,
split by job (validation, construction, checkpoints, pretrained weights)."""

from attnlab.build import *  # noqa: F403
from attnlab.build import __all__  # noqa: F401
