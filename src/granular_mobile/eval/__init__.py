"""Evaluation of PyTorch models: tiled inference, PSNR/SSIM, FAB, BitOPs."""
from .evaluate import EvalResult, benchmark_pairs, evaluate_dataset

__all__ = ["EvalResult", "benchmark_pairs", "evaluate_dataset"]
