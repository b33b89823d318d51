"""Replacing the shipped models, only when asked: what ``--ship`` and ``make ship-*`` run.

Exports and the model card write to the folder their ``--out`` names, never into ``edgeskin/models``
(:func:`refuse_shipped_folder`). ``--ship`` then copies the files made there into ``edgeskin/models`` and says,
file by file, what each one replaced (:func:`ship`). Run alone, it ships files an earlier export made::

    python -m convert.ship artifacts/export/classifier/edgeskin-mnv2-cls.tflite

A ``.tflite`` travels with its spec (``<stem>.json`` beside it), whose SHA-256 must be the file's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeskin.models import MODELS_DIR
from edgeskin.runtime.spec import sha256_file

SHIPPED_DIR = MODELS_DIR


class ShipError(Exception):
    """A file cannot be shipped, or a command would write into the shipped folder without ``--ship``."""


def is_shipped_folder(path: str | Path, shipped: Path | None = None) -> bool:
    """Whether ``path`` is the shipped models folder (however it is spelled)."""
    return Path(path).resolve() == Path(shipped or SHIPPED_DIR).resolve()


def refuse_shipped_folder(out: str | Path, option: str = "--out", shipped: Path | None = None) -> None:
    """Raise :class:`ShipError` when ``out`` is the shipped models folder: exports write to a folder of their own.

    Called before any work, so a long export never ends by overwriting the shipped model.
    """
    if is_shipped_folder(out, shipped):
        raise ShipError(
            f"{option}: expected a folder of your own, got the shipped models folder {out}; write the export "
            "elsewhere and add --ship to replace the shipped model (it says what it replaced)"
        )


def refuse_shipped_out(parser: argparse.ArgumentParser, out: str | Path) -> None:
    """:func:`refuse_shipped_folder` for a script's ``--out``: a refusal ends it with ``parser.error`` (exit 2)."""
    try:
        refuse_shipped_folder(out)
    except ShipError as exc:
        parser.error(str(exc))


def files_to_ship(paths: Sequence[str | Path]) -> list[Path]:
    """``paths`` with each ``.tflite``'s spec added, checked: every file exists, every spec matches its model.

    Raises:
        ShipError: a file is missing, or a spec's ``sha256`` is not its model's.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise ShipError(f"nothing to ship: {path} does not exist")
        files.append(path)
        if path.suffix != ".tflite":
            continue
        spec = path.with_suffix(".json")
        if not spec.is_file():
            raise ShipError(f"{path}: expected its spec {spec.name} beside it, found none")
        recorded = json.loads(spec.read_text()).get("sha256")
        if recorded != sha256_file(path):
            raise ShipError(f"{spec}: its sha256 {recorded} is not that of {path.name}; export again")
        if spec not in files:
            files.append(spec)
    return files


def _describe(path: Path) -> str:
    """A file's short identity for the ship log: SHA-256 prefix, and a spec's date when it has one."""
    text = f"sha256 {sha256_file(path)[:12]}"
    if path.suffix == ".json":
        try:
            provenance = json.loads(path.read_text()).get("provenance") or {}
        except ValueError:
            return text
        if provenance.get("date"):
            text += f", exported {provenance['date']}"
    return text


def ship(paths: Sequence[str | Path], shipped: Path | None = None) -> list[str]:
    """Copy ``paths`` (with their specs, :func:`files_to_ship`) into ``shipped`` (default: the shipped models
    folder); one line per file says what it replaced (or that it is new, or unchanged). Nothing is copied when
    any file fails the checks."""
    files = files_to_ship(paths)
    shipped = Path(shipped or SHIPPED_DIR)
    shipped.mkdir(parents=True, exist_ok=True)
    lines = []
    for source in files:
        target = shipped / source.name
        if source.resolve() == target.resolve():
            lines.append(f"{target}: already the shipped file")
            continue
        if not target.is_file():
            lines.append(f"{target}: added ({_describe(source)})")
        elif sha256_file(target) == sha256_file(source):
            lines.append(f"{target}: unchanged ({_describe(source)})")
        else:
            lines.append(f"{target}: replaced {_describe(target)} with {_describe(source)}")
        shutil.copyfile(source, target)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convert.ship", description="Replace shipped models with exported ones, saying what changed."
    )
    parser.add_argument("files", nargs="+", help="exported .tflite files (their .json specs go too) or model cards")
    args = parser.parse_args(argv)
    try:
        lines = ship(args.files)
    except ShipError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.ship")
