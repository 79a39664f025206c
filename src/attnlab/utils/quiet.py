"""`extras.ignore_warnings` (lightning-hydra-template's key): silence the warnings and notices
that tell a user nothing they can act on, and keep every other warning.

Silenced, each by its exact text:
- Lightning's "💡 Tip: ... try installing litlogger" at every Trainer, and its "Trainer already
  configured with model summary callbacks" (attnlab's summary is a configured callback);
- torch's "`isinstance(treespec, LeafSpec)` is deprecated", raised by Lightning's own code;
- wandb's "The anonymous setting has no effect": Lightning's WandbLogger always passes
  `anonymous` (dropped from its arguments, whatever the key says: it does nothing).

Optuna's storage prints alembic's "setup plugin ..." lines before any job runs: conf/hydra/
default.yaml raises the alembic logger to WARNING instead. And `one_log_stream` drops the
console handler `import lightning` adds where logging is configured already (Hydra's): each
of Lightning's lines was printed twice, once as "INFO: ...".
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable

LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# Lightning's INFO lines (logger lightning.pytorch.utilities.rank_zero) dropped, by their start
DROPPED = ("💡 Tip:", "Trainer already configured with model summary callbacks")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(DROPPED)


_DROP_TIPS = _DropTips()


def silence_uninformative_warnings(enabled: bool = True) -> None:
    """Install the filters above (idempotent); `enabled=False` removes them again."""
    lightning = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not enabled:
        lightning.removeFilter(_DROP_TIPS)
        return
    warnings.filterwarnings("ignore", message=LEAFSPEC, category=FutureWarning)
    lightning.addFilter(_DROP_TIPS)  # a filter already there is not added twice


def quiet_loggers(loggers: Iterable[object]) -> None:
    """Drop WandbLogger's `anonymous` argument: recent wandb warns about any value of it."""
    for logger in loggers:
        init = getattr(logger, "_wandb_init", None)  # WandbLogger's arguments to wandb.init
        if isinstance(init, dict):
            init.pop("anonymous", None)


def one_log_stream() -> None:
    """Where the root logger has handlers (attnlab-train's Hydra logging), Lightning's lines go
    there only, not also to the console handler `import lightning` adds to its logger."""
    if not logging.getLogger().handlers:
        return  # no logging configured (a notebook): Lightning's handler is the only one
    lightning = logging.getLogger("lightning")
    for handler in list(lightning.handlers):
        if type(handler) is logging.StreamHandler:
            lightning.removeHandler(handler)
