"""The error of a refused input: the lowest layer defines it, so that every layer can raise it
and the run layer (attnlab/run/errors.py) reports it as one line."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot work, reported before any work is done (one line, exit 2)."""
