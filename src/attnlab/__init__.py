"""attnlab: train, sweep and compare Transformer architectures."""

from attnlab.utils.resolvers import register_resolvers

__version__ = "0.1.0"

# Configs use these resolvers (e.g. unique run directories), so they must exist before Hydra
# composes anything, whichever entry point imports the package first.
register_resolvers()
