"""Exports and the model card write where ``--out`` says; only ``--ship`` replaces a shipped model, and says what."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from convert import ship as ship_module
from convert.ship import ShipError, files_to_ship, ship
from edgeskin.models import MODELS_DIR
from edgeskin.runtime.spec import sha256_file


def _shipped_state() -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(MODELS_DIR.iterdir()) if path.is_file()}


def _export_classifier(argv):
    from convert.export_classifier import main

    return main(argv)


def _export_detector(argv):
    from convert.export_detector import main

    return main(argv)


def _model_card(argv):
    from convert.model_card import main

    return main(argv)


def _refit_head(argv):
    from convert.refit_head import main

    return main(argv)


def _export_detector_edgetpu(argv):
    from convert.export_detector_edgetpu import main

    return main(argv)


# Each command pointed at the shipped folder; everything else it needs is a folder that has nothing in it, so
# only the refusal (made before any work) can stop it early with exit code 2 and the --ship hint.
REFUSALS = {
    "export_classifier": (_export_classifier, ["--run", "{tmp}", "--out", "{shipped}", "--choose", "best"]),
    "export_detector": (_export_detector, ["--work", "{tmp}", "--out", "{shipped}"]),
    "model_card": (_model_card, ["--out", "{shipped}"]),
    "refit_head": (_refit_head, ["--run", "{tmp}", "--out", "{shipped}"]),
    "export_detector_edgetpu": (
        _export_detector_edgetpu,
        ["--weights", "{tmp}/best.pt", "--dataset", "{tmp}", "--out", "{shipped}"],
    ),
}


@pytest.mark.parametrize("command", sorted(REFUSALS))
@pytest.mark.parametrize("spelling", ["absolute", "relative"])
def test_a_command_refuses_to_write_into_the_shipped_folder(command, spelling, tmp_path, capsys, monkeypatch):
    run, template = REFUSALS[command]
    shipped = str(MODELS_DIR)
    if spelling == "relative":
        monkeypatch.chdir(MODELS_DIR.parent)
        shipped = "./models/../models"
    before = _shipped_state()
    argv = [arg.format(tmp=tmp_path, shipped=shipped) for arg in template]
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 2
    error = capsys.readouterr().err
    assert "--out: expected a folder of your own" in error and "--ship" in error
    assert _shipped_state() == before


def test_export_classifier_needs_an_out_folder(capsys):
    with pytest.raises(SystemExit) as exc:
        _export_classifier(["--run", "nowhere"])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_export_classifier_choose_qat_needs_a_qat_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _export_classifier(["--run", str(tmp_path), "--out", str(tmp_path / "out"), "--choose", "qat"])
    assert exc.value.code == 2
    assert "--qat-epochs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_detector_weights_default_follows_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _export_detector(["--work", str(tmp_path)])
    assert exc.value.code == 2
    assert str(tmp_path / "run" / "weights" / "best.pt") in capsys.readouterr().err
    assert not (tmp_path / "export").exists()  # the default --out (WORK/export) is made only when work starts


def _exported(folder: Path, name: str, payload: bytes, date: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{name}.tflite"
    model.write_bytes(payload)
    spec = {"name": name, "sha256": sha256_file(model), "provenance": {"date": date}}
    model.with_suffix(".json").write_text(json.dumps(spec))
    return model


def test_ship_replaces_and_says_what_it_replaced(tmp_path):
    shipped = tmp_path / "shipped"
    old = _exported(shipped, "m", b"old model", "2026-01-01")
    new = _exported(tmp_path / "export", "m", b"new model", "2026-12-07")
    old_sha, new_sha = sha256_file(old), sha256_file(new)

    lines = ship([new], shipped=shipped)

    assert (shipped / "m.tflite").read_bytes() == b"new model"
    assert json.loads((shipped / "m.json").read_text())["sha256"] == new_sha
    assert len(lines) == 2
    assert lines[0] == f"{shipped / 'm.tflite'}: replaced sha256 {old_sha[:12]} with sha256 {new_sha[:12]}"
    assert "replaced" in lines[1] and "exported 2026-01-01" in lines[1] and "exported 2026-12-07" in lines[1]


def test_ship_says_added_and_unchanged(tmp_path):
    shipped = tmp_path / "shipped"
    new = _exported(tmp_path / "export", "m", b"model", "2026-12-07")
    assert all(": added (" in line for line in ship([new], shipped=shipped))
    assert all(": unchanged (" in line for line in ship([new], shipped=shipped))


def test_ship_refuses_a_spec_of_another_model_and_copies_nothing(tmp_path):
    shipped = tmp_path / "shipped"
    old = _exported(shipped, "m", b"old model", "2026-01-01")
    new = _exported(tmp_path / "export", "m", b"new model", "2026-12-07")
    new.write_bytes(b"changed after the spec was written")
    with pytest.raises(ShipError, match="sha256"):
        ship([new], shipped=shipped)
    assert old.read_bytes() == b"old model"


def test_ship_refuses_a_model_without_its_spec(tmp_path):
    lonely = tmp_path / "m.tflite"
    lonely.write_bytes(b"x")
    with pytest.raises(ShipError, match="m.json"):
        files_to_ship([lonely])


def test_model_card_writes_to_out_and_ships_only_when_asked(tmp_path, monkeypatch, capsys):
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    card_before = (models / "MODEL_CARD.md").read_bytes()
    monkeypatch.setattr(ship_module, "SHIPPED_DIR", models)

    assert _model_card(["--models", str(models), "--out", str(tmp_path / "card")]) == 0
    written = (tmp_path / "card" / "MODEL_CARD.md").read_text()
    assert "# edgeskin model card" in written
    assert (models / "MODEL_CARD.md").read_bytes() == card_before

    assert _model_card(["--models", str(models), "--out", str(tmp_path / "card"), "--ship"]) == 0
    assert (models / "MODEL_CARD.md").read_text() == written
    assert f"{models / 'MODEL_CARD.md'}: " in capsys.readouterr().out


def test_the_ship_command_gives_one_line_errors(tmp_path, capsys):
    assert ship_module.main([str(tmp_path / "absent.tflite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
