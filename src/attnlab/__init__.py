"""attnlab: train, sweep and compare Transformer architectures.

From Python (attnlab/run/api.py): `attnlab.train([...overrides])` runs attnlab-train and returns a
TrainResult; `attnlab.load(run_dir_or_ckpt)` gives the trained network with its tokenizer and
config. Both load lazily: importing attnlab imports neither torch nor Lightning.
"""

from typing import Any

from attnlab.run.hydra_hooks import register_plugins
from attnlab.run.resolvers import register_resolvers

__version__ = "0.1.0"

# Configs use these resolvers (e.g. unique run directories) and plugins (hparams_search=optuna),
# so they must exist before Hydra composes anything, whichever entry point imports the package.
register_resolvers()
register_plugins()


_API = ("train", "load", "compose_train_config", "TrainResult", "Trained")


def __getattr__(name: str) -> Any:
    # attnlab/run/api.py, imported on first use; `attnlab.train` is its function (no module of
    # that name shadows it: the command lives in attnlab/run/train.py).
    if name in _API:
        from attnlab.run import api

        return getattr(api, name)
    raise AttributeError(f"module 'attnlab' has no attribute {name!r}")
