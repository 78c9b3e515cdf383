"""Evaluation of PyTorch models: tiled inference, PSNR/SSIM, FAB, BitOPs."""
from ..data.benchmark import benchmark_pairs
from .evaluate import EvalResult, evaluate_dataset

__all__ = ["EvalResult", "benchmark_pairs", "evaluate_dataset"]
