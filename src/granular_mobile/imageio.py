"""Image reading/writing (OpenCV), RGB HWC uint8 in memory. No torch."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an 8-bit RGB image (HWC uint8). Grayscale is expanded to 3 channels, alpha dropped."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image '{p}' does not exist")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageError(f"cannot decode image '{p}' (corrupt or unsupported format)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | os.PathLike[str], img: np.ndarray) -> None:
    """Write an RGB (or grey, or RGBA) uint8 image atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ext = p.suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise ImageError(f"cannot encode an image as '{ext}' for '{p}'; use one of {list(IMAGE_EXTS)}")
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.chmod(tmp, default_mode())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_mode() -> int:
    """0o666 minus the umask: what a plain open() would give (mkstemp uses 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    d = Path(folder)
    if not d.is_dir():
        raise ImageError(f"'{d}' is not a folder")
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an 8-bit image keeping its channels: HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA), uint8.

    16-bit and floating-point images are refused with a message (the models are trained
    on 8-bit images and their output is 8-bit)."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image '{p}' does not exist")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f"cannot decode image '{p}' (corrupt, empty or unsupported format)")
    if img.dtype != np.uint8:
        raise ImageError(f"'{p}' is a {img.dtype} image; only 8-bit images are supported: convert it to 8-bit first "
                         "(e.g. `convert in.png -depth 8 out.png`)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    elif img.ndim != 2:
        raise ImageError(f"'{p}' has an unsupported shape {img.shape}")
    return img
