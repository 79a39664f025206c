"""The `model` config group's options and the network class each builds.

One explicit table, read by error messages ("for task X choose model= one of ..."); nothing
parses conf/ at run time. Adding an architecture: its YAML in conf/model/ and a line here
(tests/test_configs.py checks that the two agree).
"""

from __future__ import annotations

from hydra.utils import get_class

MODEL_OPTIONS: dict[str, str] = {  # conf/model/<option>.yaml -> its _target_
    "bert": "attnlab.models.EncoderOnly",
    "encdec": "attnlab.models.EncoderDecoder",
    "gpt": "attnlab.models.DecoderOnly",
}


def model_options() -> dict[str, type]:
    """Option name -> network class, in name order."""
    return {name: get_class(target) for name, target in sorted(MODEL_OPTIONS.items())}
