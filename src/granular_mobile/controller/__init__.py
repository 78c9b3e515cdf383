"""The per-tile bit controller: GBC (granularity gate) followed by E2B (entropy to bit)."""
from .e2b import E2B, tile_entropy
from .gbc import GBC

__all__ = ["E2B", "GBC", "tile_entropy"]
