"""edgeskin.progress: a bar when tqdm is there, the items themselves when it is not, an error when it is broken."""

from __future__ import annotations

import sys
import types

import pytest

from edgeskin.progress import progress


def test_a_bar_on_stderr_when_asked(capsys):
    pytest.importorskip("tqdm", reason="tqdm is optional (the [eval] extra)")
    assert list(progress(range(3), "scoring", unit="img", enabled=True)) == [0, 1, 2]
    assert "scoring" in capsys.readouterr().err
    assert list(progress(range(3), "scoring", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_without_tqdm_the_items_come_back_as_they_are(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ModuleNotFoundError
    items = [1, 2]
    assert progress(items, "x", enabled=True) is items


def test_a_broken_tqdm_is_an_error_not_a_missing_bar(monkeypatch):
    broken = types.ModuleType("tqdm")

    def __getattr__(name: str):
        raise ModuleNotFoundError("No module named 'colorama'", name="colorama")

    broken.__getattr__ = __getattr__
    monkeypatch.setitem(sys.modules, "tqdm", broken)
    with pytest.raises(ModuleNotFoundError, match="colorama"):
        progress([1], "x")
