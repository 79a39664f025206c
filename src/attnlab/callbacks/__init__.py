"""Lightning callbacks of attnlab's own (the rest come from Lightning itself)."""

from attnlab.callbacks.final_validation import FinalValidation
from attnlab.callbacks.hypotheses import Hypotheses
from attnlab.callbacks.model_summary import ModelSummary
from attnlab.callbacks.nan_guard import NanGuard, NonFiniteLossError
from attnlab.callbacks.progress import PlainProgress, RichProgressBar
from attnlab.callbacks.resume_state import ResumeState
from attnlab.callbacks.run_checkpoint import RunCheckpoint
from attnlab.callbacks.sample_text import SampleText
from attnlab.callbacks.throughput import Throughput

__all__ = [
    "FinalValidation",
    "Hypotheses",
    "ModelSummary",
    "NanGuard",
    "NonFiniteLossError",
    "PlainProgress",
    "ResumeState",
    "RichProgressBar",
    "RunCheckpoint",
    "SampleText",
    "Throughput",
]
