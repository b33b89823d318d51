"""edgeskin.report.torch_compat: torchvision's NMS works on a CPU-only torch, identical to a brute-force reference."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.train
if importlib.util.find_spec("torchvision") is None:
    pytest.skip("torchvision is not installed", allow_module_level=True)

from edgeskin.report.torch_compat import ensure_torchvision_cpu_ops, greedy_nms  # noqa: E402


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Textbook greedy NMS, one pair at a time, in float32 like torchvision's CPU kernel."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    suppressed = [False] * len(scores)
    keep = []
    for a_pos, a in enumerate(order):
        if suppressed[a]:
            continue
        keep.append(a)
        for b in order[a_pos + 1 :]:
            if suppressed[b]:
                continue
            ax0, ay0, ax1, ay1 = boxes[a]
            bx0, by0, bx1, by1 = boxes[b]
            w = np.float32(max(np.float32(0), min(ax1, bx1) - max(ax0, bx0)))
            h = np.float32(max(np.float32(0), min(ay1, by1) - max(ay0, by0)))
            inter = np.float32(w * h)
            area_a = np.float32((ax1 - ax0) * (ay1 - ay0))
            area_b = np.float32((bx1 - bx0) * (by1 - by0))
            if float(inter / np.float32(area_a + area_b - inter)) > threshold:
                suppressed[b] = True
    return keep


def random_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
    wh = rng.uniform(5, 40, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[: n // 10] = scores[n // 10 : 2 * (n // 10)]  # ties, broken by index like a stable sort
    return boxes, scores


@pytest.mark.parametrize("seed,n,threshold", [(0, 200, 0.5), (1, 50, 0.3), (2, 300, 0.7), (3, 1, 0.5)])
def test_torchvision_nms_matches_brute_force(seed: int, n: int, threshold: float) -> None:
    state = ensure_torchvision_cpu_ops()
    assert state in ("native", "pure_torch")
    import torchvision

    boxes, scores = random_boxes(np.random.default_rng(seed), n)
    kept = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
    assert kept.dtype == torch.int64
    assert kept.tolist() == brute_force_nms(boxes, scores, threshold)


def test_greedy_nms_edge_cases() -> None:
    empty = greedy_nms(torch.zeros((0, 4)), torch.zeros((0,)), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    same = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert greedy_nms(same, torch.tensor([0.9, 0.8, 0.1]), 0.5).tolist() == [0, 2]
    # IoU exactly at the threshold is kept (suppression needs IoU > threshold).
    half = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]])
    assert greedy_nms(half, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    with pytest.raises(RuntimeError, match="boxes should be"):
        greedy_nms(torch.zeros((3, 5)), torch.zeros(3), 0.5)


def test_batched_nms_and_idempotence() -> None:
    assert ensure_torchvision_cpu_ops() == ensure_torchvision_cpu_ops()
    import torchvision

    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]])
    kept = torchvision.ops.batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), 0.5)
    assert kept.tolist() == [0, 2]


def test_ultralytics_imports_in_a_fresh_process() -> None:
    pytest.importorskip("ultralytics")
    code = (
        "from edgeskin.report.torch_compat import ensure_torchvision_cpu_ops as e; s = e(); "
        "import torchvision, ultralytics, sys; "
        "from ultralytics.utils.nms import non_max_suppression; import torch; "
        "p = torch.zeros(1, 5, 3); p[0, :4] = torch.tensor([[10., 10, 40], [10, 10, 40], [8, 8, 8], [8, 8, 8]]); "
        "p[0, 4] = torch.tensor([.9, .8, .7]); out = non_max_suppression(p, conf_thres=.25, iou_thres=.5); "
        "assert 'torchvision' in sys.modules and out[0].shape[0] == 2, out; print(s)"
    )
    env = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "PATH": "/usr/bin:/bin"}
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env.update(
        {
            "PYTHONPATH": str(root),
            "HOME": os.environ.get("HOME", "/tmp"),
            "YOLO_CONFIG_DIR": str(root / "artifacts" / "test_yolo_config"),
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=root
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] in ("native", "pure_torch")


def test_noop_when_compiled_ops_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the ops already defined (the compiled extension loaded), nothing is registered again."""
    import edgeskin.report.torch_compat as compat

    monkeypatch.setattr(compat, "_STATE", None)
    monkeypatch.setattr(compat, "_op_defined", lambda name: True)
    registered = []
    monkeypatch.setattr(compat.torch.library, "Library", lambda *a, **k: registered.append(a))
    assert compat.ensure_torchvision_cpu_ops() == "native"
    assert registered == []
