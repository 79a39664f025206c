"""`attnlab-prepare`: a corpus streamed through a tokenizer into token shards (docs/data.md).

attnlab-prepare input='corpus/*.txt' out=shards/corpus tokenizer=bpe vocab_size=8192
attnlab-prepare input=train.jsonl.gz text_field=content out=shards/web tokenizer=char
attnlab-prepare out=shards/corpus verify=true
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from attnlab.data.corpus import PrepareError, PrepareSettings, prepare
from attnlab.data.loading.shards import ShardError, TokenIndex
from attnlab.run.errors import exits_on_input_error, with_config_hints
from attnlab.run.validation import ConfigError


def settings_of(cfg: DictConfig) -> PrepareSettings:
    known = set(PrepareSettings.__dataclass_fields__) - {"extra"}
    unknown = sorted(set(cfg) - known - {"verify", "paths", "hydra"})
    if unknown:
        raise ConfigError(f"unknown keys {unknown}; valid keys: {sorted(known | {'verify'})}")
    values = {key: cfg[key] for key in known if key in cfg}
    return PrepareSettings(**OmegaConf.to_container(OmegaConf.create(values), resolve=True))


def run(cfg: DictConfig) -> TokenIndex:
    """Prepare (or, with verify=true, check) `cfg.out`; bad input raises ConfigError."""
    try:
        if cfg.verify:
            index = TokenIndex.load(cfg.out)
            problems = index.verify()
            if problems:
                raise ConfigError(f"verify=true: out={cfg.out}: " + "; ".join(problems))
            return index
        return prepare(settings_of(cfg))
    except (PrepareError, ShardError) as error:
        raise ConfigError(str(error)) from None


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="prepare")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> None:
    start = time.perf_counter()
    index = run(cfg)
    for split, shards in index.splits.items():
        tokens = sum(s.tokens for s in shards)
        documents = sum(s.documents for s in shards)
        print(f"{split}: {len(shards)} shard(s), {tokens:,} tokens, {documents:,} documents")
    verb = "verified" if cfg.verify else "prepared"
    print(f"{Path(cfg.out)} {verb} in {time.perf_counter() - start:.1f} s ({index.dtype.name})")


main = with_config_hints("prepare", hydra_main)

if __name__ == "__main__":
    main()
