"""Tasks: the loss, metrics and decoding for a batch, given the network.

The task comes with the data (`DataSpec.task`); the network comes from the `model` group.
"""

from attnlab.tasks.base import Task
from attnlab.tasks.causal_lm import CausalLMTask
from attnlab.tasks.seq2seq import Seq2SeqTask

__all__ = ["CausalLMTask", "Seq2SeqTask", "Task"]
