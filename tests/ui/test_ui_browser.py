"""The web app in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Each server is started by a fixture as a subprocess on a free port and stopped afterwards:

* ``edgeskin ui`` with the shipped models: a PH2 dermoscopy image, a non-lesion photo, a corrupt file;
  these fail when the committed models are missing from ``edgeskin/models``;
* ``edgeskin ui`` with an empty models folder: the "no default model is installed" page;
* the same app on the fake classifier of ui_fakes.py, so the page itself is tested without the models.

Screenshots go to ``test-artifacts/ui/``. Install what these tests need with
``scripts/install-browser-test-deps.sh`` (apt's chromium and the playwright Python package; no
browser download).
"""

from __future__ import annotations

import contextlib
import importlib.util
import mimetypes
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeskin.labels import DX_NAMES
from edgeskin.ui import launch

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
FAKE_APP = Path(__file__).resolve().with_name("ui_fake_app.py")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_S = 90
RESULT_TIMEOUT_MS = 180_000  # first analysis loads the models; 2 shared cores
DIAGNOSIS = re.compile(
    r"Lesion 1: most likely (" + "|".join(re.escape(f"{name} ({dx})") for dx, name in DX_NAMES.items()) + r") \(\d+%\)"
)
NO_RESULT_YET = "Upload one or more images"


# -- fixtures ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serve(command: list[str], port: int, log_name: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a Streamlit server, wait until /_stcore/health answers "ok", yield its URL, stop it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"{log_name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the server exited with status {process.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.read().decode().strip() == "ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer on {url}/_stcore/health within {SERVER_START_S} s")
                time.sleep(0.25)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _edgeskin_ui(port: int) -> list[str]:
    return [sys.executable, "-m", "edgeskin", "ui", "--server.port", str(port), "--server.headless", "true"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}: run scripts/install-browser-test-deps.sh")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("needs the playwright Python package: run scripts/install-browser-test-deps.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def shipped_models() -> None:
    from edgeskin.errors import NoDefaultModelError
    from edgeskin.models import default_model_paths

    try:
        default_model_paths()
    except NoDefaultModelError as exc:
        pytest.fail(f"the shipped models are missing from edgeskin/models (they are committed): {exc}")


@pytest.fixture(scope="module")
def app_url(shipped_models) -> Iterator[str]:
    """``edgeskin ui`` on the shipped models."""
    port = _free_port()
    with _serve(_edgeskin_ui(port), port, "server-shipped-models") as url:
        yield url


@pytest.fixture(scope="module")
def fake_app_url() -> Iterator[str]:
    """The same app on the fake classifier and the classical detector."""
    port = _free_port()
    command = launch.streamlit_command(["--server.port", str(port), "--server.headless", "true"])
    command[command.index(str(launch.APP_PATH))] = str(FAKE_APP)
    with _serve(command, port, "server-fake-classifier") as url:
        yield url


# -- helpers -----------------------------------------------------------------------------------------
def _open(page, url: str) -> None:
    page.goto(url)
    page.get_by_text(NO_RESULT_YET).wait_for()


def _upload(page, *files) -> None:
    """Put files into the uploader's <input type=file>: paths, or {"name", "mimeType", "buffer"} dicts."""
    payloads = [
        {"name": f.name, "mimeType": mimetypes.guess_type(f.name)[0] or "", "buffer": f.read_bytes()}
        if isinstance(f, Path)
        else f
        for f in files
    ]
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(payloads)


def _screenshot(page, name: str) -> Path:
    """A screenshot of the whole page (Streamlit scrolls inside its main block, so grow the viewport)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 50, 8000))})
    page.wait_for_timeout(500)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _card(page, name: str):
    """The bordered block of one analysed image (the innermost block holding its heading)."""
    return page.locator('[data-testid="stVerticalBlock"]', has=page.get_by_role("heading", name=name)).last


def _assert_lesion_result(page, name: str) -> None:
    card = _card(page, name)
    diagnosis = card.get_by_text(DIAGNOSIS)
    diagnosis.wait_for(timeout=RESULT_TIMEOUT_MS)
    assert DIAGNOSIS.search(diagnosis.inner_text())
    # the two probability charts are drawn by vega-embed
    charts = card.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(1).locator("svg, canvas").first.wait_for()
    assert charts.count() >= 2 and charts.count() % 2 == 0  # 4 groups and 7 diagnoses per lesion
    assert card.locator('[data-testid="stVegaLiteChart"] svg g.mark-rect path').count() >= 4 + 7
    # the annotated image and the CAM, loaded by the browser
    for caption in ("Detected lesion", "class activation map (CAM)"):
        image = card.locator('[data-testid="stImage"]', has_text=caption).first.locator("img")
        image.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert card.get_by_text("Download the annotated image (PNG)").is_visible()
    assert card.get_by_text("Download the report (JSON)").is_visible()
    assert page.get_by_text("Not a diagnosis.").filter(visible=True).first.is_visible()


def _assert_no_lesion(page, name: str) -> None:
    """No diagnosis for a frame without a lesion: the card says "No lesion found" and why (below the unsure floor,
    not skin, or nothing standing out from the skin); never a diagnosis."""
    import re

    said = re.compile("No lesion found")
    # Visible text only: the model card's text in a collapsed expander may quote the same words.
    page.get_by_text(said).filter(visible=True).first.wait_for(timeout=RESULT_TIMEOUT_MS)
    card = _card(page, name)
    assert card.get_by_text(said).filter(visible=True).first.is_visible()
    assert card.get_by_text(DIAGNOSIS).count() == 0
    assert card.locator('[data-testid="stVegaLiteChart"]').count() == 0


def _assert_friendly_error(page, name: str) -> None:
    page.get_by_text("Could not analyse this image").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    error = _card(page, name).locator('[data-testid="stAlertContentError"]', has_text="Could not analyse this image")
    error.wait_for(timeout=RESULT_TIMEOUT_MS)
    text = error.inner_text()
    assert "not an image" in text
    assert "Traceback" not in page.content()
    assert page.locator('[data-testid="stException"]').count() == 0


CORRUPT = {"name": "corrupt.jpg", "mimeType": "image/jpeg", "buffer": os.urandom(4096)}


# -- the shipped models ------------------------------------------------------------------------------
def test_a_ph2_lesion_shows_diagnosis_charts_and_cam(page, app_url, shared_file):
    _open(page, app_url)
    _upload(page, shared_file("data/ph2/images/IMD002.jpg"))
    _assert_lesion_result(page, "IMD002.jpg")
    _screenshot(page, "lesion-IMD002")


def test_a_non_lesion_photo_gets_no_diagnosis(page, app_url, shared_file):
    _open(page, app_url)
    _upload(page, shared_file("data/non_lesion/panda.jpg"))
    _assert_no_lesion(page, "panda.jpg")
    _screenshot(page, "non-lesion-panda")


def test_a_corrupt_file_gives_a_friendly_error(page, app_url):
    _open(page, app_url)
    _upload(page, CORRUPT)
    _assert_friendly_error(page, "corrupt.jpg")
    _screenshot(page, "corrupt-file")


# -- no models ---------------------------------------------------------------------------------------
def test_without_models_the_page_says_no_default_model_is_installed(page, tmp_path):
    port = _free_port()
    with _serve(_edgeskin_ui(port), port, "server-no-models", env={"EDGESKIN_MODELS_DIR": str(tmp_path)}) as url:
        page.goto(url)
        error = page.locator('[data-testid="stAlertContentError"]', has_text="No default model is installed")
        error.wait_for()
        assert str(tmp_path) in error.inner_text()
        assert page.get_by_text("Not a diagnosis.").filter(visible=True).first.is_visible()
        _screenshot(page, "no-default-model")


# -- the page on the fake classifier -----------------------------------------------------------------
def test_fake_classifier_page_in_the_browser(page, fake_app_url, shared_file):
    _open(page, fake_app_url)
    _upload(page, shared_file("data/ph2/images/IMD002.jpg"), shared_file("data/non_lesion/panda.jpg"), CORRUPT)
    _assert_lesion_result(page, "IMD002.jpg")
    _assert_no_lesion(page, "panda.jpg")
    _assert_friendly_error(page, "corrupt.jpg")
    # the opacity slider redraws the CAM without analysing again
    cam = page.locator('[data-testid="stImage"]', has_text="class activation map (CAM)").locator("img")
    before = cam.get_attribute("src")
    page.locator('[data-testid="stSlider"] input[type="range"]').focus()
    page.keyboard.press("End")
    page.wait_for_function(
        "([img, src]) => img.getAttribute('src') !== src", arg=[cam.element_handle(), before], timeout=30_000
    )
    _screenshot(page, "fake-classifier")
