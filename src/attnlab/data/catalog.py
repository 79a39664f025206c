"""The real datasets attnlab knows by name: every file, where it is downloaded from and its sha256.

`fetch(names, data_dir)` downloads what is missing (`attnlab-data download`, `make data`); files
already there are checked, never replaced. The URLs and checksums are the ones the sources use
when they download on first use, so there is one list. sha256 is of the file as stored:
uncompressed text, the .gz as the source serves it (Multi30k), or the extracted member of a zip
archive (SST-2, from GLUE's distribution).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from attnlab.data.loading.download import ensure_file, gz_variant
from attnlab.data.sources import multi30k, shakespeare, sst2, wikitext


@dataclass(frozen=True)
class DataFile:
    """`path` (relative to data_dir) comes from `url`, or from the zip at `url`'s `member`."""

    path: str
    url: str
    sha256: str
    member: str | None = None

    def present(self, data_dir: Path) -> bool:
        """Whether the file, its .gz variant or (for a .gz) an uncompressed copy is in
        `data_dir`: the readers accept all three."""
        local = Path(data_dir) / self.path
        candidates = [local, gz_variant(local)]
        if local.suffix == ".gz":
            candidates.append(local.with_suffix(""))
        return any(path.is_file() for path in candidates)


def _catalog() -> dict[str, tuple[DataFile, ...]]:
    return {
        "shakespeare": (
            DataFile("tinyshakespeare/input.txt", shakespeare.URL, shakespeare.SHA256),
        ),
        "wikitext2": tuple(
            DataFile(f"wikitext-2/{name}.txt", f"{wikitext.URL_BASE}/{name}.txt", sha)
            for name, sha in wikitext.SHA256.items()
        ),
        "sst2": tuple(
            DataFile(f"sst2/{file}", sst2.ZIP_URL, sha, member=sst2.ZIP_MEMBER.format(file=file))
            for file, sha in sst2.SHA256.items()
        ),
        "multi30k": tuple(
            DataFile(f"multi30k/{name}.gz", f"{multi30k.URL_BASE}/{name}.gz", sha)
            for name, sha in multi30k.SHA256_GZ.items()
        ),
    }


DATASETS: dict[str, tuple[DataFile, ...]] = _catalog()


def files_of(names: Iterable[str]) -> list[DataFile]:
    """The files of the named datasets; ValueError naming the choices for an unknown name."""
    files = []
    for name in names:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
        files.extend(DATASETS[name])
    return files


def missing(names: Iterable[str], data_dir: str | Path) -> list[Path]:
    """The files of the named datasets that are not in `data_dir` (neither plain nor .gz)."""
    return [Path(data_dir) / f.path for f in files_of(names) if not f.present(Path(data_dir))]


def fetch(names: Iterable[str], data_dir: str | Path, timeout: float = 60.0) -> list[Path]:
    """Download every missing file of the named datasets into `data_dir`, sha256-checked; files
    there are checked and kept. Raises MissingDataError or ChecksumError for the first that
    fails (files fetched before it stay)."""
    data_dir = Path(data_dir)
    paths = []
    for file in files_of(names):
        local = data_dir / file.path
        if local.suffix == ".gz" and local.with_suffix("").is_file():
            paths.append(local.with_suffix(""))  # an uncompressed copy, as present() accepts
            continue
        paths.append(ensure_file(local, file.url, file.sha256, member=file.member, timeout=timeout))
    return paths
