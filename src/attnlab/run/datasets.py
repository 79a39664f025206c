"""`attnlab-data`: list the real datasets, or download them (`make data`), sha256-checked.

    attnlab-data list                      # which datasets, which files, which are present
    attnlab-data download [NAME ...]       # fetch what is missing (all datasets by default)

The directory is --data-dir, else $ATTNLAB_DATA_DIR, else ./data (what `paths.data_dir` uses
when you launch from the checkout). Files already there are checked, never replaced. No Hydra.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from attnlab.data.loading.download import ChecksumError, MissingDataError

# The catalog is imported after the arguments are parsed: it reaches the data sources, which
# import torch, and `attnlab-data --help` should answer at once.
DATASET_NAMES = ("shakespeare", "wikitext2", "sst2", "multi30k")  # the catalog's, checked by a test


def default_data_dir() -> Path:
    return Path(os.environ.get("ATTNLAB_DATA_DIR") or Path.cwd() / "data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="attnlab-data", description="List or download attnlab's real datasets."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the datasets live (default: $ATTNLAB_DATA_DIR, else ./data)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the datasets, their files and whether each is present")
    download = commands.add_parser("download", help="fetch missing files (sha256-checked)")
    download.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"datasets to fetch (default: all of {', '.join(DATASET_NAMES)})",
    )
    download.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    args = parser.parse_args(argv)
    from attnlab.data.catalog import DATASETS, fetch

    data_dir = (args.data_dir or default_data_dir()).resolve()

    if args.command == "list":
        for name, files in DATASETS.items():
            print(name)
            for file in files:
                mark = "present" if file.present(data_dir) else "missing"
                origin = f"{file.url} [{file.member}]" if file.member else file.url
                print(f"  {mark:8}{data_dir / file.path}  <- {origin}  sha256 {file.sha256}")
        return 0

    names = args.names or list(DATASETS)
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {list(DATASETS)}")
    for name in names:
        try:
            paths = fetch([name], data_dir, timeout=args.timeout)
        except (MissingDataError, ChecksumError) as error:
            print(f"attnlab-data: {name}: {error}", file=sys.stderr)
            return 1
        print(f"{name}: {len(paths)} file(s) in {data_dir}")
    return 0


def cli() -> None:
    """The console-script entry point: main's exit status."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
