"""The ``edgeskin`` command framework: subcommand registry, help, error handling."""

from __future__ import annotations

import sys
import types

import pytest

import edgeskin.cli as cli
from edgeskin.errors import ImageError


def test_help_lists_the_available_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "classify" in out and "info" in out


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: edgeskin" in capsys.readouterr().err


def test_version(capsys):
    import edgeskin

    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"edgeskin {edgeskin.__version__}"


def _register(monkeypatch, name: str, module: types.ModuleType | None) -> None:
    monkeypatch.setattr(cli, "SUBCOMMANDS", (*cli.SUBCOMMANDS, name))
    monkeypatch.setitem(sys.modules, f"edgeskin.cli.{name}", module)


def _module(name: str, run) -> types.ModuleType:
    module = types.ModuleType(f"edgeskin.cli.{name}")
    module.add_parser = lambda subparsers: subparsers.add_parser(name, help=f"the {name} command")
    module.run = run
    return module


def test_a_listed_but_missing_module_is_skipped(monkeypatch, capsys):
    monkeypatch.setattr(cli, "SUBCOMMANDS", (*cli.SUBCOMMANDS, "no_such_command_yet"))
    parser = cli.build_parser()
    assert "no_such_command_yet" not in parser._subparsers._group_actions[0].choices
    with pytest.raises(SystemExit):
        cli.main(["no_such_command_yet"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_new_subcommand_module_is_picked_up_with_common_options(monkeypatch, capsys):
    seen = {}
    _register(monkeypatch, "hello", _module("hello", lambda args: seen.update(vars(args)) or 0))
    assert cli.main(["hello", "--debug"]) == 0
    assert seen["debug"] is True and seen["command"] == "hello"
    assert cli.main(["--debug", "hello"]) == 0 and seen["debug"] is True


def test_a_broken_subcommand_does_not_break_the_others(monkeypatch, capsys):
    monkeypatch.setattr(cli, "SUBCOMMANDS", (*cli.SUBCOMMANDS, "broken"))
    real = cli._load_subcommand
    monkeypatch.setattr(
        cli, "_load_subcommand", lambda name: ImportError("needs streamlit") if name == "broken" else real(name)
    )
    assert cli.main(["broken"]) == 2
    assert "the 'broken' command is unavailable: ImportError: needs streamlit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["info", "--help"])
    assert info.value.code == 0


@pytest.mark.parametrize(
    "error, code, expected",
    [
        (ImageError("photo.jpg: truncated\nJPEG data"), 2, "edgeskin: error: photo.jpg: truncated JPEG data\n"),
        (PermissionError(13, "Permission denied"), 2, "edgeskin: error: [Errno 13] Permission denied\n"),
        (KeyboardInterrupt(), 130, "edgeskin: interrupted\n"),
    ],
)
def test_errors_become_one_line_without_traceback(monkeypatch, capsys, error, code, expected):
    def run(args):
        raise error

    _register(monkeypatch, "boom", _module("boom", run))
    assert cli.main(["boom"]) == code
    assert capsys.readouterr().err == expected


def test_debug_re_raises(monkeypatch):
    def run(args):
        raise ImageError("bad")

    _register(monkeypatch, "boom", _module("boom", run))
    with pytest.raises(ImageError):
        cli.main(["boom", "--debug"])


def test_bugs_are_not_hidden(monkeypatch):
    def run(args):
        raise ZeroDivisionError

    _register(monkeypatch, "boom", _module("boom", run))
    with pytest.raises(ZeroDivisionError):
        cli.main(["boom"])
