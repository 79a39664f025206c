"""Lightning callbacks of attnlab's own (the rest come from Lightning itself)."""

from attnlab.callbacks.final_validation import FinalValidation
from attnlab.callbacks.hypotheses import Hypotheses
from attnlab.callbacks.progress import RichProgressBar
from attnlab.callbacks.reliability import NanGuard, NonFiniteLossError, ResumeState, RunCheckpoint
from attnlab.callbacks.sample_text import SampleText
from attnlab.callbacks.throughput import Throughput

__all__ = [
    "FinalValidation",
    "Hypotheses",
    "NanGuard",
    "NonFiniteLossError",
    "ResumeState",
    "RichProgressBar",
    "RunCheckpoint",
    "SampleText",
    "Throughput",
]
