"""Fixtures of the robustness tests: model folders, bad files, a CLI runner with the network blocked,
an in-process socket blocker, and a snapshot of folder trees."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from robustness_cases import SITECUSTOMIZE, NetworkBlocked

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- models ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """The tiny real INT8 classifier and detector of tests/tiny_models.py under the shipped models' names,
    for EDGESKIN_MODELS_DIR; skips without TensorFlow (needed to build them)."""
    pytest.importorskip("tensorflow", reason="needs the [train] extra (TensorFlow) to build the tiny test models")
    from tiny_models import tiny_classifier, tiny_detector

    from edgeskin.models import CLASSIFIER_NAME, DETECTOR_NAME

    folder = tmp_path_factory.mktemp("tiny-models")
    for source, name in ((tiny_classifier(), CLASSIFIER_NAME), (tiny_detector(), DETECTOR_NAME)):
        for suffix in (".tflite", ".json"):
            (folder / f"{name}{suffix}").write_bytes(source.with_suffix(suffix).read_bytes())
    return folder


@pytest.fixture(scope="session")
def shipped_models_dir() -> Path:
    """The folder of the shipped default models (edgeskin/models); fails when they are missing."""
    from tiny_models import shipped_model_paths

    return shipped_model_paths().classifier.parent


@pytest.fixture(params=[pytest.param("tiny", marks=pytest.mark.train), "shipped"])
def models_dir(request) -> Path:
    """Each model set in turn: the tiny test models, then the shipped ones."""
    return request.getfixturevalue(f"{request.param}_models_dir")


# -- the CLI with the network blocked -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def network_blocker(tmp_path_factory) -> Path:
    """A folder holding the socket-blocking sitecustomize.py, for PYTHONPATH."""
    folder = tmp_path_factory.mktemp("no-network")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


@pytest.fixture
def edgeskin_cli(network_blocker) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python -m edgeskin ARGS`` in a fresh process with every socket call blocked.

    Keyword arguments: ``cwd``, ``models_dir`` (EDGESKIN_MODELS_DIR), ``env`` (extra variables, which
    replace inherited ones), ``block_network`` (default True).
    """

    def run(
        *args: object,
        cwd: Path | None = None,
        models_dir: Path | None = None,
        env: dict[str, str] | None = None,
        block_network: bool = True,
    ) -> subprocess.CompletedProcess:
        environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
        if models_dir is not None:
            environment["EDGESKIN_MODELS_DIR"] = str(models_dir)
        if block_network:
            environment["PYTHONPATH"] = os.pathsep.join(
                [str(network_blocker), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        environment.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "edgeskin", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
            env=environment,
        )

    return run


# -- the network blocked in this process ---------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch) -> Iterator[list[str]]:
    """Block every socket call in this process; yields the list of attempted calls, which must stay empty."""
    attempts: list[str] = []

    def blocker(name: str):
        def blocked(*args, **kwargs):
            attempts.append(f"{name}{args[1:] if name.startswith('socket.') else args}")
            raise NetworkBlocked(f"network access is blocked in this test ({name})")

        return blocked

    for name in ("connect", "connect_ex", "sendto", "sendmsg"):
        monkeypatch.setattr(socket.socket, name, blocker(f"socket.{name}"))
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        monkeypatch.setattr(socket, name, blocker(name))
    yield attempts
    assert attempts == [], f"network calls were attempted: {attempts}"


# -- the benchmark's frame generator ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def non_lesion_benchmark():
    """benchmarks/non_lesion_fpr.py as a module (its seeded frame generator and FP summary)."""
    path = REPO_ROOT / "benchmarks" / "non_lesion_fpr.py"
    spec = importlib.util.spec_from_file_location("non_lesion_fpr", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("non_lesion_fpr", module)
    spec.loader.exec_module(module)
    return module
