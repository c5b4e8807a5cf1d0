"""Decoder names: the workflow's ``{decoder}`` wildcard and what a name alone says about its
decoder (``decoder_name`` -> ``DecoderName``: family, layer, sweep scale, threshold set, reference).
The planner, the rules and the report read decoders through this module; it imports nothing that
needs torch, so they stay light. ``lite.decoders.specs`` builds the runnable ``DecoderSpec`` from a
name; the names themselves are described there.
"""

from __future__ import annotations

import dataclasses
import re

from lite.io import InputError

# dynamic exit by name -> the threshold set the workflow passes it (configured or calibrated,
# lite.plan.Plan.calibrated_kinds); bare "dynamic" takes its thresholds from the command line only
_THRESHOLD_SETS = {
    "dynamic": None,
    "dynamic-paper": "paper",
    "dynamic-aggressive": "aggressive",
    "dynamic-calibrated": "calibrated",
}
DYNAMIC_NAMES = tuple(_THRESHOLD_SETS)
BASELINE_NAMES = ("random-half", "random-k", "sequential")
VALID_NAMES = (
    "final",
    "fixed-L{k}",
    *DYNAMIC_NAMES,
    "dynamic-x{k}",
    "<dynamic or sweep name>[-probe|-saturation][-copy]",
    *BASELINE_NAMES,
    "speculative-L{E}",
    "speculative-adaptive",
)
# Options of a KV-cached dynamic exit (or sweep point), as suffixes of its name, in this order:
# ``-probe`` / ``-saturation``: an exit gate decides where the head is read (lite.decoders.gates);
# ``-copy``: exited tokens' deeper keys/values projected from their exit state (CALM), not caught up.
GATE_SUFFIXES = ("probe", "saturation")
FILL_SUFFIXES = ("copy",)
_GATES, _FILLS = "|".join(GATE_SUFFIXES), "|".join(FILL_SUFFIXES)
_OPTIONS = re.compile(rf"(?P<base>.+?)(?:-(?P<gate>{_GATES}))?(?:-(?P<fill>{_FILLS}))?")
_FIXED = re.compile(r"fixed-L(\d+)")
_SPECULATIVE = re.compile(r"speculative-L(\d+)")
_SWEEP = re.compile(r"dynamic-x(\d+(?:\.\d+)?)")
SWEEP_THRESHOLD_SET = "paper"  # the threshold set the sweep's points scale
# The names the workflow generates: its {decoder} wildcard (bare "dynamic" and speculative decoding
# are for the command line and the latency benchmark).
WORKFLOW_DECODERS = "|".join(
    [
        "final",
        _FIXED.pattern,
        "(?:"
        + "|".join([*(re.escape(name) for name in DYNAMIC_NAMES if name != "dynamic"), _SWEEP.pattern])
        + f")(?:-(?:{_GATES}))?(?:-(?:{_FILLS}))?",
        *(re.escape(name) for name in BASELINE_NAMES),
    ]
)
DRAFT_TOKENS = 4  # drafts per verification round unless told (LayerSkip used 4-12)
FAMILIES = ("final", "fixed", "dynamic", "sweep", "baseline", "speculative")


@dataclasses.dataclass(frozen=True)
class DecoderName:
    """What a decoder's name alone says about it, without a model: what the workflow, the report
    and the benchmark ask of a decoder they do not run. ``decoder_name`` parses one."""

    name: str
    family: str  # one of FAMILIES
    layer: int | None = None  # fixed-L{k}: k; speculative-L{E}: E (as named: decoder_from_name checks it)
    scale: float | None = None  # a sweep point dynamic-x{k}: k
    # the threshold set the workflow passes it: paper, aggressive or calibrated (a sweep point: the
    # paper's, scaled by ``scale``); None where it needs none or takes them from the command line
    threshold_set: str | None = None
    gate: str = "head"  # what decides where the head is read: head (every checkpoint), probe, saturation
    fill: str = "exact"  # exited tokens' deeper keys/values: exact (catch-up) or copy (CALM)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"DecoderName.family must be one of {', '.join(FAMILIES)}, got {self.family!r}")

    @property
    def option(self) -> str | None:
        """The options beyond the paper's exact decoder, as named (``probe-copy``, ``copy``, ...),
        or None for the paper's decoder itself."""
        parts = [part for part in (self.gate, self.fill) if part not in ("head", "exact")]
        return "-".join(parts) or None

    @property
    def base(self) -> str:
        """The name without its options: the paper's decoder with the same thresholds."""
        return self.name if self.option is None else self.name[: -len(self.option) - 1]

    @property
    def thresholded(self) -> bool:
        """Exits where its confidence reaches a threshold: dynamic exit and the sweep's points."""
        return self.family in ("dynamic", "sweep")

    @property
    def early_exit(self) -> bool:
        """A policy picks each token's exit among the checkpoints: the thresholds, or a baseline's."""
        return self.thresholded or self.family == "baseline"

    @property
    def label(self) -> str:
        """What the quality/cost frontier calls it: a dynamic exit its threshold set (paper,
        aggressive, calibrated), any other decoder its family (sweep, baseline, ...); with its
        options after it (``calibrated probe-copy``)."""
        if self.family == "dynamic" and self.threshold_set is not None:
            label = self.threshold_set
        else:
            label = self.family
        return label if self.option is None else f"{label} {self.option}"

    def cached(self, kv_cache: bool) -> bool:
        """Whether it decodes with a KV cache: final, fixed exits, speculative decoding and the
        options always, the paper's early exits when ``kv_cache`` asks for it (else the paper's
        loop recomputes the prefix)."""
        return kv_cache or not self.early_exit or self.option is not None

    def meters(self, kv_cache: bool) -> bool:
        """Whether ``lite.decoders.dispatch.decode`` can count its work with a ``Meter``: the decoders
        that run in fixed columns (the KV-cached early exits, speculative decoding). The others'
        work is ``lite.flops``' accounting of their exits."""
        return self.family == "speculative" or (self.early_exit and self.cached(kv_cache))

    def reference(self, kv_cache: bool) -> str | None:
        """The decoder whose tokens it must reproduce exactly: ``hf-generate`` (HF ``generate``) for
        ``final`` and speculative decoding, ``nocache`` (the paper's loop) for a KV-cached early
        exit; None where there is no such promise (the options change exits or states)."""
        if self.family in ("final", "speculative"):
            return "hf-generate"
        return "nocache" if kv_cache and self.early_exit and self.option is None else None


def decoder_name(name: str) -> DecoderName:
    """Parse a decoder name (see the module docstring); unknown names raise ``InputError`` listing
    the valid ones. A layer in the name is read, not checked: ``decoder_from_name`` checks it."""
    options = _OPTIONS.fullmatch(name)
    if options is not None and (options["gate"] or options["fill"]):
        base = decoder_name(options["base"])
        if not base.thresholded or base.option is not None:
            raise InputError(
                f"decoder {name!r}: options -probe, -saturation and -copy follow a dynamic or sweep "
                f"decoder's name, not {options['base']!r}"
            )
        return dataclasses.replace(
            base, name=name, gate=options["gate"] or "head", fill=options["fill"] or "exact"
        )
    fixed, draft, sweep = _FIXED.fullmatch(name), _SPECULATIVE.fullmatch(name), _SWEEP.fullmatch(name)
    if name == "final":
        return DecoderName(name, "final")
    if fixed is not None:
        return DecoderName(name, "fixed", layer=int(fixed.group(1)))
    if name in _THRESHOLD_SETS:
        return DecoderName(name, "dynamic", threshold_set=_THRESHOLD_SETS[name])
    if sweep is not None:
        return DecoderName(name, "sweep", scale=float(sweep.group(1)), threshold_set=SWEEP_THRESHOLD_SET)
    if name in BASELINE_NAMES:
        return DecoderName(name, "baseline")
    if draft is not None:
        return DecoderName(name, "speculative", layer=int(draft.group(1)))
    if name == "speculative-adaptive":  # its draft layers are chosen among given ones, not named
        return DecoderName(name, "speculative")
    raise InputError(f"unknown decoder {name!r}; valid: {', '.join(VALID_NAMES)}")
