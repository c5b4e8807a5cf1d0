"""Base models and tokenizers: build the tiny LLaMA, load and save HF model folders.

A model folder is what ``save_pretrained`` writes (config, safetensors weights, tokenizer files);
every later stage loads it with ``load_model`` / ``load_tokenizer`` (or plain ``from_pretrained``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from lite.architectures import adapter

# Special tokens of the tiny tokenizer. Unusual spellings so that ordinary instruction text never
# contains them by accident (the tokenizer would otherwise turn them into control tokens).
BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"
SPECIAL_TOKENS = (BOS, EOS, PAD, UNK)
# Every byte is in ByteLevel's initial alphabet, so the vocabulary can never be smaller than this.
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny LLaMA trained from scratch for the embedded default."""

    num_layers: int = 8  # decoder layers N; checkpoints are chosen among 1..N
    hidden_size: int = 128  # with a 4x MLP: ~262k weights per layer (see train_tokenizer)
    num_heads: int = 4  # head_dim = hidden / heads must be even for RoPE
    num_kv_heads: int = 4  # < num_heads gives grouped-query attention like LLaMA-2-70B
    intermediate_size: int = 512  # MLP width; LLaMA uses ~2.7x hidden with SwiGLU, 4x keeps it round
    vocab_size: int = 1280  # requested BPE vocabulary; the head costs ~0.65 of a layer at 128/512
    max_positions: int = 512  # RoPE table length; must cover the longest training example

    def __post_init__(self) -> None:
        for name in (
            "num_layers",
            "hidden_size",
            "num_heads",
            "num_kv_heads",
            "intermediate_size",
            "vocab_size",
            "max_positions",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TinyModelSpec.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyModelSpec.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"TinyModelSpec.num_heads: head_dim {self.hidden_size // self.num_heads} must be even (RoPE)"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"TinyModelSpec.num_kv_heads ({self.num_kv_heads}) must divide num_heads ({self.num_heads})"
            )
        if self.vocab_size < MIN_VOCAB:
            raise ValueError(
                f"TinyModelSpec.vocab_size must be >= {MIN_VOCAB} (bytes + specials), got {self.vocab_size}"
            )


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a ByteLevel BPE tokenizer on ``texts`` with bos/eos/pad/unk special tokens.

    Why this tokenizer: it trains offline in about a second (nothing to download), ByteLevel covers
    every byte so no text is ever unknown, and the vocabulary size is a free knob. The knob matters
    for early exit: each confidence check costs norm + LM head (hidden x vocab). For LLaMA-2-7B that
    is ~0.65 of a decoder layer (4096 x 32000 vs ~202M weights per layer); with hidden 128 and an
    MLP of 512 a layer has ~262k weights, so a vocabulary of ~1.3k (1280) keeps the same ratio and
    the tiny model's FLOP savings mean what the paper's mean.

    The wrapped tokenizer adds BOS when called with ``add_special_tokens=True`` (LLaMA's convention);
    ``lite.data`` builds its sequences with explicit special tokens instead.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < MIN_VOCAB:
        raise ValueError(
            f"vocab_size must be >= {MIN_VOCAB} (256 bytes + {len(SPECIAL_TOKENS)} specials), "
            f"got {vocab_size}"
        )
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )


def build_tiny_model(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A seeded random LLaMA of shape ``spec`` for ``tokenizer`` (fp32, untied head, sdpa attention).

    The head is untied like LLaMA-2's, so the shared exit head is its own parameter. The model's
    vocabulary is the tokenizer's real size (BPE may stop short of ``spec.vocab_size`` on a small
    corpus), never larger than requested.
    """
    vocab = len(tokenizer)
    if vocab > spec.vocab_size:
        raise ValueError(
            f"tokenizer has {vocab} tokens, more than TinyModelSpec.vocab_size={spec.vocab_size}"
        )
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(
                f"tokenizer has no {name.removesuffix('_id')}; the tiny model needs bos, eos and pad"
            )
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    # The decoders rely on sdpa's causal handling of mask=None for unpadded square blocks.
    config._attn_implementation = "sdpa"
    # fork_rng: seeding here must not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(torch.float32).eval()


def decoder_layer_count(model: PreTrainedModel) -> int:
    """Number of decoder layers N (layers are numbered 1..N in this project)."""
    return len(_unwrap(model).model.layers)


def load_model(
    path_or_hub_id: str | os.PathLike, dtype: str = "float32", device: str | torch.device = "cpu"
) -> PreTrainedModel:
    """Load a causal LM folder (or a hub id already in the local cache) in ``dtype`` onto ``device``,
    eval mode. Decoders make every tensor on the device of the weights, so this is the only move.

    Attention is sdpa where the family supports it, else eager (Gemma 2: sdpa cannot soft-cap).
    A family the decoders cannot run exactly is refused here, at the first stage that loads it
    (``lite.architectures``), with a message naming it.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    # no attn_implementation: transformers picks sdpa where the family supports it, else eager
    model = AutoModelForCausalLM.from_pretrained(str(path_or_hub_id), dtype=_DTYPES[dtype])
    adapter(model)  # raises UnsupportedArchitecture for a family the decoders cannot run exactly
    return model.to(device).eval()


def load_tokenizer(path_or_hub_id: str | os.PathLike) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(path_or_hub_id))
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{path_or_hub_id}: tokenizer has no eos token; responses could never end")
    if tokenizer.pad_token_id is None:
        # LLaMA-2 ships without a pad token; padding positions are masked anyway, so EOS serves.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: str | os.PathLike) -> None:
    """``save_pretrained`` plus a ``tokenizer_class`` older transformers can load.

    transformers 5.x writes ``"tokenizer_class": "TokenizersBackend"``, which 4.x cannot resolve
    (its tokenizer registry has no such class); ``PreTrainedTokenizerFast`` loads in both.
    """
    tokenizer.save_pretrained(str(out_dir))
    config_file = Path(out_dir) / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | os.PathLike
) -> Path:
    """Write model + tokenizer to ``out_dir`` atomically: a temp folder beside it, then a rename.

    An existing ``out_dir`` is replaced only once the new folder is complete, so a crash leaves
    either the old folder or none, never a half-written one.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(str(tmp))
        save_tokenizer(tokenizer, tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    # DDP / DeepSpeed wrappers keep the real model under .module
    while hasattr(model, "module") and not hasattr(model, "model"):
        model = model.module
    return model
