"""Fixtures of the capture tests: real dermoscopy images, a real video made from them, the fakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from capture_fakes import FakePipeline, pan_and_zoom, write_video

from edgeskin.image import read_image

PH2_IMAGES = ("IMD002.jpg", "IMD003.jpg", "IMD006.jpg")


@pytest.fixture(scope="session")
def ph2_paths(shared_file) -> list[Path]:
    """A few real PH2 dermoscopy images from ../shared (the test skips when they are absent)."""
    return [shared_file(f"data/ph2/images/{name}") for name in PH2_IMAGES]


@pytest.fixture(scope="session")
def ph2_video(ph2_paths, tmp_path_factory) -> tuple[Path, int]:
    """A real MJPG video (320x240, 15 fps) panning and zooming over three PH2 images: (path, frame count)."""
    frames: list[np.ndarray] = []
    for path in ph2_paths:
        frames.extend(pan_and_zoom(read_image(path), 40, (320, 240)))
    video = write_video(tmp_path_factory.mktemp("video") / "ph2_pan_zoom.avi", frames)
    return video, len(frames)


@pytest.fixture
def fake_pipeline() -> FakePipeline:
    return FakePipeline()
