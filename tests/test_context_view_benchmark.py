"""benchmarks/context_view.py: the grid of docs/context-view.md, the selection criterion, scores from the cache."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.context_view import choose, grid, melanoma_scores, rule_name, rules
from edgeskin.core.context import ContextRule

LABELS = ["ak", "bcc", "bkl", "df", "mel", "nv", "scc", "vasc"]


def test_the_grid_is_the_documents():
    candidates = rules()
    assert len(candidates) == 85 and candidates[0] is None  # 14 triggers x 2 contexts x 3 combinations + none
    assert len({rule_name(r) for r in candidates}) == 85
    assert ContextRule(math.inf, 0.5, "frame", "max_mel") in candidates
    assert rule_name(ContextRule(math.inf, 0.5, "frame", "max_mel")) == "u>off or f>0.5, frame, max_mel"


def _entry(name, mean, margins, rate, context="frame", combination="mean"):
    return {
        "rule": name,
        "params": {"context": context, "combination": combination},
        "mean_auc": mean,
        "margins": dict(zip(("ham10000", "isic2017"), margins, strict=True)),
        "internal_trigger_rate": rate,
    }


@pytest.mark.parametrize(
    ("entries", "chosen", "passed"),
    [
        # the best mean AUC fails one source by more than 0.01: the next best
        ([_entry("a", 0.90, (0.05, -0.02), 0.1), _entry("b", 0.85, (0.0, -0.005), 0.1)], "b", True),
        # a tie to three decimals: fewer triggers
        ([_entry("a", 0.8103, (0, 0), 0.5), _entry("b", 0.8101, (0, 0), 0.4)], "b", True),
        # a tie in AUC and triggers: the frame context, then mean before logit before max_mel
        ([_entry("a", 0.81, (0, 0), 0.4, "grown"), _entry("b", 0.81, (0, 0), 0.4, "frame", "max_mel")], "b", True),
        (
            [_entry("a", 0.81, (0, 0), 0.4, "frame", "max_mel"), _entry("b", 0.81, (0, 0), 0.4, "frame", "logit")],
            "b",
            True,
        ),
        # not a tie: the higher mean wins though it triggers more
        ([_entry("a", 0.812, (0, 0), 0.9), _entry("b", 0.810, (0, 0), 0.1)], "a", True),
        # none passes: the largest smallest margin, reported as failing
        ([_entry("a", 0.9, (0.1, -0.05), 0.1), _entry("b", 0.8, (-0.02, -0.03), 0.1)], "b", False),
    ],
)
def test_the_selection_criterion(entries, chosen, passed):
    entry, ok = choose({"rules": entries})
    assert entry["rule"] == chosen and ok is passed


def _row(source, dx, crop, whole, box, size=(256, 256)):
    return {
        "source": source,
        "dx": dx,
        "size": list(size),
        "crop": crop,
        "whole_tta": whole,
        "whole_one": whole,
        "grown_one": whole,
        "box": box,
        "crop_box": [0, 0, size[0], size[1]],
    }


def test_scores_from_the_cache_follow_the_rule():
    low, high = [0.1] * 4 + [0.3] + [0.1] * 3, [0.4 / 7] * 4 + [0.6] + [0.4 / 7] * 3  # each sums to 1
    rows = [
        _row("ham10000", "mel", low, high, [0, 0, 200, 200]),  # 61% of the frame
        _row("ham10000", "nv", high, low, [0, 0, 100, 100]),  # 15%
        _row("ham10000", "mel", None, high, None),  # no answer: scores 0
    ]
    cache = {"labels": LABELS, "input_size": [192, 192], "rows": rows}
    scores, fired = melanoma_scores(cache, rows, None)
    np.testing.assert_allclose(scores, [0.3, 0.6, 0.0], atol=1e-6)
    assert not fired.any()
    scores, fired = melanoma_scores(cache, rows, ContextRule(area=0.5, combination="max_mel"))
    np.testing.assert_allclose(scores, [0.6, 0.6, 0.0], atol=1e-6)
    assert fired.tolist() == [True, False, False]
    scores, _ = melanoma_scores(cache, rows, ContextRule(area=0.5, combination="mean"))
    assert scores[0] == pytest.approx(0.45)


def test_the_grid_reports_every_source_and_rule():
    rng = np.random.default_rng(0)
    rows = []
    for source in ("ham10000", "isic2017", "ph2", "isic2017_holdout"):
        for i in range(12):
            p = rng.dirichlet(np.ones(8)).tolist()
            rows.append(_row(source, "mel" if i % 3 == 0 else "nv", p, p[::-1], [0, 0, 40 + 15 * i, 40 + 15 * i]))
    table = grid({"labels": LABELS, "input_size": [192, 192], "rows": rows})
    assert set(table["sources"]) == {"ham10000", "isic2017", "ph2", "isic2017_holdout"}
    assert len(table["rules"]) == 85
    none = table["rules"][0]
    for source in ("ham10000", "isic2017"):
        assert none["sources"][source]["auc"] == pytest.approx(table["sources"][source]["crop_only_auc"])
        assert none["sources"][source]["trigger_rate"] == 0.0
