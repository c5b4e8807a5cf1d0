"""Decoders: greedy generation that exits at intermediate layers, by name, and the records it writes.

- ``specs``: decoder names (the workflow's ``{decoder}`` wildcard) -> ``DecoderSpec``; thresholds.
- ``dispatch``: ``decode``, the one entry that runs any ``DecoderSpec``; ``trace``.
- ``records``: generation and trace records over an eval set (docs/records.md).
- ``agreement``: HF ``generate``'s tokens and how closely a decoder follows its reference.
- ``generation``: ``Generation``, what a decoder returns per prompt, and the ``Collector``.
- ``engines``: the KV-cached fixed-layer loop and the paper's no-cache early-exit loop.
- ``cached``: the early exit with a KV cache and exact catch-up.
- ``speculative``: self-speculative decoding (draft, verify, commit).
- ``slots``: the fixed-column cache, block runner and ``Meter`` of ``cached`` and ``speculative``.
- ``policies``: which rows exit at a checkpoint.
- ``blocks``: ``run_layers`` and ``exit_head``, the two building blocks of every decoder.
"""
