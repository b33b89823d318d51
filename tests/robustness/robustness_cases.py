"""Helpers of the robustness tests: bad and odd image files, snapshots of folder trees, the socket blocker."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

BLOCKED_MARK = "edgeskin-test: blocked a network call"

# Runs at interpreter start-up in every Python process of a CLI test (its folder is put first on
# PYTHONPATH, so this sitecustomize wins): each way out to the network prints BLOCKED_MARK to stderr and
# raises, so a call that the code catches and ignores is still seen by the test.
SITECUSTOMIZE = f'''
import socket as _socket
import sys as _sys

def _blocked(*args, **kwargs):
    _sys.stderr.write("{BLOCKED_MARK}\\n")
    raise OSError("network access is blocked in this test")

for _name in ("connect", "connect_ex", "sendto", "sendmsg"):
    setattr(_socket.socket, _name, _blocked)
for _name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
    setattr(_socket, _name, _blocked)
'''


class NetworkBlocked(OSError):
    """Raised by the in-process socket blocker (the ``no_network`` fixture)."""


# -- files ----------------------------------------------------------------------------------------------------


def write_png(path: Path, frame: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return path


def bad_image_files(folder: Path) -> dict[str, Path]:
    """A 0-byte ``.jpg``, a text file named ``.jpg`` and a JPEG cut in half (inside its image data)."""
    ok, encoded = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert ok
    files = {"0-byte": folder / "empty.jpg", "text": folder / "notes.jpg", "truncated": folder / "cut.jpg"}
    files["0-byte"].write_bytes(b"")
    files["text"].write_text("this is not an image\n")
    files["truncated"].write_bytes(encoded.tobytes()[: len(encoded) // 2])
    return files


def good_image(folder: Path, name: str = "square.png") -> Path:
    """A skin-coloured frame with one dark square (what the tiny detector finds)."""
    from tiny_models import frame_with_dark_square

    return write_png(folder / name, frame_with_dark_square(64, 128, square=(64, 32, 96, 64)))


LABELLED_DX = ("nv", "mel", "bkl")


def labelled_folder(folder: Path) -> tuple[Path, Path, Path]:
    """Three skin frames with a dark square, a HAM10000-style CSV and lesion masks: (images, csv, masks)."""
    from tiny_models import frame_with_dark_square

    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    masks.mkdir()
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesion_id", "image_id", "dx"])
        for i, dx in enumerate(LABELLED_DX):
            square = (16 + 8 * i, 16, 48 + 8 * i, 48)
            write_png(images / f"IMG{i}.png", frame_with_dark_square(64, 96, square=square))
            mask = np.zeros((64, 96, 3), np.uint8)
            mask[16:48, square[0] : square[2]] = 255
            write_png(masks / f"IMG{i}_segmentation.png", mask)
            writer.writerow([f"L{i}", f"IMG{i}", dx])
    return images, folder / "labels.csv", masks


# -- file-tree snapshots ----------------------------------------------------------------------------------------


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders``: path → (size, mtime_ns) (folders: size -1)."""
    state: dict[str, tuple[int, int]] = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            info = path.lstat()
            state[str(path)] = (-1 if path.is_dir() else info.st_size, 0 if path.is_dir() else info.st_mtime_ns)
    return state


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Paths added, removed or modified between two snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


# -- the catalogue of bad and odd image files (also listed in docs/robustness.md) ------------------------------


def _encode(rgb: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb, list(params))
    assert ok
    return buf.tobytes()


def _pillow(image, fmt: str, **kwargs) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress((b"\x00" * (3 * width + 1)) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _skin(height: int = 96, width: int = 128) -> np.ndarray:
    from tiny_models import frame_with_dark_square

    return frame_with_dark_square(height, width, square=(width // 2, height // 2, width // 2 + 32, height // 2 + 32))


def bad_file_cases() -> dict[str, tuple[str, bytes | None, str]]:
    """case id → (file name, contents (None: do not create it; "dir": a folder), expected message fragment)."""
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    jpeg = _encode(noise, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)
    png = _encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), ".png")
    return {
        "0-byte file": ("empty.jpg", b"", "empty file: expected an image, got 0 bytes"),
        "text file named .jpg": ("notes.jpg", b"this is not an image\n", "not an image: expected a JPEG, PNG"),
        "truncated JPEG": ("cut.jpg", jpeg[: len(jpeg) // 2], "truncated JPEG: the file ends before its end-of-image"),
        "JPEG cut inside its headers": ("head.jpg", jpeg[:300], "corrupt or truncated JPEG: the header ends early"),
        "truncated PNG": ("cut.png", png[: len(png) // 2], "truncated PNG"),
        "GIF": ("anim.gif", _pillow(Image.fromarray(_skin()), "GIF"), "unsupported image format GIF"),
        "1x1 image": ("dot.png", _encode(np.zeros((1, 1, 3), np.uint8), ".png"), "image too small to analyse: 1x1"),
        "10x10 image": ("small.jpg", _encode(np.zeros((10, 10, 3), np.uint8), ".jpg"), "at least 32x32"),
        "30000x30000 PNG (decompression bomb)": (
            "bomb.png",
            _png_bomb(30000, 30000),
            "image too large: 30000x30000 = 900,000,000 pixels",
        ),  # fmt: skip
        "missing file": ("absent.jpg", None, "image file not found"),
        "directory": ("folder.jpg", "dir", "expected an image file, got a directory"),
    }


def legit_file_cases() -> dict[str, tuple[str, bytes]]:
    """case id → (file name, contents) of odd but legitimate images, which must be analysed."""
    from PIL import Image

    skin = _skin()
    gray16 = cv2.cvtColor(skin, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    rgb16 = cv2.cvtColor(skin, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    rgba = np.dstack([skin, np.full(skin.shape[:2], 128, np.uint8)])
    exif = Image.fromarray(skin).getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return {
        "16-bit PNG (RGB)": ("rgb16.png", cv2.imencode(".png", rgb16)[1].tobytes()),
        "16-bit PNG (gray)": ("gray16.png", cv2.imencode(".png", gray16)[1].tobytes()),
        "grayscale JPEG": ("gray.jpg", _encode(cv2.cvtColor(skin, cv2.COLOR_RGB2GRAY), ".jpg")),
        "RGBA PNG": ("rgba.png", _pillow(Image.fromarray(rgba, "RGBA"), "PNG")),
        "CMYK JPEG": ("cmyk.jpg", _pillow(Image.fromarray(skin).convert("CMYK"), "JPEG", quality=95)),
        "EXIF-rotated JPEG": ("rotated.jpg", _pillow(Image.fromarray(skin), "JPEG", quality=95, exif=exif.tobytes())),
        "BMP": ("skin.bmp", _encode(skin, ".bmp")),
        "TIFF": ("skin.tiff", _encode(skin, ".tiff")),
        "WebP": ("skin.webp", _pillow(Image.fromarray(skin), "WEBP", lossless=True)),
    }


def write_cases(folder: Path, cases: dict) -> dict[str, Path]:
    """Write each case's file into ``folder``; case id → path."""
    paths = {}
    for case, (name, data, *_) in cases.items():
        path = folder / name
        if data == "dir":
            path.mkdir()
        elif data is not None:
            path.write_bytes(data)
        paths[case] = path
    return paths


# -- bad model files -----------------------------------------------------------------------------------------------

BAD_MODEL_CASES = (
    "text file as model",
    "truncated model",
    "checksum mismatch",
    "input size disagrees with the spec",
    "model without a spec",
    "missing model file",
    "detector passed as classifier",
    "classifier passed as detector",
    "broken classifier in predict",
)


def bad_model_cases(folder: Path, models_dir: Path) -> dict[str, tuple[list[str], str]]:
    """case id → (the ``edgeskin`` arguments before the image, expected message fragment), for broken copies of
    the models in ``models_dir`` (tiny or shipped) written into ``folder``."""
    import json

    from edgeskin.models import CLASSIFIER_NAME, DETECTOR_NAME

    classifier, detector = models_dir / f"{CLASSIFIER_NAME}.tflite", models_dir / f"{DETECTOR_NAME}.tflite"
    spec = json.loads(classifier.with_suffix(".json").read_text())

    def model(name: str, data: bytes, **changes) -> str:
        path = folder / f"{name}.tflite"
        path.write_bytes(data)
        path.with_suffix(".json").write_text(json.dumps({**spec, "model_file": path.name, **changes}))
        return str(path)

    weights = classifier.read_bytes()
    input_size = spec["input"]["size"]
    text = model("text", b"this is not a model\n", sha256=None)
    truncated = model("truncated", weights[: len(weights) // 2], sha256=None)
    mismatch = model("mismatch", weights, sha256="0" * 64)
    resized = model("resized", weights, input={**spec["input"], "size": [input_size[0] * 2, input_size[1] * 2]})
    no_spec = folder / "no-spec.tflite"
    no_spec.write_bytes(weights)
    cases = {
        "text file as model": (["classify", "--model", text], "not a TFLite flatbuffer"),
        "truncated model": (["classify", "--model", truncated], "truncated or corrupt"),
        "checksum mismatch": (["classify", "--model", mismatch], "SHA-256"),
        "input size disagrees with the spec": (["classify", "--model", resized], "input"),
        "model without a spec": (["classify", "--model", str(no_spec)], "--labels"),
        "missing model file": (["classify", "--model", str(folder / "absent.tflite")], "absent.tflite"),
        "detector passed as classifier": (["classify", "--model", str(detector)], "detection"),
        "classifier passed as detector": (["predict", "--detector", str(classifier)], "classification"),
        "broken classifier in predict": (["predict", "--classifier", truncated], "truncated or corrupt"),
    }
    assert tuple(cases) == BAD_MODEL_CASES
    return cases
