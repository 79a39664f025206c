"""attnlab's Hydra plugins. Hydra only instantiates plugins found under `hydra_plugins`.

Hydra imports every module of this package at start-up, looking for plugins. The Optuna
sweeper's helpers (search.py, search_space.py, study.py, trials.py) import optuna, which only
attnlab[sweep] installs: without it, Hydra would print a warning of five lines for each, on
every command. Those warnings, for this package's modules only and only while optuna is
missing, are silenced here (Hydra imports this file first); `hparams_search=optuna` without
it still stops with one line naming the extra.
"""

import warnings

from attnlab.utils.extras import is_installed

if not is_installed("optuna"):
    warnings.filterwarnings(
        "ignore",
        message=r"\s*Error importing 'hydra_plugins\.attnlab_sweepers\.",
        category=UserWarning,
    )
