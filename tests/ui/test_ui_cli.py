"""``edgeskin ui``: options pass through to Streamlit, a clear error without the [ui] extra, and a server
that answers on /_stcore/health."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edgeskin.cli import main
from edgeskin.ui import launch

REPO_ROOT = Path(__file__).resolve().parents[2]


def _printed_command(capsys, *args: str) -> list[str]:
    assert main(["ui", "--print-command", *args]) == 0
    return capsys.readouterr().out.split()


def test_streamlit_options_pass_through(capsys):
    pytest.importorskip("streamlit")
    command = _printed_command(capsys, "--server.port", "8502", "--server.headless", "true")
    assert command[1:5] == ["-m", "streamlit", "run", str(launch.APP_PATH)]
    assert command[-4:] == ["--server.port", "8502", "--server.headless", "true"]
    assert "--browser.gatherUsageStats" in command and "--global.developmentMode" in command


def test_edgeskin_options_mix_with_streamlit_options(capsys):
    pytest.importorskip("streamlit")
    command = _printed_command(capsys, "--server.port=9000", "-v")
    assert command[-1] == "--server.port=9000" and "-v" not in command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["photo.jpg"], "unexpected argument 'photo.jpg'"),
        (["--server.port"], "--server.port: expected a value"),
    ],
)
def test_other_arguments_fail_in_one_line(capsys, args, message):
    pytest.importorskip("streamlit")
    assert main(["ui", "--print-command", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_without_streamlit_the_error_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "streamlit", None)  # the import fails
    assert main(["ui", "--server.port", "8502"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("edgeskin: error: edgeskin ui needs 'streamlit', which is not installed: pip install 'edgeskin[ui]'")


def test_help_mentions_the_kiosk(capsys):
    with pytest.raises(SystemExit):
        main(["ui", "--help"])
    assert "chromium --kiosk http://127.0.0.1:8501" in " ".join(capsys.readouterr().out.split())


def test_edgeskin_ui_answers_on_the_health_endpoint(tmp_path):
    pytest.importorskip("streamlit")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "edgeskin", "ui", "--server.port", str(port), "--server.headless", "true"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 90
        answer = None
        while answer is None and time.monotonic() < deadline:
            assert process.poll() is None, f"edgeskin ui exited with {process.returncode}: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    answer = response.read().decode()
            except OSError:
                time.sleep(0.25)
        assert answer == "ok", log.read_text()
        # bound to the loopback interface only, and the app itself is served
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200
    finally:
        process.terminate()  # edgeskin ui exec'd Streamlit, so this stops the server itself
        assert process.wait(timeout=20) is not None
