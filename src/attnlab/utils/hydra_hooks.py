"""attnlab's additions to Hydra itself: our plugin, and callbacks that multiruns need."""

from __future__ import annotations

import copy
import os
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.utils import get_method
from omegaconf import DictConfig, open_dict


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


class CheckJobsFirst(Callback):
    """Checks the config of every job of a multirun before the first starts: a typo in one
    sweep value (`-m model.pos=rope,alibii`) would otherwise be found when its job runs, after
    the others. `check` names the function run on each job's composed config (it raises
    ConfigError). A sampling sweeper (Optuna) has no list of jobs: each value of a `choice`
    is checked with the other keys as configured; intervals are left to the trials."""

    def __init__(self, check: str) -> None:
        self.check = check

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose

        from attnlab.build.validation import ConfigError
        from attnlab.utils.config_errors import INPUT_ERRORS, exit_on_input_error

        check = get_method(self.check)
        jobs = sweep_jobs(config)
        previous = HydraConfig.instance().cfg
        try:
            for number, overrides in enumerate(jobs):
                where = f"multirun job {number} of {len(jobs)} ({' '.join(overrides)})"
                try:
                    cfg = compose(kwargs.get("config_name"), overrides, return_hydra_config=True)
                    with open_dict(cfg):  # set by Hydra per job; checks write nothing there
                        cfg.hydra.job.num = number
                        cfg.hydra.runtime.output_dir = os.getcwd()
                    HydraConfig.instance().set_config(cfg)  # chosen_options() names its choices
                    check(cfg)
                except INPUT_ERRORS as error:
                    exit_on_input_error(type(error)(f"{where}: {error}"))
                except HydraException as error:  # an unknown option or key in one job
                    exit_on_input_error(ConfigError(f"{where}: {error}"))
        finally:
            HydraConfig.instance().cfg = previous


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The overrides of each job of a multirun: all of them for Hydra's BasicSweeper; for a
    sampling sweeper, one job per listed value (sweeper params, then the command line's)."""
    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(lines)
    last = {override.get_key_element(): override for override in parsed}  # later ones win
    # By name: Hydra's plugin scan imports the module again, so the classes differ.
    if config.hydra.sweeper._target_ == f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
        (jobs,) = BasicSweeper.split_arguments(list(last.values()), max_batch_size=None)
        return jobs
    fixed = [o.input_line for o in last.values() if not o.is_sweep_override()]
    jobs = [fixed]
    for override in last.values():
        if override.is_discrete_sweep():
            key = override.get_key_element()
            jobs += [[*fixed, f"{key}={value}"] for value in override.sweep_string_iterator()]
    return jobs
