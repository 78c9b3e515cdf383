"""Memory is bounded by the tile work, not the image (slow: ~1530 tiles)."""
import os
import subprocess
import sys

import pytest

CODE = """
import resource, numpy as np
from granular_mobile.runtime import Upscaler
up = Upscaler.load("default", backend="onnxruntime", threads=2)
img = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
sr, rep = up(img)
assert sr.shape == (6000, 8000, 3), sr.shape
print("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tiles", rep.tiles)
"""


@pytest.mark.slow
def test_4000x3000_peaks_below_3gb():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=3600)
    assert r.returncode == 0, r.stderr[-2000:]
    peak = float(r.stdout.split("peak_rss_mb")[1].split()[0])
    print(r.stdout)
    assert peak < 3 * 1024, peak
