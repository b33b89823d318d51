"""Average the weights of two classifiers of one lineage (a "model soup"), the mix chosen on the internal validation.

Example (run 2's EMA weights and run 3b's raw weights, three mixes)::

    python -m convert.soup --models artifacts/classifier2/model.keras artifacts/classifier3b/checkpoint.keras \
        --alphas 0.25,0.5,0.75 --run artifacts/classifier3b --out artifacts/classifier-soup

For each ``alpha`` the weights are ``(1 - alpha) * first + alpha * second``, every floating array alike
(BatchNormalization's moving statistics included; other arrays are the first model's). Averaging works for
models that share a starting point and so lie in one basin, as a run and its continuation do, not for two
independent trainings. Each mix is scored as the export deploys it, in float: logits averaged over the
test-time views, on ``--run``'s internal validation split (``split.json``; ``config.json`` gives the data and
the crops). The mix with the highest 7-dx balanced accuracy is kept; a tie goes to the smaller ``alpha``. No
external image is read.

Writes to ``--out``: ``model.keras`` (the chosen mix), ``config.json`` and ``split.json`` (copied from
``--run``, so ``convert.export_classifier --run OUT --checkpoint model.keras`` exports it) and ``soup.json``
(every mix's metrics and the choice).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("soup")


def mix_weights(first: list[np.ndarray], second: list[np.ndarray], alpha: float) -> list[np.ndarray]:
    """``(1 - alpha) * first + alpha * second`` for floating arrays; other arrays are ``first``'s.

    Raises:
        ValueError: the two lists do not hold arrays of the same shapes (not the same architecture).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    if len(first) != len(second) or any(a.shape != b.shape for a, b in zip(first, second, strict=True)):
        raise ValueError("the two models' weights differ in number or shape: not the same architecture")
    return [
        ((1.0 - alpha) * a.astype(np.float64) + alpha * b.astype(np.float64)).astype(a.dtype)
        if np.issubdtype(a.dtype, np.floating)
        else a.copy()
        for a, b in zip(first, second, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs=2, required=True, metavar=("FIRST", "SECOND"), help="two .keras models")
    parser.add_argument("--alphas", default="0.25,0.5,0.75", help="weights of SECOND to try (comma-separated)")
    parser.add_argument("--run", required=True, help="training run folder whose config.json and split.json to use")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tta", default="identity,hflip,vflip,rot180", help="test-time views, as the export")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        parser.error(f"--alphas: expected values in [0, 1], got {args.alphas!r}")

    import keras

    from convert.export_classifier import classification_metrics, deployable, float_logits_per_view, load_run, tta_views
    from edgeskin.tasks.classifier import softmax

    started = time.time()
    run, out = Path(args.run), Path(args.out)
    loaded = load_run(run)
    val = loaded.val
    x_val = loaded.maker.validation(loaded.val_index, loaded.config["crop"]["val_margin"])
    views = tta_views(args.tta, loaded.config["input_size"])

    model = keras.models.load_model(args.models[0], compile=False)
    first = [np.asarray(w) for w in model.get_weights()]
    second = [np.asarray(w) for w in keras.models.load_model(args.models[1], compile=False).get_weights()]
    mixes = []
    for alpha in alphas:
        model.set_weights(mix_weights(first, second, alpha))
        logits = float_logits_per_view(deployable(model), x_val, views).mean(axis=0)
        metrics = classification_metrics(val.labels, softmax(logits))
        mixes.append({"alpha": alpha, "float_views": metrics})
        log.info("alpha %.2f: 7-dx balanced accuracy %.4f, melanoma AUC %.4f", alpha,
                 metrics["dx"]["balanced_accuracy"], metrics["melanoma"]["auc_p_mel"])  # fmt: skip
    best = max(mixes, key=lambda m: (m["float_views"]["dx"]["balanced_accuracy"], -m["alpha"]))
    model.set_weights(mix_weights(first, second, best["alpha"]))
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    for name in ("config.json", "split.json"):
        if (run / name).resolve() != (out / name).resolve():
            shutil.copyfile(run / name, out / name)
    summary = {
        "models": list(args.models),
        "rule": "weights (1 - alpha) * first + alpha * second; the highest float 7-dx balanced accuracy on the "
        "internal validation (logits averaged over the views) is kept, ties to the smaller alpha",
        "views": list(views),
        "validation_images": len(val),
        "mixes": mixes,
        "chosen_alpha": best["alpha"],
        "seconds": round(time.time() - started, 1),
    }
    (out / "soup.json").write_text(json.dumps(summary, indent=1) + "\n")
    log.info("kept alpha %.2f; wrote %s", best["alpha"], out / "model.keras")
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.soup")
