"""attnlab's additions to Hydra itself: our plugin, and a callback that multiruns need."""

from __future__ import annotations

import copy
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def register_plugins() -> None:
    """Make `hydra.sweeper._target_: hydra_plugins.attnlab_sweepers...` work in any install.

    Hydra finds plugins by listing the `hydra_plugins` folders on sys.path. An editable install
    (`pip install -e .`) maps our plugin package (src/hydra_plugins) by name only, so that
    listing misses it.
    """
    try:
        from hydra.core.plugins import Plugins

        from hydra_plugins.attnlab_sweepers.optuna_sweeper import OptunaSweeper
    except ImportError:  # hydra-optuna-sweeper missing: Hydra says so if a search asks for it
        return
    Plugins.instance().register(OptunaSweeper)


class HydraConfigInMultirun(Callback):
    """Lets `${hydra:...}` resolve in a multirun before its first job starts.

    Hydra sets HydraConfig only around each job, but a multirun resolves hydra.sweep.dir (and
    the sweeper's settings, such as Optuna's storage) earlier; both use paths.log_dir, which is
    `${hydra:runtime.cwd}/logs`. Every job then sets its own HydraConfig as usual.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not HydraConfig.initialized():
            # A copy: set_config makes the hydra node read-only, and sweepers still use it.
            HydraConfig.instance().set_config(copy.deepcopy(config))
