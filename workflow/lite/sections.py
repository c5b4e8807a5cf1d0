"""Config sections that a command and the workflow share, each declared once as a dataclass of
``setting()`` fields: ``generation`` (``lite generate``, ``lite trace``, and ``lite latency``'s device
and dtype), ``bench`` (``lite latency``) and ``probes`` (``lite probes``). The commands build their
options from these, and ``lite.plan.Plan`` fills the config's sections from the same defaults.
Nothing here imports torch, so the planner and the analysis jobs can read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lite.decoders.names import DRAFT_TOKENS, decoder_name
from lite.flags import setting

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class GenerationSettings:
    """The ``generation`` config section's settings of ``lite generate`` and ``lite trace`` (and
    ``lite latency``'s device and dtype), declared once: the commands' options and the workflow's
    defaults come from here. The section's ``shards`` and ``decoders`` are the workflow's own."""

    max_new_tokens: int = setting(64, help="longest response in tokens")
    batch_size: int = setting(8, help="prompts decoded together")
    seed: int = setting(0, help="seed of the random baselines and torch")
    kv_cache: bool = setting(
        False,
        help="early-exit decoders: KV cache with exact catch-up (same records as the paper's loop, faster)",
    )
    device: str = setting(
        "cpu",
        choices=DEVICES,
        help="auto: the GPU when the job has one, else the CPU; cuda: a GPU or an error",
    )
    dtype: str = setting(
        "float32",
        choices=DTYPES,
        help="weights, activations and KV caches (float32: decoders are bitwise exact)",
    )
    agreement_prompts: int = setting(
        0,
        help="lite generate: also decode the first K records with the reference decoder and record "
        "the token agreement in the config (0: no check)",
    )


DEVICE_SETTINGS = ("device", "dtype")


DECODERS = ("hf-generate", "final", "dynamic-nocache", "dynamic-cached")  # + speculative-L{E}
# + this and a draft layer E: transformers' own LayerSkip self-speculation (``assistant_early_exit=E``)
HF_LAYERSKIP = "hf-layerskip-L"
EOS_MODES = ("forbid", "ignore")


@dataclass(frozen=True)
class LatencyConfig:
    """Settings of one benchmark run: ``lite latency``'s options and the ``bench`` config section's
    defaults (the section's ``evalset``, ``category`` and ``thresholds`` are the workflow's own:
    which prompts and thresholds the rule passes)."""

    prompts: int = setting(4, help="eval records used (the first ones), decoded in consecutive batches")
    batch_sizes: tuple[int, ...] = setting((1,), help="rows per batch, each dividing --prompts, e.g. 1,4,16")
    max_new_tokens: int = setting(256, help="tokens per response, the same for every decoder (see --eos)")
    repeats: int = setting(3, help="timed runs per decoder; the table reports the median")
    draft_layers: tuple[int, ...] = setting((2,), help="speculative draft layers E, e.g. 2,4")
    draft_tokens: int = setting(DRAFT_TOKENS, help="drafts per verification round")
    draft_threshold: float | None = setting(
        None, help="stop drafting below this draft confidence (default off: always --draft-tokens)"
    )
    widths: tuple[int, ...] = setting(
        (1,), help="widen factors to measure, e.g. 1,4 (1: the model as trained)"
    )
    threads: int = setting(1, help="torch intra-op threads (the machine is shared; 1 keeps timings steady)")
    seed: int = setting(0, help="torch seed")
    eos: str = setting(
        "forbid",
        choices=EOS_MODES,
        help="forbid: EOS is never chosen, as HF's min_new_tokens; ignore: decode on past it",
    )

    exits: tuple[str, ...] = setting(
        (),
        parse=lambda text: tuple(name for name in text.split(",") if name),
        help="dynamic decoders of the workflow and their options, timed with a KV cache beside the "
        "rest, e.g. dynamic-calibrated-probe-copy (each with --exit-thresholds)",
    )

    def __post_init__(self) -> None:
        for name in self.exits:
            if not decoder_name(name).thresholded:
                raise ValueError(f"LatencyConfig.exits: {name!r} is not a dynamic decoder or sweep point")
        for name in ("prompts", "max_new_tokens", "repeats", "draft_tokens", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LatencyConfig.{name} must be an integer >= 1, got {value!r}")
        if not self.draft_layers or any(layer < 1 for layer in self.draft_layers):
            raise ValueError(f"LatencyConfig.draft_layers must be layers >= 1, got {self.draft_layers!r}")
        if not self.batch_sizes or any(b < 1 or self.prompts % b for b in self.batch_sizes):
            raise ValueError(
                f"LatencyConfig.batch_sizes must each divide prompts={self.prompts}, got {self.batch_sizes!r}"
            )
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"LatencyConfig.widths must be factors >= 1, got {self.widths!r}")
        if self.eos not in EOS_MODES:
            raise ValueError(f"LatencyConfig.eos must be one of {', '.join(EOS_MODES)}, got {self.eos!r}")
        if self.draft_threshold is not None and not 0.0 <= self.draft_threshold <= 1.0:
            raise ValueError(f"LatencyConfig.draft_threshold must be in [0, 1], got {self.draft_threshold!r}")

    def decoders(self) -> list[str]:
        """The benchmark's decoders, in the table's order."""
        return [
            *DECODERS,
            *self.exits,
            *(f"speculative-L{layer}" for layer in self.draft_layers),
            "speculative-adaptive",
            *(f"{HF_LAYERSKIP}{layer}" for layer in self.draft_layers),
        ]

    def runs(self) -> list[tuple[int, str]]:
        """(batch size, decoder) pairs measured, in the table's order: every decoder at every batch
        size, but HF's LayerSkip at batch size 1 only (HF's assisted generation, which it is,
        decodes one prompt at a time and refuses a batch)."""
        return [
            (batch, name)
            for batch in self.batch_sizes
            for name in self.decoders()
            if batch == 1 or not name.startswith(HF_LAYERSKIP)
        ]


@dataclass(frozen=True)
class ProbeSettings:
    """The ``probes`` config section: ``lite probes``' cut-off of the exit gates (lite.probes)."""

    recall: float = setting(0.95, help="share of the agreeing positions each gate passes, in (0, 1]")
