"""Tiny random-weight Hugging Face checkpoints, as `save_pretrained` writes them, with
tokenizers built here with `tokenizers`: nothing downloads."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers as tokenizer_trainers

from attnlab.data.sources.toy_text import toy_sentences
from attnlab.data.tokenizers.wordpiece import train_wordpiece
from tests.interop.conftest import perturb, transformers

LINES = toy_sentences(400, seed=0)
EOS = "<|endoftext|>"
MAX_LEN = 64


def _save_tokenizer(tokenizer: Tokenizer, directory: Path, **specials: str) -> None:
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_LEN}
    (directory / "tokenizer_config.json").write_text(json.dumps(config | specials))


def bpe_tokenizer() -> Tokenizer:
    """Byte-level BPE with GPT-2's <|endoftext|>, trained on the toy sentences."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = tokenizer_trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(LINES, trainer)
    return tokenizer


def bert_base_wordpiece() -> Tokenizer:
    """A WordPiece vocabulary of the toy sentences laid out as bert-base-uncased's: [PAD]=0,
    [unused1..99], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, then the word pieces."""
    trained = train_wordpiece(LINES, 200).get_vocab(with_added_tokens=False)
    specials = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    pieces = sorted((t for t in trained if t not in specials), key=trained.__getitem__)
    vocab = {"[PAD]": 0} | {f"[unused{i}]": i for i in range(1, 100)}
    vocab |= {"[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    vocab |= {piece: 104 + i for i, piece in enumerate(pieces)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 101), ("[SEP]", 102)],
    )
    tokenizer.add_special_tokens(list(specials))
    return tokenizer


def save_model(model: torch.nn.Module, directory: Path) -> Path:
    perturb(model).save_pretrained(directory)
    return directory


def gpt2_checkpoint(directory: Path) -> Path:
    tokenizer = bpe_tokenizer()
    eos = tokenizer.token_to_id(EOS)
    config = transformers.GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=MAX_LEN,
        n_embd=32,
        n_layer=2,
        n_head=4,
        activation_function="gelu_new",  # GPT-2's tanh GELU
        bos_token_id=eos,
        eos_token_id=eos,
    )
    _save_tokenizer(tokenizer, directory, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    return save_model(transformers.GPT2LMHeadModel(config), directory)


def llama_checkpoint(directory: Path) -> Path:
    tokenizer = bpe_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention
        max_position_embeddings=MAX_LEN,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.token_to_id(EOS),
        pad_token_id=None,
    )
    _save_tokenizer(tokenizer, directory, eos_token=EOS)
    return save_model(transformers.LlamaForCausalLM(config), directory)


def bert_checkpoint(directory: Path, architecture: str = "BertForPreTraining") -> Path:
    tokenizer = bert_base_wordpiece()
    config = transformers.BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_LEN,
        type_vocab_size=2,
        pad_token_id=0,
        num_labels=2,
    )
    specials = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]") | {
        "mask_token": "[MASK]"
    }
    _save_tokenizer(tokenizer, directory, **specials)
    return save_model(getattr(transformers, architecture)(config), directory)
