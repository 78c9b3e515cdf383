"""Tiled inference runtime (no torch needed for the onnxruntime / tflite backends)."""
from .batch import Batch, BatchResult, upscale_files
from .upscaler import Report, Upscaler

__all__ = ["Batch", "BatchResult", "Report", "Upscaler", "upscale_files"]
