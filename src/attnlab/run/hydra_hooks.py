"""attnlab's additions to Hydra itself: our plugin, and callbacks that multiruns need."""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.utils import get_method
from omegaconf import DictConfig, open_dict

from attnlab.utils import hydra_compat

log = logging.getLogger(__name__)


def register_plugins() -> None:
    """Make `hydra.sweeper._target_: hydra_plugins.attnlab_sweepers...` work in any install.

    Hydra finds plugins by listing the `hydra_plugins` folders on sys.path. An editable install
    (`pip install -e .`) maps our plugin package (src/hydra_plugins) by name only, so that
    listing misses it.
    """
    from hydra.core.plugins import Plugins

    # Imports no Optuna: the sweeper's setup says which extra to install when it is missing.
    from hydra_plugins.attnlab_sweepers.optuna_sweeper import OptunaSweeper

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
    ConfigError). A sampling sweeper (Optuna) has no list of jobs: its fixed settings are
    checked, and a `choice` value that fails gets a warning only (its trials fail in
    milliseconds, and a failed trial does not stop the search); intervals are left to trials."""

    def __init__(self, check: str) -> None:
        self.check = check
        self._searchpath: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from attnlab.run.errors import INPUT_ERRORS, exit_on_input_error
        from attnlab.run.validation import ConfigError

        jobs, sampled = sweep_jobs(config)
        # The run's own search path (`hydra.searchpath=[file://...]`, a Hydra override that
        # the jobs' task overrides leave out): each job's configs are looked up there too.
        self._searchpath = [
            o for o in config.hydra.overrides.hydra if o.lstrip("+").startswith("hydra.searchpath")
        ]
        previous = HydraConfig.instance().cfg
        try:
            for number, overrides in enumerate(jobs):
                where = f"multirun job {number} of {len(jobs)} ({' '.join(overrides)})"
                try:
                    self._check_job(kwargs.get("config_name"), overrides, number)
                except INPUT_ERRORS as error:
                    exit_on_input_error(type(error)(f"{where}: {error}"))
                except HydraException as error:  # an unknown option or key in one job
                    exit_on_input_error(ConfigError(f"{where}: {error}"))
            for value in sampled:
                try:
                    self._check_job(kwargs.get("config_name"), [*jobs[0], value], 0)
                except (*INPUT_ERRORS, HydraException) as error:
                    log.warning("sweep value %s: its trials will fail: %s", value, error)
        finally:
            HydraConfig.instance().cfg = previous

    def _check_job(self, config_name: str | None, overrides: list[str], number: int) -> None:
        cfg = compose(config_name, [*self._searchpath, *overrides], return_hydra_config=True)
        with open_dict(cfg):  # set by Hydra per job; checks write nothing there
            cfg.hydra.job.num = number
            cfg.hydra.runtime.output_dir = os.getcwd()
            cfg.hydra.output_subdir = None  # no job runs here: no attempt folder, no lock
        HydraConfig.instance().set_config(cfg)  # chosen_options() names the job's choices
        get_method(self.check)(cfg)


def sweep_jobs(config: DictConfig) -> tuple[list[list[str]], list[str]]:
    """The overrides of each job of a multirun, and values a sampling sweeper may draw.

    Hydra's BasicSweeper: every job (the cartesian product), nothing sampled. Another sweeper
    (Optuna): one job of the fixed settings, and each `key=value` of its `choice`s."""
    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(lines)
    last = {override.get_key_element(): override for override in parsed}  # later ones win
    jobs = hydra_compat.basic_sweeper_jobs(config.hydra.sweeper._target_, list(last.values()))
    if jobs is not None:
        return jobs, []
    fixed = [o.input_line for o in last.values() if not o.is_sweep_override()]
    sampled = [
        f"{o.get_key_element()}={value}"
        for o in last.values()
        if o.is_choice_sweep()  # a range may hold thousands of values: left to its trials
        for value in o.sweep_string_iterator()
    ]
    return [fixed], sampled
