"""The model card: rendered from the specs, the same before and after its split into parts, and it flags what a
reader must not miss."""

from __future__ import annotations

import json

from convert.model_card import _reproducible, classifier_section
from edgeskin.models import MODELS_DIR


def _shipped_spec() -> dict:
    return json.loads((MODELS_DIR / "edgeskin-mnv2-cls.json").read_text())


def test_a_temperature_stuck_at_its_search_bound_is_flagged():
    spec = _shipped_spec()
    spec["calibration"] = {**spec["calibration"], "temperature": 19.999, "temperature_at_bound": True}
    assert "Temperature 19.999 (**at the bound of its search**" in classifier_section(spec, 1)
    spec["calibration"]["temperature_at_bound"] = False
    text = classifier_section(spec, 1)
    assert "Temperature 19.999, then" in text and "at the bound" not in text


def test_an_old_export_command_is_rendered_as_one_that_runs_today():
    old = "python -m convert.export_classifier --run R --ship best --out O"
    assert _reproducible(old) == "python -m convert.export_classifier --run R --choose best --out O"
    today = "python -m convert.export_classifier --run R --choose qat --out O --ship"
    assert _reproducible(today) == today


def test_the_shipped_card_section_renders_every_table():
    text = classifier_section(_shipped_spec(), 1)
    for heading in ("### Internal validation", "### External checks", "### Float against INT8", "### Calibration"):
        assert heading in text
    assert "| 7 dx (ak+scc=akiec) balanced accuracy |" in text
