"""The run layer: what runs a job, from the command line or from Python.

Commands (one module each): train.py (attnlab-train, and `train(cfg)`), eval.py, generate.py,
translate.py, fill_mask.py, export.py, prepare.py, datasets.py (attnlab-data); api.py is the
Python API (`attnlab.train`, `attnlab.load`). Around them, by job:

- validation.py: check a config before any work (ConfigError);
- extensions.py: the user's modules that register models, position schemes, corpora;
- settings.py: where run-level settings live (`init.*`, `compile`), old keys translated;
- assemble.py: data, network + task (the module), callbacks, loggers, Trainer;
- ladder_rungs.py: scaling ladders: a rung's sizes and its budget in steps (`ladder=`);
  ladder_checks.py: a ladder config checked before any work;
- checkpoints.py: the checkpoint to resume from, the run config stored in one;
- pretrained.py: starting from a pretrained checkpoint (tokenizer, body, frozen layers);
- trained.py: a trained run rebuilt from its checkpoint.

- folder.py: a run folder's claim, lock and attempts; artefacts.py: the files a run writes;
- checkpoint_io.py: atomic, checksummed checkpoint files; errors.py: one-line refusals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attnlab.utils.lazy import lazy_exports

# Imported on first use (PEP 562): importing torch takes seconds, and a command that prints
# its help or reports a config error needs none of these.
_WHERE = {
    "check_checkpoint_path": "attnlab.run.checkpoints",
    "load_checkpoint": "attnlab.run.checkpoints",
    "load_run_config": "attnlab.run.checkpoints",
    "resume_checkpoint": "attnlab.run.checkpoints",
    "build_callbacks": "attnlab.run.assemble",
    "build_datamodule": "attnlab.run.assemble",
    "build_loggers": "attnlab.run.assemble",
    "build_module": "attnlab.run.assemble",
    "build_network": "attnlab.run.assemble",
    "build_trainer": "attnlab.run.assemble",
    "instantiate_section": "attnlab.run.assemble",
    "network_arguments": "attnlab.run.assemble",
    "import_extensions": "attnlab.run.extensions",
    "load_pretrained_body": "attnlab.run.pretrained",
    "pretrained_tokenizer_file": "attnlab.run.pretrained",
    "MOVED_KEYS": "attnlab.run.settings",
    "upgrade_run_config": "attnlab.run.settings",
    "load_trained_module": "attnlab.run.trained",
    "ConfigError": "attnlab.run.errors",
    "check_compatibility": "attnlab.run.validation",
    "check_network_fits_data": "attnlab.run.validation",
    "check_required": "attnlab.run.validation",
    "chosen_options": "attnlab.run.validation",
    "model_options": "attnlab.run.validation",
    "count_parameters": "attnlab.models.parameters",
}

if TYPE_CHECKING:
    from attnlab.models.parameters import count_parameters
    from attnlab.run.assemble import (
        build_callbacks,
        build_datamodule,
        build_loggers,
        build_module,
        build_network,
        build_trainer,
        instantiate_section,
        network_arguments,
    )
    from attnlab.run.checkpoints import (
        check_checkpoint_path,
        load_checkpoint,
        load_run_config,
        resume_checkpoint,
    )
    from attnlab.run.extensions import import_extensions
    from attnlab.run.pretrained import load_pretrained_body, pretrained_tokenizer_file
    from attnlab.run.settings import MOVED_KEYS, upgrade_run_config
    from attnlab.run.trained import load_trained_module
    from attnlab.run.validation import (
        ConfigError,
        check_compatibility,
        check_network_fits_data,
        check_required,
        chosen_options,
        model_options,
    )


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())


__all__ = [
    "MOVED_KEYS",
    "ConfigError",
    "build_callbacks",
    "build_datamodule",
    "build_loggers",
    "build_module",
    "build_network",
    "build_trainer",
    "check_checkpoint_path",
    "check_compatibility",
    "check_network_fits_data",
    "check_required",
    "chosen_options",
    "count_parameters",
    "import_extensions",
    "instantiate_section",
    "load_checkpoint",
    "load_pretrained_body",
    "load_run_config",
    "load_trained_module",
    "model_options",
    "network_arguments",
    "pretrained_tokenizer_file",
    "resume_checkpoint",
    "upgrade_run_config",
]
