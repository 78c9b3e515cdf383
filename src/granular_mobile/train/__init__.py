"""Training (full precision) and quantization-aware fine-tuning (Granular-DQ)."""
from .trainer import TrainConfig, calibrate_e2b, calibrate_gate, train

__all__ = ["TrainConfig", "calibrate_e2b", "calibrate_gate", "train"]
