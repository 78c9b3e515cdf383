"""Training (full precision) and quantization-aware fine-tuning (Granular-DQ)."""
from .calibration import calibrate_e2b, calibrate_gate
from .trainer import TrainConfig, resumed_config, train

__all__ = ["TrainConfig", "calibrate_e2b", "calibrate_gate", "resumed_config", "train"]
