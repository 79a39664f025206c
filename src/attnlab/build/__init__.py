"""From a composed config to the objects of a run, by job:

- validation.py: check a config before any work (ConfigError);
- extensions.py: the user's modules that register models, position schemes, corpora;
- run_settings.py: where run-level settings live (`init.*`, `compile`), old keys translated;
- construction.py: data, network + task (the module), callbacks, loggers, Trainer;
- ladder.py: scaling ladders: a rung's sizes and its budget in steps (`ladder=`);
- checkpoints.py: the checkpoint to resume from, the run config stored in one;
- pretrained.py: starting from a pretrained checkpoint (tokenizer, body, frozen layers);
- trained.py: a trained run rebuilt from its checkpoint.

Files a run writes (metrics.json, failure.json, tokenizer copies) are in attnlab/artefacts.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attnlab.utils.lazy import lazy_exports

# Imported on first use (PEP 562): importing torch takes seconds, and a command that prints
# its help or reports a config error needs none of these.
_WHERE = {
    "check_checkpoint_path": "attnlab.build.checkpoints",
    "load_checkpoint": "attnlab.build.checkpoints",
    "load_run_config": "attnlab.build.checkpoints",
    "resume_checkpoint": "attnlab.build.checkpoints",
    "build_callbacks": "attnlab.build.construction",
    "build_datamodule": "attnlab.build.construction",
    "build_loggers": "attnlab.build.construction",
    "build_module": "attnlab.build.construction",
    "build_network": "attnlab.build.construction",
    "build_trainer": "attnlab.build.construction",
    "instantiate_section": "attnlab.build.construction",
    "network_arguments": "attnlab.build.construction",
    "import_extensions": "attnlab.build.extensions",
    "load_pretrained_body": "attnlab.build.pretrained",
    "pretrained_tokenizer_file": "attnlab.build.pretrained",
    "MOVED_KEYS": "attnlab.build.run_settings",
    "upgrade_run_config": "attnlab.build.run_settings",
    "load_trained_module": "attnlab.build.trained",
    "ConfigError": "attnlab.build.errors",
    "check_compatibility": "attnlab.build.validation",
    "check_network_fits_data": "attnlab.build.validation",
    "check_required": "attnlab.build.validation",
    "chosen_options": "attnlab.build.validation",
    "model_options": "attnlab.build.validation",
    "count_parameters": "attnlab.models.parameters",
}

if TYPE_CHECKING:
    from attnlab.build.checkpoints import (
        check_checkpoint_path,
        load_checkpoint,
        load_run_config,
        resume_checkpoint,
    )
    from attnlab.build.construction import (
        build_callbacks,
        build_datamodule,
        build_loggers,
        build_module,
        build_network,
        build_trainer,
        instantiate_section,
        network_arguments,
    )
    from attnlab.build.extensions import import_extensions
    from attnlab.build.pretrained import load_pretrained_body, pretrained_tokenizer_file
    from attnlab.build.run_settings import MOVED_KEYS, upgrade_run_config
    from attnlab.build.trained import load_trained_module
    from attnlab.build.validation import (
        ConfigError,
        check_compatibility,
        check_network_fits_data,
        check_required,
        chosen_options,
        model_options,
    )
    from attnlab.models.parameters import count_parameters


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
