"""Safe image reading and frame validation: every image enters edgeskin here, as RGB uint8 (H, W, 3).

Files and bytes go through :func:`read_image` / :func:`decode_image`, which

1. refuse empty data and anything that is not a JPEG, PNG, BMP, TIFF or WebP by its signature;
2. read the pixel size from the header (PNG IHDR, JPEG SOF, BMP info header, TIFF IFD0, WebP
   VP8/VP8L/VP8X) and refuse images that are too small or too large *before decoding* (a 30000x30000
   PNG of a few hundred bytes is a decompression bomb);
3. refuse truncated JPEG and PNG files (no end-of-image marker / IEND chunk) instead of returning a
   partly grey picture, as some decoders do;
4. decode with OpenCV at the file's own bit depth, honouring the EXIF orientation; CMYK JPEGs are
   converted to RGB by the decoder;
5. convert the result with the same rules as :func:`validate_frame`.

Arrays from cameras and API users go through :func:`validate_frame`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from edgeskin.errors import ImageError, ImageTooLargeError, ImageTooSmallError

__all__ = [
    "DEFAULT_MIN_SIZE",
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "ImageHeader",
    "probe_image",
    "read_image",
    "decode_image",
    "validate_frame",
    "require_rgb_uint8",
]

DEFAULT_MIN_SIZE = 32
DEFAULT_MAX_PIXELS = 50_000_000
SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WebP")
_EXPECTED = "a JPEG, PNG, BMP, TIFF or WebP image"

# Recognised but not accepted: named in the error so the user knows what to convert.
_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"v/1\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"%PDF", "PDF"),
)


class ImageHeader(NamedTuple):
    """What the header of an image file says, read without decoding pixels."""

    format: str
    width: int
    height: int


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ImageError("corrupt PNG: the first chunk is not IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_scan_start(data: bytes) -> tuple[int, int, int]:
    """Walk JPEG marker segments up to the first scan; return (width, height, offset of the scan data)."""
    size: tuple[int, int] | None = None
    pos = 2
    while True:
        while data[pos] == 0xFF and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if data[pos] != 0xFF:  # stray bytes between segments: skip them, as libjpeg does
            pos = data.find(b"\xff", pos)
            if pos < 0:
                raise ImageError("corrupt JPEG: no frame header and image data")
            continue
        marker = data[pos + 1]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            pos += 2
            continue
        if marker == 0xD9:
            raise ImageError("corrupt JPEG: end-of-image marker before any image data")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            raise ImageError(f"corrupt JPEG: segment length {length} at byte {pos}")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size = (width, height)
        if marker == 0xDA:  # SOS: entropy-coded data follows the header
            if size is None:
                raise ImageError("corrupt JPEG: image data before the frame header (no SOF marker)")
            return size[0], size[1], pos + 2 + length
        pos += 2 + length


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # negative height = top-down rows


def _tiff_size(data: bytes) -> tuple[int, int]:
    endian = "<" if data[:2] == b"II" else ">"
    (magic,) = struct.unpack(endian + "H", data[2:4])
    if magic != 42:
        raise ImageError("unsupported TIFF variant (BigTIFF); expected a classic TIFF")
    (ifd,) = struct.unpack(endian + "I", data[4:8])
    (count,) = struct.unpack(endian + "H", data[ifd : ifd + 2])
    tags: dict[int, int] = {}
    for i in range(count):
        entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, kind, _ = struct.unpack(endian + "HHI", entry[:8])
        if tag in (256, 257):
            value = struct.unpack(endian + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
            tags[tag] = value
    if 256 not in tags or 257 not in tags:
        raise ImageError("corrupt TIFF: no ImageWidth/ImageLength tags in the first directory")
    return tags[256], tags[257]


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageError("corrupt WebP: bad VP8 start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ImageError("corrupt WebP: bad VP8L signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise ImageError(f"corrupt WebP: unknown first chunk {chunk!r}")


def probe_image(data: bytes) -> ImageHeader:
    """Identify an image by its signature and read its pixel size from the header, without decoding.

    Args:
        data: The encoded file contents.

    Returns:
        The format name (one of :data:`SUPPORTED_FORMATS`) and the stored width and height (before
        any EXIF rotation).

    Raises:
        ImageError: empty data, not an image, an unsupported format or a corrupt header.
    """
    if not data:
        raise ImageError("empty file: expected an image, got 0 bytes")
    if data[:3] == b"\xff\xd8\xff":
        fmt = "JPEG"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        fmt = "PNG"
    elif data[:2] == b"BM":
        fmt = "BMP"
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        fmt = "TIFF"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        fmt = "WebP"
    else:
        for signature, name in _OTHER_SIGNATURES:
            if data.startswith(signature):
                raise ImageError(f"unsupported image format {name}: expected {_EXPECTED}")
        raise ImageError(f"not an image: expected {_EXPECTED}, got data starting with {bytes(data[:8])!r}")
    readers = {"JPEG": lambda d: _jpeg_scan_start(d)[:2], "PNG": _png_size, "BMP": _bmp_size, "TIFF": _tiff_size}
    try:
        width, height = readers.get(fmt, _webp_size)(data)
    except (IndexError, struct.error):
        raise ImageError(f"corrupt or truncated {fmt}: the header ends early") from None
    return ImageHeader(fmt, int(width), int(height))


def _check_complete(data: bytes, fmt: str) -> None:
    """Refuse JPEG/PNG files that end before their end marker (truncated downloads, partial writes)."""
    try:
        if fmt == "JPEG":
            scan = _jpeg_scan_start(data)[2]
            # Inside entropy-coded data 0xFF is stuffed as FF 00 and restart markers are FF D0-D7, so
            # the first FF D9 after the first scan is the end-of-image marker.
            if data.find(b"\xff\xd9", scan) < 0:
                raise ImageError("truncated JPEG: the file ends before its end-of-image marker")
        elif fmt == "PNG":
            pos = 8
            while pos + 8 <= len(data):
                (length,) = struct.unpack(">I", data[pos : pos + 4])
                if data[pos + 4 : pos + 8] == b"IEND":
                    return
                pos += 12 + length
            raise ImageError("truncated PNG: the file ends before its IEND chunk")
    except (IndexError, struct.error):
        raise ImageError(f"truncated {fmt}: the file ends inside its headers") from None


def _check_size(width: int, height: int, min_size: int, max_pixels: int, when: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"corrupt image: the header says {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image too large: {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} "
            f"allowed ({when}); downscale it first"
        )
    if min(width, height) < min_size:
        raise ImageTooSmallError(
            f"image too small to analyse: {width}x{height} pixels, expected at least {min_size}x{min_size}"
        )


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an encoded image (the bytes of a JPEG, PNG, BMP, TIFF or WebP file) to RGB uint8.

    Args:
        data: The encoded file contents.
        min_size: Smallest accepted width and height in pixels.
        max_pixels: Largest accepted width x height, checked from the header before decoding.

    Returns:
        C-contiguous RGB uint8 array (H, W, 3), EXIF orientation applied.

    Raises:
        ImageError: empty, not an image, corrupt or truncated data.
        ImageTooSmallError: width or height below ``min_size``.
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    data = bytes(data)
    header = probe_image(data)
    _check_size(header.width, header.height, min_size, max_pixels, "refused from the header, before decoding")
    _check_complete(data, header.format)
    try:
        # ANYDEPTH keeps 16-bit and float samples (scaled below, not truncated); ANYCOLOR keeps gray as
        # one channel. Both still apply the EXIF orientation (IMREAD_UNCHANGED would not).
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as exc:
        raise ImageError(f"corrupt {header.format}: the decoder failed ({str(exc).strip().splitlines()[-1]})") from None
    if decoded is None or decoded.size == 0:
        raise ImageError(f"corrupt {header.format}: the decoder could not read the image data")
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    elif decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    return validate_frame(decoded, min_size=min_size, max_pixels=max_pixels)


def read_image(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read an image file (or its bytes) as RGB uint8 (H, W, 3).

    Args:
        source: A path, or the encoded bytes of an image.
        min_size: Smallest accepted width and height in pixels.
        max_pixels: Largest accepted width x height, checked from the header before decoding.

    Returns:
        C-contiguous RGB uint8 array (H, W, 3), EXIF orientation applied.

    Raises:
        ImageError: missing or unreadable file, empty file, not an image, corrupt or truncated data;
            the message starts with the path.
        ImageTooSmallError: width or height below ``min_size``.
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(source, min_size=min_size, max_pixels=max_pixels)
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: expected an image file, got a directory") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        return decode_image(data, min_size=min_size, max_pixels=max_pixels)
    except ImageError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        # Full-range scaling: 65535 -> 255, rounded (x / 257 is exactly x * 255 / 65535).
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageError("expected finite pixel values, got NaN or infinity")
        low, high = float(arr.min()), float(arr.max())
        if low < 0 or high > 255:
            raise ImageError(f"expected float pixels in [0, 1] or [0, 255], got values in [{low:g}, {high:g}]")
        scale = 255.0 if high <= 1.0 else 1.0
        return np.rint(arr.astype(np.float32) * scale).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise ImageError(f"expected {arr.dtype} pixels in [0, 255], got values in [{low}, {high}]")
        return arr.astype(np.uint8)
    raise ImageError(f"expected uint8, uint16, another integer or a float pixel type, got {arr.dtype}")


def validate_frame(
    array: np.ndarray,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Check a frame from a camera or an API caller and return it as RGB uint8 (H, W, 3).

    Channel rules: (H, W) and (H, W, 1) are gray and repeated to RGB; (H, W, 3) is taken as RGB
    (convert OpenCV's BGR yourself); (H, W, 4) is RGBA and the alpha channel is dropped (the stored
    colours are kept, as Pillow's ``convert("RGB")`` does).

    Pixel rules: uint8 is kept; uint16 is scaled by 255/65535 and rounded; other integer types are
    accepted when every value lies in [0, 255]; floats must be finite and are read as [0, 1] when
    their maximum is at most 1.0 (scaled by 255), else as [0, 255] (rounded). Anything else (bool,
    complex, negative or out-of-range values) is refused.

    Args:
        array: The frame.
        min_size: Smallest accepted width and height in pixels.
        max_pixels: Largest accepted width x height.

    Returns:
        C-contiguous RGB uint8 (H, W, 3); the input itself when it already is one.

    Raises:
        ImageError: wrong type, shape, channel count or pixel values.
        ImageTooSmallError: width or height below ``min_size``.
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    if not isinstance(array, np.ndarray):
        if not hasattr(array, "__array_interface__") and not hasattr(array, "__array__"):
            raise ImageError(f"expected a numpy array, got {type(array).__name__}")
        array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise ImageError(f"expected 1, 3 or 4 channels (gray, RGB, RGBA), got {array.shape[2]} in shape {array.shape}")
    if array.ndim not in (2, 3):
        raise ImageError(f"expected an (H, W) or (H, W, C) image array, got shape {array.shape}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageError(f"expected a non-empty image, got shape {array.shape}")
    _check_size(width, height, min_size, max_pixels, "frame")
    pixels = _to_uint8(array)
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        pixels = cv2.cvtColor(np.ascontiguousarray(pixels.reshape(height, width)), cv2.COLOR_GRAY2RGB)
    elif pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    return np.ascontiguousarray(pixels)


def require_rgb_uint8(image: Any) -> None:
    """Raise ImageError unless ``image`` is a non-empty RGB uint8 (H, W, 3) numpy array.

    The cheap per-frame check of the tasks; :func:`validate_frame` converts other legitimate layouts.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected an RGB uint8 (H, W, 3) numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"expected an RGB uint8 (H, W, 3) image, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"expected a non-empty image, got shape {image.shape}")
