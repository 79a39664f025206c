"""Tasks: the loss, metrics and decoding for a batch, given the network.

The task comes with the data (`DataSpec.task`); the network comes from the `model` group.
"""

from attnlab.tasks.base import Task
from attnlab.tasks.causal_lm import CausalLMTask
from attnlab.tasks.classification import ClassificationTask
from attnlab.tasks.masked_lm import MaskedLMTask
from attnlab.tasks.seq2seq import Seq2SeqTask

__all__ = ["CausalLMTask", "ClassificationTask", "MaskedLMTask", "Seq2SeqTask", "Task"]
