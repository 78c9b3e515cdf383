"""Tiled inference runtime (no torch needed for the onnxruntime / tflite backends)."""
from .upscaler import Report, Upscaler

__all__ = ["Report", "Upscaler"]
