"""Train the YOLOv5n lesion detector (one class, "lesion") from scratch, fully offline, and evaluate it on PH2.

Steps (``python -m training.train_detector --help``):

1. build the YOLO dataset with :mod:`training.detector_data` (PH2 training half, derived HAM10000 boxes,
   composites; the PH2 validation half is never written into it),
2. train ``yolov5n.yaml`` from scratch with ultralytics on CPU (or a GPU when present) with no downloads,
   no auto-install and no pretrained weights; the wall-clock budget is ultralytics' ``time`` option,
3. evaluate ``best.pt`` on the held-out PH2 images against the classical baseline and write
   ``metrics.json`` beside the weights.

Offline: :func:`apply_offline_settings` must run before ultralytics is imported (it sets ``YOLO_OFFLINE``,
``YOLO_AUTOINSTALL=false``, a project-local ``YOLO_CONFIG_DIR`` holding a local font for the plots, and
turns ultralytics' analytics sync off). The AMP check (which downloads weights) only runs on CUDA and is
disabled with ``amp=False`` there too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeskin.core.boxes import xywh_to_xyxy
from edgeskin.evaluation import detection_report, stratified_sample
from training.detector_data import (
    build_dataset,
    load_dataset_config,
    load_ph2,
    mask_to_box,
    read_mask,
    read_rgb,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG = logging.getLogger("edgeskin.train_detector")
DEFAULT_CONFIG = REPO_ROOT / "training" / "configs" / "detector.yaml"
DEFAULT_OUT = REPO_ROOT / "artifacts" / "detector"
TRAIN_DEFAULTS: dict = {
    "model": "yolov5n.yaml",
    "imgsz": 320,
    "epochs": 30,
    "batch": 32,
    "seed": 0,
    "workers": 2,
    "time_hours": None,
}


def apply_offline_settings(config_dir: str | Path = DEFAULT_OUT / "yolo_config") -> Path:
    """Make ultralytics work with no network: call before the first ``import ultralytics``.

    Returns:
        The ultralytics config directory used.
    """
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"  # is_online() -> False: no hub, no update checks
    os.environ["YOLO_AUTOINSTALL"] = "false"  # check_requirements never pip-installs
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Plots want Arial.ttf and would download it; give them matplotlib's bundled DejaVu Sans instead.
    try:
        import matplotlib

        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if font.is_file() and not (config_dir / name).exists():
                shutil.copyfile(font, config_dir / name)
    except ImportError:  # pragma: no cover - matplotlib comes with ultralytics
        pass
    from training.torch_compat import ensure_torchvision_cpu_ops

    ensure_torchvision_cpu_ops()
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    return config_dir


# ------------------------------------------------------------------------------------------ evaluation
def evaluate_detector(
    predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    items: Sequence,
) -> dict:
    """Box metrics of a predictor on images with masks or boxes: :func:`edgeskin.evaluation.detection_report`.

    Args:
        predict: ``image_rgb -> (boxes xyxy (N, 4) in frame pixels, scores (N,))`` after NMS.
        items: objects with ``image_id``, ``image_path`` and ``mask_path`` (or :class:`LabelledImage`).
    """
    ids, truths, predictions = [], [], []
    for item in items:
        ids.append(item.image_id)
        truths.append(_truth_boxes(item))
        predictions.append(predict(read_rgb(item.image_path)))
    return detection_report(truths, predictions, image_ids=ids)


@dataclass(frozen=True)
class LabelledImage:
    """An image with known boxes (xyxy pixels), e.g. a composite scene from a YOLO label file."""

    image_id: str
    image_path: str
    boxes: tuple[tuple[float, float, float, float], ...]


def _truth_boxes(item) -> np.ndarray:
    if isinstance(item, LabelledImage):
        return np.asarray(item.boxes, np.float32).reshape(-1, 4)
    return mask_to_box(read_mask(item.mask_path))[None, :]


def read_yolo_boxes(label_path: str | Path, width: int, height: int) -> np.ndarray:
    """A YOLO label file (``class cx cy w h`` per line, normalised) → ``(N, 4)`` xyxy boxes in pixels."""
    rows = [line.split() for line in Path(label_path).read_text().splitlines() if line.strip()]
    bad = [row for row in rows if len(row) != 5]
    if bad:
        raise ValueError(f"{label_path}: expected 'class cx cy w h' per line, got {' '.join(bad[0])!r}")
    xywh = np.array([[float(v) for v in row[1:]] for row in rows], np.float32).reshape(-1, 4)
    return xywh_to_xyxy(xywh * np.array([width, height, width, height], np.float32))


def yolo_labelled_images(dataset_dir: Path, split: str, prefix: str) -> list[LabelledImage]:
    """Images of a YOLO dataset split whose names start with ``prefix``, with their boxes in pixels."""
    import cv2

    items = []
    for image_path in sorted((dataset_dir / "images" / split).glob(f"{prefix}*.jpg")):
        label_path = dataset_dir / "labels" / split / f"{image_path.stem}.txt"
        height, width = cv2.imread(str(image_path)).shape[:2]
        boxes = read_yolo_boxes(label_path, width, height)
        items.append(LabelledImage(image_path.stem, str(image_path), tuple(tuple(float(v) for v in b) for b in boxes)))
    return items


def ultralytics_predictor(weights: str | Path, imgsz: int, conf: float = 0.25, iou: float = 0.45):
    """``image_rgb -> (boxes, scores)`` with an ultralytics model (float PyTorch or an exported file)."""
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")

    def predict(image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = model.predict(image_rgb[..., ::-1], imgsz=imgsz, conf=conf, iou=iou, verbose=False)[0]
        return result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy()

    return predict


def classical_predictor(image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classical baseline as a predictor (score 1 for its single box)."""
    from edgeskin.core.localize import classical_box

    box = classical_box(image_rgb)
    if box is None:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    return box[None, :], np.ones(1, np.float32)


def ph2_validation_items(dataset_dir: Path, config) -> list:
    """The held-out PH2 items named in the dataset's ``ph2_split.json``."""
    split = json.loads((dataset_dir / "ph2_split.json").read_text())
    val = set(split["val"])
    root = getattr(config, "ph2_root", None) or Path(config.data_root) / "ph2"
    return [item for item in load_ph2(root) if item.image_id in val]


def data_recipe(path: str | Path) -> str:
    """The config's ``data.recipe``: ``masks`` (training/detector_masks.py) or ``classic`` (detector_data)."""
    import yaml

    section = (yaml.safe_load(Path(path).read_text()) or {}).get("data", {}) or {} if Path(path).is_file() else {}
    return str(section.get("recipe", "classic"))


def load_data_config(path: str | Path):
    """``(config, build_function)`` for the config's data recipe."""
    if data_recipe(path) == "masks":
        from training.detector_masks import build_mask_dataset, load_mask_dataset_config

        return load_mask_dataset_config(path), build_mask_dataset
    return load_dataset_config(path), build_dataset


# -------------------------------------------------------------------------------------------- training
def load_train_config(path: str | Path) -> dict:
    import yaml

    section = (yaml.safe_load(Path(path).read_text()) or {}).get("train", {}) or {}
    return {**TRAIN_DEFAULTS, **section}


RESUME_CHECKPOINT = "resume.pt"  # last.pt as saved at a budget stop, before ultralytics strips its optimizer


def budget_callback(budget_s: float, started: float):
    """An ultralytics ``on_fit_epoch_end`` callback: stop at the epoch boundary when the next epoch would not fit.

    Ultralytics strips the optimizer from ``last.pt`` when a run ends, so the epoch's full checkpoint (weights,
    EMA, optimizer, epoch) is kept as ``weights/resume.pt`` first: ``--resume`` continues from it.
    """

    def on_fit_epoch_end(trainer) -> None:
        epoch_s = getattr(trainer, "epoch_time", None) or 0.0
        left = budget_s - (time.time() - started)
        if trainer.epoch + 1 < trainer.epochs and left < 1.1 * epoch_s:
            LOG.info("time budget: %.0f s left, an epoch takes %.0f s: stopping after epoch %d", left, epoch_s,
                     trainer.epoch + 1)  # fmt: skip
            shutil.copyfile(trainer.last, Path(trainer.last).with_name(RESUME_CHECKPOINT))
            trainer.stop = True

    return on_fit_epoch_end


def train(dataset_dir: Path, run_dir: Path, options: dict, budget_s: float | None = None, resume: bool = False) -> Path:
    """Train with ultralytics, or continue ``run_dir``'s checkpoint; returns the path of ``best.pt``.

    A run stopped by ``budget_s`` leaves ``weights/resume.pt``; a run that reaches its last epoch removes it.
    """
    from ultralytics import YOLO

    options = dict(options)
    model_cfg = options.pop("model")
    time_hours = options.pop("time_hours", None)
    started = time.time()
    weights = run_dir / "weights"
    stop_marker = weights / RESUME_CHECKPOINT
    if resume:
        checkpoint = next((p for p in (stop_marker, weights / "last.pt") if p.is_file()), None)
        if checkpoint is None:
            raise FileNotFoundError(f"nothing to resume: no {RESUME_CHECKPOINT} or last.pt in {weights}")
        model = YOLO(str(checkpoint), task="detect")
        arguments = {"resume": str(checkpoint), "data": str(dataset_dir / "data.yaml")}
    else:
        # A .pt model continues from its weights (ultralytics builds the cfg afresh and loads them only when pretrained).
        model = YOLO(model_cfg, task="detect")
        arguments = {
            "data": str(dataset_dir / "data.yaml"),
            "project": str(run_dir.parent),
            "name": run_dir.name,
            "exist_ok": True,
            "pretrained": str(model_cfg).endswith(".pt"),
            "amp": False,
            "plots": True,
            "device": "cpu" if not _cuda_available() else 0,
            "deterministic": False,
            "verbose": True,
            **({"time": time_hours} if time_hours else {}),
            **options,
        }
    stamp = stop_marker.stat().st_mtime if stop_marker.is_file() else None
    if budget_s is not None:
        model.add_callback("on_fit_epoch_end", budget_callback(budget_s, started))
    model.train(**arguments)
    if stop_marker.is_file() and stop_marker.stat().st_mtime == stamp:
        stop_marker.unlink()  # this call ran to the last epoch: the earlier stop's checkpoint is spent
    return weights / "best.pt"


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML with 'data' and 'train' sections")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="work dir: dataset/, run/, metrics.json")
    parser.add_argument("--skip-dataset", action="store_true", help="reuse an existing OUT/dataset")
    parser.add_argument("--skip-train", action="store_true", help="only evaluate OUT/run/weights/best.pt")
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--time-hours", type=float,
                        help="override train.time_hours (ultralytics' 'time': it refits the epochs and the schedule)")  # fmt: skip
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="stop at the last epoch boundary inside this many seconds, resumable (exit status 3)")  # fmt: skip
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT/run from its last checkpoint (weights, EMA, optimizer, epoch), with its args")  # fmt: skip
    parser.add_argument("--init", help="continue from these ultralytics weights (.pt) instead of train.model")
    # A quick check of the whole chain: e.g. --fraction 0.05 --epochs 1 --limit 10 (with --skip-dataset when built).
    parser.add_argument("--fraction", type=float,
                        help="train on this share of the training images (ultralytics' 'fraction'; a quick run)")  # fmt: skip
    parser.add_argument("--limit", type=int, metavar="N",
                        help="evaluate on a seeded random sample of N held-out PH2 images, not all (a quick run)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.fraction is not None and not 0 < args.fraction <= 1:
        parser.error(f"--fraction: expected a share in (0, 1], got {args.fraction}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit: expected a positive number, got {args.limit}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    apply_offline_settings(out / "yolo_config")
    data_config, build = load_data_config(args.config)
    options = load_train_config(args.config)
    if args.epochs:
        options["epochs"] = args.epochs
    if args.time_hours:
        options["time_hours"] = args.time_hours
    if args.init:
        options["model"] = args.init
    if args.fraction is not None:
        options["fraction"] = args.fraction
    dataset_dir = out / "dataset"
    timings: dict[str, float] = {}
    if not args.skip_dataset:
        started = time.time()
        manifest = build(dataset_dir, data_config)
        timings["dataset_s"] = round(time.time() - started, 1)
        LOG.info("dataset: %s", json.dumps(manifest["counts"]))
    run_dir = out / "run"
    best = run_dir / "weights" / "best.pt"
    if not args.skip_train:
        started = time.time()
        best = train(dataset_dir, run_dir, options, budget_s=args.time_budget, resume=args.resume)
        timings["train_s"] = round(time.time() - started, 1)
        if (run_dir / "weights" / RESUME_CHECKPOINT).is_file():
            LOG.info("stopped by the time budget; continue with: python -m training.train_detector --config %s "
                     "--out %s --skip-dataset --resume", args.config, out)  # fmt: skip
            return 3
        LOG.info("training took %.1f min; best weights %s", timings["train_s"] / 60, best)
    items = ph2_validation_items(dataset_dir, data_config)
    if args.limit is not None:
        items = [items[i] for i in stratified_sample(np.zeros(len(items)), args.limit)]
    LOG.info("evaluating on %d held-out PH2 images", len(items))
    metrics = {
        "float": evaluate_detector(ultralytics_predictor(best, options["imgsz"]), items),
        "classical_baseline": evaluate_detector(classical_predictor, items),
        "timings": timings,
        "train_options": options,
        "command": "python -m training.train_detector " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    for name in ("float", "classical_baseline"):
        shown = {k: v for k, v in metrics[name].items() if k != "per_image"}
        print(f"{name}: {json.dumps(shown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
