"""Image reading/writing (OpenCV), RGB HWC uint8 in memory. No torch."""
from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError, OutputError

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
    """Write an RGB (or grey, grey+alpha HxWx2, or RGBA) uint8 image atomically (temp file +
    rename): an interrupted run leaves no partial file."""
    p = Path(path)
    ext = p.suffix.lower() or ".png"
    if img.ndim == 3 and img.shape[2] == 2:
        if ext == ".png":  # OpenCV's encoders take no grey+alpha; PNG has it (colour type 4)
            write_bytes_atomic(p, png_grey_alpha(img))
            return
        img = np.concatenate([np.repeat(img[..., :1], 3, axis=2), img[..., 1:]], axis=2)  # elsewhere: RGBA, R = G = B
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise OutputError(f"cannot encode an image as '{ext}' for '{p}'; use one of {list(IMAGE_EXTS)}")
    write_bytes_atomic(p, buf.tobytes())


def png_grey_alpha(img: np.ndarray) -> bytes:
    """An 8-bit grey+alpha PNG (colour type 4) of an HxWx2 uint8 image: rows unfiltered,
    deflated (zlib level 6)."""
    h, w = img.shape[:2]
    raw = np.concatenate([np.zeros((h, 1), np.uint8), np.ascontiguousarray(img, np.uint8).reshape(h, w * 2)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 4, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def png_colour_type(data: bytes) -> int | None:
    """The colour type in a PNG's IHDR (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 25:
        return data[25]
    return None


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file through a temp file in its folder and a rename (no partial file on failure)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write '{p}': {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, default_mode())
        os.replace(tmp, p)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write '{p}': {e.strerror or e}") from e
        raise


def check_output(path: str | os.PathLike[str], what: str, force: bool, image: bool = True) -> Path:
    """Refuse, before any work, an output file that could not be written: an extension OpenCV
    cannot encode (images), a folder in its place, an existing file without ``force``, a parent
    that is a file, or a folder without write permission. Creates nothing."""
    p = Path(path)
    if image:
        ext = p.suffix.lower()
        if not ext:
            raise OutputError(f"{what} '{p}' has no image extension; use one of {list(IMAGE_EXTS)}")
        if ext not in IMAGE_EXTS or not cv2.haveImageWriter(f"x{ext}"):
            raise OutputError(f"{what} '{p}': '{p.suffix}' is not an image format this build can write; "
                              f"use one of {list(IMAGE_EXTS)}")
    if p.is_dir():
        raise OutputError(f"{what} '{p}' is a folder; give a file path")
    if p.exists() and not force:
        raise OutputError(f"{what} '{p}' exists; use ``force`` to overwrite")
    check_folder(p.parent, f"{what} '{p}'")
    return p


def check_folder(folder: str | os.PathLike[str], what: str) -> Path:
    """A folder that exists or can be created, and where files can be written (probed: a
    permission bit says nothing on a read-only mount, or to root). Creates nothing."""
    d = Path(folder)
    a = d
    while not a.exists() and a != a.parent:  # nearest existing ancestor: the folder write_rgb creates from
        a = a.parent
    if not a.is_dir():
        raise OutputError(f"{what}: '{a}' is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=a, prefix=".gdq-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{what}: cannot write in folder '{a}' ({e.strerror or e})") from e
    return d


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
    """Read an 8-bit image keeping its channels: HxW (grey), HxWx2 (grey+alpha PNG), HxWx3 (RGB)
    or HxWx4 (RGBA), uint8,
    turned upright as its EXIF orientation says (as phone galleries show it).

    16-bit and floating-point images are refused with a message (the models are trained
    on 8-bit images and their output is 8-bit)."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image '{p}' does not exist")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read '{p}': {e.strerror or e}") from e
    # IMREAD_UNCHANGED keeps alpha and depth, and for that OpenCV skips the EXIF orientation:
    # it is applied below
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    except cv2.error as e:  # e.g. a header claiming more pixels than OpenCV decodes (a 40-line message)
        why = ("its header claims more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS, 2^30 by default)"
               if "CV_IO_MAX_IMAGE_PIXELS" in str(e) else str(e).strip().splitlines()[-1])
        raise ImageError(f"cannot decode image '{p}': {why}") from None
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
        if png_colour_type(data) == 4:  # OpenCV reads a grey+alpha PNG as RGBA with R = G = B
            img = np.stack([img[..., 0], img[..., 3]], axis=2)
    elif img.ndim != 2:
        raise ImageError(f"'{p}' has an unsupported shape {img.shape}")
    return np.ascontiguousarray(orient(img, exif_orientation(data)))


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an HxW[xC] array: what a viewer shows."""
    if orientation in (5, 6, 7, 8):
        img = img.swapaxes(0, 1)  # transpose, then the flips below make the rotations
    if orientation in (2, 3, 6, 7):
        img = img[:, ::-1]
    if orientation in (3, 4, 7, 8):
        img = img[::-1]
    return img


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8; 1 when absent or unreadable) of a JPEG, PNG (eXIf) or
    WebP (EXIF chunk). Parsed here: OpenCV applies it only when it may drop alpha and depth."""
    tiff = _exif_blob(data)
    if tiff is None or len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    e = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(e + "I", tiff, 4)
        (n,) = struct.unpack_from(e + "H", tiff, ifd)
        for i in range(n):
            tag, typ, _, value = struct.unpack_from(e + "HHIH", tiff, ifd + 2 + 12 * i)
            if tag == 0x0112 and typ == 3:
                return value if 1 <= value <= 8 else 1
    except struct.error:
        pass
    return 1


def _exif_blob(data: bytes) -> bytes | None:
    if data[:2] == b"\xff\xd8":  # JPEG: segments up to the scan; EXIF is an APP1 "Exif\0\0"
        i = 2
        while i + 4 <= len(data) and data[i] == 0xFF:
            marker, (size,) = data[i + 1], struct.unpack_from(">H", data, i + 2)
            if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
                return data[i + 10:i + 2 + size]
            if marker in (0xDA, 0xD9):
                break
            i += 2 + size
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        i = 8
        while i + 8 <= len(data):
            (size,), kind = struct.unpack_from(">I", data, i), data[i + 4:i + 8]
            if kind == b"eXIf":
                return data[i + 8:i + 8 + size]
            if kind in (b"IDAT", b"IEND"):
                break
            i += 12 + size
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        i = 12
        while i + 8 <= len(data):
            kind, (size,) = data[i:i + 4], struct.unpack_from("<I", data, i + 4)
            if kind == b"EXIF":
                blob = data[i + 8:i + 8 + size]
                return blob[6:] if blob.startswith(b"Exif\x00\x00") else blob
            i += 8 + size + (size & 1)
    return None
