"""Bad and odd images (issue 7): every case is generated here, in tmp_path."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import edgeskin.image as image_module
from edgeskin.errors import ImageError, ImageTooLargeError, ImageTooSmallError
from edgeskin.image import decode_image, probe_image, read_image, validate_frame

RED, GREEN, BLUE = (200, 30, 40), (30, 180, 60), (20, 40, 210)


def quadrants(height: int = 48, width: int = 64) -> np.ndarray:
    """RGB test card: red top-left, green top-right, blue bottom-left, white bottom-right."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 2, : width // 2] = RED
    rgb[: height // 2, width // 2 :] = GREEN
    rgb[height // 2 :, : width // 2] = BLUE
    rgb[height // 2 :, width // 2 :] = 255
    return rgb


def encode(rgb: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb, list(params))
    assert ok
    return buf.tobytes()


def pillow_bytes(img: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG header announcing width x height RGB pixels, a few hundred bytes in all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x00" * (3 * width)
    idat = zlib.compress(row * 4, 9)  # only the first rows; a decoder would still allocate it all
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def assert_colour(rgb: np.ndarray, y: int, x: int, expected, tol: int = 12) -> None:
    got = rgb[y, x].astype(int)
    assert np.abs(got - expected).max() <= tol, f"pixel ({y}, {x}) is {got.tolist()}, expected about {list(expected)}"


def assert_valid_rgb(rgb: np.ndarray) -> None:
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.flags.c_contiguous


# --- files that are not (complete) images ------------------------------------------------------------


def truncated_jpeg() -> bytes:
    data = encode(quadrants(), ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)
    return data[: len(data) * 2 // 3]


def truncated_png() -> bytes:
    data = encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), ".png")
    return data[: len(data) // 2]


BAD_FILES = [
    ("empty.jpg", b"", ImageError, "empty file"),
    ("text.jpg", b"hello, this is not a picture\n", ImageError, "not an image"),
    ("noeoi.jpg", encode(quadrants(), ".jpg")[:-2], ImageError, "truncated JPEG"),
    ("half.jpg", truncated_jpeg(), ImageError, "truncated JPEG"),
    ("header_only.jpg", encode(quadrants(), ".jpg")[:300], ImageError, "JPEG"),
    ("half.png", truncated_png(), ImageError, "truncated PNG"),
    ("noiend.png", encode(quadrants(), ".png")[:-12], ImageError, "truncated PNG"),
    ("sig_only.png", b"\x89PNG\r\n\x1a\n", ImageError, "PNG"),
    ("anim.gif", b"GIF89a" + b"\x00" * 40, ImageError, "unsupported image format GIF"),
    ("half.bmp", encode(quadrants(), ".bmp")[:5000], ImageError, "corrupt BMP"),
    ("half.tiff", encode(quadrants(), ".tiff")[:-200], ImageError, "TIFF"),
    ("half.webp", pillow_bytes(Image.fromarray(quadrants()), "WEBP")[:-40], ImageError, "corrupt WebP"),
    ("tiny1.png", encode(np.zeros((1, 1, 3), np.uint8), ".png"), ImageTooSmallError, "at least 32x32"),
    ("tiny10.jpg", encode(np.zeros((10, 10, 3), np.uint8), ".jpg"), ImageTooSmallError, "at least 32x32"),
    ("narrow.png", encode(np.zeros((200, 20, 3), np.uint8), ".png"), ImageTooSmallError, "20x200 pixels"),
    ("bomb.png", png_bomb(30000, 30000), ImageTooLargeError, "30000x30000 = 900,000,000 pixels"),
]


@pytest.mark.parametrize(("name", "data", "error", "match"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_files_are_refused_with_a_typed_one_line_error(tmp_path, name, data, error, match):
    path = write(tmp_path, name, data)
    with pytest.raises(error, match=match) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    with pytest.raises(error, match=match):  # the same from bytes, without the path
        read_image(data)


def test_bomb_is_refused_from_the_header_without_decoding(tmp_path, monkeypatch):
    data = png_bomb(30000, 30000)
    assert len(data) < 1000

    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoder must not run on a decompression bomb")

    monkeypatch.setattr(image_module.cv2, "imdecode", no_decoding)
    with pytest.raises(ImageTooLargeError, match="before decoding"):
        read_image(write(tmp_path, "bomb.png", data))


def patch_header_size(fmt: str, width: int, height: int) -> bytes:
    """Encode a small real image and rewrite the size in its header."""
    small = quadrants(40, 40)
    if fmt == "JPEG":
        data = bytearray(encode(small, ".jpg"))
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    elif fmt == "BMP":
        data = bytearray(encode(small, ".bmp"))
        data[18:26] = struct.pack("<ii", width, height)
    elif fmt == "TIFF":
        return tiff_big_endian_gray(np.zeros((4, 4), np.uint8), size=(width, height))
    elif fmt == "WebP":
        data = bytearray(pillow_bytes(Image.fromarray(small), "WEBP", lossless=False))
        data[26:30] = struct.pack("<HH", width, height)
    else:
        raise AssertionError(fmt)
    return bytes(data)


@pytest.mark.parametrize(
    ("fmt", "width", "height"),
    [("JPEG", 65000, 65000), ("BMP", 30000, 30000), ("TIFF", 20000, 20000), ("WebP", 16383, 16383)],
)
def test_bombs_in_other_formats_are_refused_from_the_header(fmt, width, height, monkeypatch):
    data = patch_header_size(fmt, width, height)
    assert probe_image(data) == (fmt, width, height)
    monkeypatch.setattr(image_module.cv2, "imdecode", lambda *a, **k: pytest.fail("decoder ran"))
    with pytest.raises(ImageTooLargeError):
        decode_image(data)


def test_limits_are_parameters():
    data = encode(quadrants(48, 64), ".png")
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=48 * 64 - 1)
    with pytest.raises(ImageTooSmallError, match="at least 49x49"):
        decode_image(data, min_size=49)
    assert decode_image(encode(np.zeros((10, 10, 3), np.uint8), ".png"), min_size=1).shape == (10, 10, 3)


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope" / "lesion.jpg"
    with pytest.raises(ImageError, match=f"{missing}: image file not found"):
        read_image(missing)
    with pytest.raises(ImageError, match="got a directory"):
        read_image(tmp_path)


# --- legitimate images, odd formats ------------------------------------------------------------------


def tiff_big_endian_gray(gray: np.ndarray, size: tuple[int, int] | None = None) -> bytes:
    """A minimal uncompressed big-endian (Motorola) 8-bit grayscale TIFF, written by hand."""
    height, width = gray.shape
    w, h = size or (width, height)
    pixels = gray.tobytes()
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, len(pixels))]  # fmt: skip
    ifd_size = 2 + 12 * len(entries) + 4
    strip_offset = 8 + ifd_size
    ifd = struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        value = strip_offset if tag == 273 else value
        packed = struct.pack(">HH", value, 0) if kind == 3 else struct.pack(">I", value)
        ifd += struct.pack(">HHI", tag, kind, count) + packed
    return b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0) + pixels


ENCODINGS = {
    "png": lambda rgb: encode(rgb, ".png"),
    "jpeg": lambda rgb: encode(rgb, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 98),
    "bmp": lambda rgb: encode(rgb, ".bmp"),
    "tiff": lambda rgb: encode(rgb, ".tiff"),
    "tiff_pillow_lzw": lambda rgb: pillow_bytes(Image.fromarray(rgb), "TIFF", compression="tiff_lzw"),
    "webp_lossless": lambda rgb: pillow_bytes(Image.fromarray(rgb), "WEBP", lossless=True),
    "webp_lossy": lambda rgb: pillow_bytes(Image.fromarray(rgb), "WEBP", quality=95),
    "webp_alpha": lambda rgb: pillow_bytes(Image.fromarray(rgb).convert("RGBA"), "WEBP", lossless=True),
    "progressive_jpeg": lambda rgb: pillow_bytes(Image.fromarray(rgb), "JPEG", quality=98, progressive=True),
}


@pytest.mark.parametrize("kind", sorted(ENCODINGS))
def test_supported_formats_decode_to_the_right_colours(tmp_path, kind):
    rgb = quadrants()
    data = ENCODINGS[kind](rgb)
    header = probe_image(data)
    assert (header.width, header.height) == (64, 48)
    out = read_image(write(tmp_path, f"card.{kind}", data))
    assert_valid_rgb(out)
    assert out.shape == (48, 64, 3)
    for (y, x), colour in {(10, 10): RED, (10, 50): GREEN, (40, 10): BLUE, (40, 50): (255, 255, 255)}.items():
        assert_colour(out, y, x, colour)


def test_big_endian_tiff():
    gray = np.tile(np.arange(40, dtype=np.uint8) * 6, (33, 1))
    data = tiff_big_endian_gray(gray)
    assert probe_image(data) == ("TIFF", 40, 33)
    out = decode_image(data)
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


def test_top_down_bmp():
    rgb = quadrants()
    data = bytearray(encode(rgb, ".bmp"))
    data[22:26] = struct.pack("<i", -48)  # same rows, now read top-down: the picture is flipped
    assert probe_image(bytes(data)) == ("BMP", 64, 48)
    np.testing.assert_array_equal(decode_image(bytes(data)), rgb[::-1])


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_grayscale_becomes_rgb(fmt):
    gray = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    out = decode_image(encode(gray, ".png" if fmt == "png" else ".jpg"))
    assert_valid_rgb(out)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out[..., 0].astype(int) - gray).max() <= (0 if fmt == "png" else 6)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_png_is_scaled_to_8_bit(channels):
    values = np.array([0, 257, 40000, 65535], np.uint16)
    expected = np.array([0, 1, 156, 255], np.uint8)  # round(v * 255 / 65535)
    wide = np.tile(np.repeat(values, 16), (40, 1))
    if channels == 3:
        wide = np.dstack([wide, wide // 2, np.full_like(wide, 65535)])
    data = encode(wide, ".png")
    assert data[24] == 16  # IHDR bit depth: really a 16-bit file
    out = decode_image(data)
    assert_valid_rgb(out)
    np.testing.assert_array_equal(out[0, ::16, 0], expected)
    if channels == 3:  # channel order survives
        np.testing.assert_array_equal(out[0, ::16, 1], [0, 0, 78, 127])
        np.testing.assert_array_equal(out[0, ::16, 2], [255] * 4)


def test_rgba_png_drops_alpha_and_keeps_colours():
    rgba = np.dstack([quadrants(), np.full((48, 64), 90, np.uint8)])
    out = decode_image(pillow_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out, quadrants())


def test_cmyk_jpeg_has_correct_colours():
    cmyk = Image.fromarray(quadrants()).convert("CMYK")
    data = pillow_bytes(cmyk, "JPEG", quality=98)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert_valid_rgb(out)
    for (y, x), colour in {(10, 10): RED, (10, 50): GREEN, (40, 10): BLUE, (40, 50): (255, 255, 255)}.items():
        assert_colour(out, y, x, colour)


@pytest.mark.parametrize(
    ("orientation", "shape", "top_left"),
    [(1, (48, 64, 3), RED), (3, (48, 64, 3), (255, 255, 255)), (6, (64, 48, 3), BLUE), (8, (64, 48, 3), GREEN)],
)
def test_exif_orientation_is_honoured(tmp_path, orientation, shape, top_left):
    """Orientation 6 means "rotate 90 degrees clockwise to display": the bottom-left (blue) goes top-left."""
    img = Image.fromarray(quadrants())
    exif = img.getexif()
    exif[0x0112] = orientation
    path = write(tmp_path, f"rot{orientation}.jpg", pillow_bytes(img, "JPEG", quality=98, exif=exif.tobytes()))
    out = read_image(path)
    assert out.shape == shape
    assert_colour(out, 5, 5, top_left)


@pytest.mark.shared
def test_real_ph2_image_and_its_bytes_agree(shared_file):
    path = shared_file("data/ph2/images/IMD002.jpg")
    from_path = read_image(path)
    assert from_path.shape == (572, 765, 3)
    np.testing.assert_array_equal(from_path, read_image(path.read_bytes()))
    np.testing.assert_array_equal(from_path, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))


# --- fuzz --------------------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:  # flip a few bytes anywhere
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 1:  # flip bytes in the header, where sizes and lengths live
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(min(len(buf), 200))] = rng.randrange(256)
    elif kind == 2:  # truncate
        del buf[rng.randrange(1, len(buf)) :]
    elif kind == 3:  # delete a slice
        start = rng.randrange(len(buf))
        del buf[start : start + rng.randint(1, 64)]
    else:  # duplicate a slice
        start = rng.randrange(len(buf))
        buf[start:start] = buf[start : start + rng.randint(1, 64)]
    return bytes(buf)


def fuzz_seeds(shared: Path | None) -> list[bytes]:
    card = quadrants(64, 96)
    seeds = [encode(card, ".jpg"), encode(card, ".png"), encode(card, ".bmp"), encode(card, ".tiff")]
    ham = shared / "data/ham10000/images/ISIC_0024306.jpg" if shared else None
    if ham is not None and ham.exists():
        seeds[0] = ham.read_bytes()
    return seeds


def test_fuzzed_images_decode_or_raise_image_error(tmp_path):
    """200 seeded mutations of real JPEG/PNG/BMP/TIFF files: a valid RGB image or an ImageError, never else."""
    shared = Path(__file__).resolve().parents[1] / ".." / "shared"
    seeds = fuzz_seeds(shared if shared.is_dir() else None)
    rng = random.Random(20240607)
    outcomes = {"decoded": 0, "refused": 0}
    for i in range(200):
        data = mutate(seeds[i % len(seeds)], rng)
        try:
            out = decode_image(data, max_pixels=4_000_000)  # bounded so mutated sizes stay cheap
        except ImageError:
            outcomes["refused"] += 1
        else:
            assert_valid_rgb(out)
            outcomes["decoded"] += 1
    assert outcomes["decoded"] > 10 and outcomes["refused"] > 10, outcomes  # both paths were exercised


# --- arrays from cameras and API callers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "error", "match"),
    [
        (np.full((40, 40, 3), np.nan, np.float32), ImageError, "NaN or infinity"),
        (np.where(np.eye(40)[..., None] > 0, np.inf, 0.5).repeat(3, 2), ImageError, "NaN or infinity"),
        (np.zeros((40, 40, 2), np.uint8), ImageError, "expected 1, 3 or 4 channels"),
        (np.zeros((40, 40, 5), np.uint8), ImageError, "got 5"),
        (np.zeros(1600, np.uint8), ImageError, r"expected an \(H, W\) or \(H, W, C\)"),
        (np.zeros((2, 40, 40, 3), np.uint8), ImageError, "got shape"),
        (np.zeros((40, 40, 3), bool), ImageError, "got bool"),
        (np.zeros((40, 40, 3), np.complex64), ImageError, "got complex64"),
        (np.full((40, 40, 3), -0.5, np.float32), ImageError, r"in \[0, 1\] or \[0, 255\]"),
        (np.full((40, 40, 3), 300.0), ImageError, r"in \[0, 1\] or \[0, 255\]"),
        (np.full((40, 40, 3), 256, np.int32), ImageError, r"int32 pixels in \[0, 255\]"),
        (np.zeros((0, 40, 3), np.uint8), ImageError, "non-empty"),
        (np.zeros((10, 40, 3), np.uint8), ImageTooSmallError, "at least 32x32"),
        ([[1, 2], [3, 4]], ImageError, "expected a numpy array, got list"),
    ],
)
def test_validate_frame_refuses(array, error, match):
    with pytest.raises(error, match=match):
        validate_frame(array)


@pytest.mark.parametrize(
    ("array", "expected_pixel"),
    [
        (np.full((40, 40), 77, np.uint8), [77, 77, 77]),
        (np.full((40, 40, 1), 77, np.uint8), [77, 77, 77]),
        (np.dstack([np.full((40, 40, 3), RED, np.uint8), np.zeros((40, 40), np.uint8)]), list(RED)),
        (np.full((40, 40, 3), 40000, np.uint16), [156, 156, 156]),
        (np.full((40, 40, 3), 0.5, np.float32), [128, 128, 128]),  # max <= 1: read as [0, 1]
        (np.full((40, 40, 3), 1.0, np.float64), [255, 255, 255]),
        (np.full((40, 40, 3), 127.6, np.float32), [128, 128, 128]),  # max > 1: read as [0, 255]
        (np.full((40, 40, 3), 200, np.int64), [200, 200, 200]),
        (np.full((40, 40, 3), 9, np.float16), [9, 9, 9]),
    ],
)
def test_validate_frame_converts(array, expected_pixel):
    out = validate_frame(array)
    assert_valid_rgb(out)
    assert out.shape == (40, 40, 3)
    assert out[7, 9].tolist() == expected_pixel


def test_validate_frame_passes_good_frames_through_and_fixes_layout():
    frame = quadrants()
    assert validate_frame(frame) is frame
    strided = np.ascontiguousarray(quadrants(96, 128))[::2, ::2]
    out = validate_frame(strided)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, strided)
    pil = Image.fromarray(frame)
    np.testing.assert_array_equal(validate_frame(pil), frame)
