"""Decoding internals: building blocks (``blocks``), generation loops (``engines``), exit policies
(``policies``). The public face, with decoder names and records, is ``lite.decoding``."""
