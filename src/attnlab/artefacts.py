"""The files a run leaves behind: metrics.json, failure.json and tokenizer copies.

All are written atomically (data/atomic.py): a crash never leaves half a file, and readers
(attnlab-compare, a requeued job, another DDP rank) see the old file or the whole new one.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

from pytorch_lightning.utilities import rank_zero_only

from attnlab.data.loading.atomic import atomic_path
from attnlab.data.loading.token_cache import default_cache_dir


def write_json(path: Path, content: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n")


@rank_zero_only
def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """metrics.json of a finished run (or evaluation), written by rank 0 only."""
    write_json(path, metrics)


@rank_zero_only
def write_failure(run_dir: Path, error: BaseException) -> None:
    """failure.json beside the logs, so attnlab-compare can show the run as failed; nothing
    the run wrote before (metrics.json of an earlier attempt, checkpoints) is touched."""
    report = {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exception(error),
    }
    write_json(run_dir / "failure.json", report)


def write_tokenizer_file(tokenizer: dict[str, str], cache_dir: str | None) -> str:
    """The tokenizer a checkpoint carries (`{"fingerprint", "json"}`) as a file in the cache;
    returns its path. Named by content: an existing file is the same tokenizer."""
    name = f"{tokenizer['fingerprint']}.json"
    path = Path(cache_dir or default_cache_dir()) / "pretrained_tokenizers" / name
    if not path.is_file():
        with atomic_path(path) as tmp:
            tmp.write_text(tokenizer["json"])
    return str(path)
