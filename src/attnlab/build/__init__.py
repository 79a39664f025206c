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
