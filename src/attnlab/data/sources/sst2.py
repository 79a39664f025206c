"""GLUE SST-2 sentence sentiment (0 negative, 1 positive): labelled sentences for classification,
and its sentences alone for masked-LM (task-adaptive) pretraining.

Files: `<data_dir>/sst2/train.tsv` and `dev.tsv` (header `sentence<TAB>label`), plain or
gzipped. GLUE's test.tsv has no labels, so the splits are: train = train.tsv less a validation
sample, val = that sample (`val_size` examples, or a fraction; drawn uniformly with
`split_seed`, not stratified: in 872 examples a label's share is within about 3 points of
train's), and test = dev.tsv (872 examples, the number papers report as SST-2 accuracy). The
masked-LM text splits the same way, so pretraining on it never reads a sentence the classifier
is validated or tested on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attnlab.data.loading.download import ensure_file, read_lines
from attnlab.data.loading.token_cache import source_key
from attnlab.data.sources.labelled import LabelledSource
from attnlab.data.sources.lines import LineCorpus
from attnlab.data.sources.text_sources import register_text_source

SHA256 = {
    "train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
}
# GLUE's distribution of SST-2: a zip whose SST-2/{train,dev,test}.tsv are the files above.
ZIP_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
ZIP_MEMBER = "SST-2/{file}"
SOURCE = f"the GLUE SST-2 zip {ZIP_URL} (`attnlab-data download sst2` fetches it)"
HEADER = "sentence\tlabel"
LABELS = ("0", "1")


def read_sst2(path: Path) -> tuple[list[str], np.ndarray]:
    """(sentences, labels) of a labelled SST-2 file."""
    lines = read_lines(path)
    if not lines or lines[0] != HEADER:
        found = lines[0] if lines else ""
        raise ValueError(f"{path} starts with {found!r}; an SST-2 file starts with {HEADER!r}")
    sentences, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        sentence, _, label = line.rpartition("\t")
        if label not in LABELS:
            raise ValueError(
                f"{path}, line {number}: label {label!r} is not one of {list(LABELS)} "
                f"(line {line!r})"
            )
        sentences.append(sentence.strip())  # GLUE's sentences end with a space
        labels.append(int(label))
    return sentences, np.asarray(labels, dtype=np.int64)


class SST2(LabelledSource):
    """SST-2's files, sha256-checked; `url_base`: where to download them (None: never)."""

    def __init__(
        self,
        data_dir: str | Path,
        val_size: int | float = 872,
        split_seed: int = 1234,
        url_base: str | None = None,
    ) -> None:
        files = {"train": "train.tsv", "val": "train.tsv", "test": "dev.tsv"}
        super().__init__("sst2", Path(data_dir) / "sst2", files, len(LABELS), val_size, split_seed)
        self.url_base = url_base

    def path(self, file: str) -> Path:
        url = f"{self.url_base}/{file}" if self.url_base else None
        return ensure_file(self.directory / file, url, SHA256[file], source=SOURCE)

    def read(self, path: Path) -> tuple[list[str], np.ndarray]:
        return read_sst2(path)


@register_text_source("sst2")
def sst2_lines(
    data_dir: str | Path, val_size: int | float = 872, split_seed: int = 1234
) -> LineCorpus:
    """SST-2's sentences without labels, split like the classification data with the same
    `val_size` and `split_seed`."""
    sst2 = SST2(data_dir, val_size, split_seed)
    paths = {file: sst2.path(file) for file in ("train.tsv", "dev.tsv")}

    def read() -> dict[str, list[str]]:
        sentences, _ = read_sst2(paths["train.tsv"])
        train, val = (sst2.indices(split, len(sentences)) for split in ("train", "val"))
        return {
            "train": [sentences[i] for i in train],
            "val": [sentences[i] for i in val],
            "test": read_sst2(paths["dev.tsv"])[0],
        }

    key = {file: source_key(path) for file, path in paths.items()}
    key.update(val_size=val_size, split_seed=split_seed)
    return LineCorpus("sst2", key, read)
