"""A tiny English-like language made from a seed, for fast masked-LM runs without files.

Sentences follow one template, "the [adjective] noun(s) verb(s) the [adjective] noun(s)
[preposition the noun(s)] .", and carry structure a masked LM can learn: a verb agrees in number
with its subject ("the dog runs", "the dogs run"), and each verb takes objects of its own class
(only animals chase, only food is eaten). Plural nouns end in "s", so WordPiece learns a "##s".
"""

from __future__ import annotations

import numpy as np

from attnlab.data.sources.base import SPLITS
from attnlab.data.sources.lines import LineCorpus
from attnlab.data.sources.text_sources import register_text_source

TOY_TEXT_VERSION = 1  # bump when the language changes: cached tokenizers and tokens follow it
ADJECTIVES = ("big", "small", "red", "old", "happy", "quiet", "green", "heavy")
NOUNS = {
    "animal": ("dog", "cat", "bird", "horse", "rabbit", "lion"),
    "food": ("apple", "carrot", "seed", "cake", "bean", "grape"),
    "place": ("garden", "house", "field", "river", "forest", "market"),
}
VERBS = {  # verb (singular present) -> the class of noun it takes as object
    "chases": "animal",
    "watches": "animal",
    "eats": "food",
    "finds": "food",
    "visits": "place",
    "leaves": "place",
}
PREPOSITIONS = ("near", "in", "behind")


VERB_LIST = tuple(VERBS)


def _pick(options: tuple[str, ...], u: float) -> str:
    return options[int(u * len(options))]


def _noun_phrase(kind: str, u: np.ndarray) -> tuple[str, bool]:
    """("the [adjective] noun[s]", plural?) from three uniform numbers."""
    noun, plural = _pick(NOUNS[kind], u[0]), u[1] < 0.5
    adjective = [_pick(ADJECTIVES, u[2] * 2)] if u[2] < 0.5 else []
    return " ".join(["the", *adjective, noun + "s" if plural else noun]), bool(plural)


def toy_sentence(u: np.ndarray) -> str:
    """One sentence from 11 uniform numbers in [0, 1)."""
    subject, plural = _noun_phrase("animal", u[0:3])
    verb = _pick(VERB_LIST, u[3])
    obj, _ = _noun_phrase(VERBS[verb], u[4:7])
    # A plural subject takes the plain verb: "chases" -> "chase", "watches" -> "watch".
    verb_form = verb.removesuffix("es" if verb.endswith("ches") else "s") if plural else verb
    words = [subject, verb_form, obj]
    if u[7] < 0.3:
        place, _ = _noun_phrase("place", u[8:11])
        words += [_pick(PREPOSITIONS, u[7] / 0.3), place]
    return " ".join(words) + " ."


def toy_sentences(num_lines: int, seed: int | np.random.SeedSequence) -> list[str]:
    """`num_lines` sentences, one per line; the same seed gives the same text."""
    # One draw for the whole text: numpy calls per word would dominate the time.
    uniforms = np.random.default_rng(seed).random((num_lines, 11))
    return [toy_sentence(u) for u in uniforms]


@register_text_source("toy")
def toy_lines(seed: int, toy_train_lines: int, toy_eval_lines: int) -> LineCorpus:
    """Sentences of this language; train, val and test come from seeds spawned from `seed`
    (`toy_eval_lines` lines each for val and test)."""
    seeds = dict(zip(SPLITS, np.random.SeedSequence(seed).spawn(3), strict=True))
    sizes = {"train": toy_train_lines, "val": toy_eval_lines, "test": toy_eval_lines}
    return LineCorpus(
        "toy",
        {"seed": seed, "sizes": sizes, "version": TOY_TEXT_VERSION},
        lambda: {split: toy_sentences(sizes[split], seeds[split]) for split in SPLITS},
    )
