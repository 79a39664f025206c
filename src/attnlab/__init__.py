"""attnlab: train, sweep and compare Transformer architectures."""

from attnlab.utils.hydra_hooks import register_plugins
from attnlab.utils.resolvers import register_resolvers

__version__ = "0.1.0"

# Configs use these resolvers (e.g. unique run directories) and plugins (hparams_search=optuna),
# so they must exist before Hydra composes anything, whichever entry point imports the package.
register_resolvers()
register_plugins()
