"""Lightning callbacks of attnlab's own (the rest come from Lightning itself)."""

from attnlab.callbacks.sample_text import SampleText
from attnlab.callbacks.throughput import Throughput

__all__ = ["SampleText", "Throughput"]
