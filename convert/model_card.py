"""Render ``edgeskin/models/MODEL_CARD.md`` from the shipped specs, so every figure in it is measured.

    python -m convert.model_card [--models edgeskin/models]

Reads ``<name>.json`` of the classifier and detector (metrics, calibration, triage, provenance) and the
detector helper's notes (``DETECTOR_CARD.md``, appended as written).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _reproducible(command: str) -> str:
    """The export command as one runs it from scratch: ``--qat-model FILE`` (reusing a QAT model made by
    the same command earlier) becomes the QAT run itself."""
    import shlex

    parts = shlex.split(command)
    if "--qat-model" in parts:
        i = parts.index("--qat-model")
        del parts[i : i + 2]
        return shlex.join(parts) + "  # runs QAT (this export reused the QAT model of such a run: --qat-model)"
    return command


def classifier_section(spec: dict, size_bytes: int) -> str:
    m = spec.get("metrics", {})
    cfg = spec.get("provenance", {}).get("training_config", {})
    rows = []
    for view in ("dx", "group"):
        for key in ("balanced_accuracy", "auc", "accuracy", "macro_f1"):
            f = m.get("float", {}).get(view, {}).get(key)
            i = m.get("int8_uncalibrated", {}).get(view, {}).get(key)
            rows.append(
                f"| {view} {key.replace('_', ' ')} | {_pct(f)} | {_pct(i)} | {_pct(None if f is None or i is None else i - f)} |"
            )
    views = m.get("test_time_views") or ["identity"]
    single_rows = []
    if len(views) > 1:
        for key in ("balanced_accuracy", "auc"):
            f = m.get("float_single_view", {}).get("dx", {}).get(key)
            i = m.get("int8_single_view_uncalibrated", {}).get("dx", {}).get(key)
            single_rows.append(
                f"| dx {key.replace('_', ' ')}, one view (no TTA) | {_pct(f)} | {_pct(i)} | "
                f"{_pct(None if f is None or i is None else i - f)} |"
            )
    agree = m.get("int8_vs_float", {})
    cal = spec.get("calibration", {})
    tri = spec.get("triage", {})
    qat = m.get("qat")
    quant = m.get("quantization") or {}
    if qat and "ptq" in quant:
        qat_line = (
            f"Quantization, both measured the same way: QAT ({qat['epochs']} epoch(s), tfmot) dx balanced accuracy "
            f"{quant['qat']['dx']['balanced_accuracy']:.3f} (one view {quant['qat']['single_view']['dx']['balanced_accuracy']:.3f}), "
            f"PTQ with bias correction {quant['ptq']['dx']['balanced_accuracy']:.3f} (one view "
            f"{quant['ptq']['single_view']['dx']['balanced_accuracy']:.3f}); shipped: {quant.get('shipped', '?').upper()}."
        )
    elif qat:
        qat_line = (
            f"QAT ({qat['epochs']} epochs, tfmot) reached dx balanced accuracy {qat['dx']['balanced_accuracy']:.3f} "
            f"against PTQ's {m['int8_uncalibrated']['dx']['balanced_accuracy']:.3f} on the same images."
        )
    else:
        qat_line = (
            "QAT was not run for the shipped model (`--qat-epochs N` runs it); the model is post-training quantized."
        )
    prov = spec.get("provenance", {})
    bias = prov.get("bias_correction")
    bias_line = (
        f"Bias correction: the INT8 logit shift measured on {bias['training_images']} training images "
        f"({', '.join(f'{v:+.3f}' for v in bias['logit_shift'])}) was added to the Dense bias before the final "
        "conversion."
        if bias
        else ""
    )
    tta_line = (
        f"Test-time augmentation: the runtime averages the logits of {len(views)} views ({', '.join(views)}) "
        f"(spec `tta`; `Classifier(tta=())` turns it off); every figure in the table is measured that way, both "
        "columns, unless the row says one view."
        if len(views) > 1
        else "No test-time augmentation (one view)."
    )
    notes = "".join(f"- {note}\n" for note in prov.get("notes", []))
    return f"""## Classifier: `{spec["model_file"]}` ({size_bytes / 1e6:.2f} MB, full INT8)

- Architecture: {cfg.get("backbone", "?")} alpha {cfg.get("alpha", "?")}, input {spec["input"]["size"][0]}x{
        spec["input"]["size"][1]
    } RGB
  (stretched), GAP → Dropout → Dense(7); preprocessing profile `{spec["preprocessing"]["name"]}`
  ({", ".join(s["op"] for s in spec["preprocessing"]["steps"]) or "none"}). Outputs: `logits` (1, 7) and
  `features` (the last feature map, for the class activation map).
- Initialisation: {cfg.get("weights", "?")} ({Path(str(cfg.get("resolved_weights") or "none")).name}).
- Data: {prov.get("data", "?")}; {m.get("validation_images", "?")} validation images (by lesion).
- Trained on: {prov.get("trained_on", "this machine's CPU")}.
- Training: {cfg.get("epochs", "?")} epochs, AdamW lr {cfg.get("learning_rate", "?")} cosine with warm-up, label
  smoothing {cfg.get("label_smoothing", "?")}, balanced class weights, BatchNorm momentum {cfg.get("bn_momentum", "?")},
  augmentation {json.dumps(cfg.get("augment", {}))}.

### Validation metrics (measured by `convert/export_classifier.py` through the edgeskin runtime)

| metric | float (Keras) | INT8 (TFLite) | INT8 − float |
|---|---|---|---|
{chr(10).join(rows)}
| malignant AUC (mel+bcc+akiec) | {_pct(m.get("float", {}).get("malignant_auc"))} | {
        _pct(m.get("int8_uncalibrated", {}).get("malignant_auc"))
    } | |
{chr(10).join(single_rows)}

{tta_line} {bias_line}{_refit_line(prov)}

INT8 vs float on every validation image: top-1 agreement {_pct(agree.get("top1_agreement"))}, max |Δp|
{_pct(agree.get("max_probability_difference"))}, mean |Δp| {_pct(agree.get("mean_probability_difference"))}. {qat_line}
Median INT8 invoke time during the export (x86, 2 threads, one view; the CPU may have been shared, so take
latency from `docs/benchmarks/report.md`): {m.get("int8_invoke_ms_median_2_threads", "?")} ms.

{("### Notes on this model" + chr(10) + chr(10) + notes) if notes else ""}
### Calibration and triage

- Temperature {cal.get("temperature")} fitted on the validation INT8 logits (as deployed, views averaged){
        ", then a smooth top-label map (monotone, continuous, piecewise linear with "
        + str(len(cal["top_label"]["x"]))
        + " knots and slope at most "
        + str(cal["top_label"].get("max_slope", "?"))
        + ", fitted by bounded least squares to top-class correctness; it acts in full once the top class leads "
        "the runner-up by 0.1 and not at a tie, so the predicted class never changes and no probability jumps "
        "when two classes swap)"
        if cal.get("top_label")
        else ""
    }. ECE ({cal.get("ece_bins", 15)} bins) {cal.get("ece_before")} uncalibrated → {
        cal.get("ece_after_temperature", cal.get("ece_after"))
    }
  after the temperature → {
        cal.get("ece_after")
    } after both (in-sample). 2-fold cross-fitted (fitted on one half, measured on
  the other): {cal.get("ece_after_temperature_2fold_crossfit", "n/a")} with the temperature alone, {
        cal.get("ece_after_2fold_crossfit")
    } with both{_repeated_crossfit(cal)}.
{_sensitivity_line(cal)}
- Refer threshold: P(malignant) ≥ {_pct(tri.get("malignant_threshold"))}, chosen for sensitivity ≥ {
        tri.get("min_sensitivity")
    } on
  validation: sensitivity {_pct(tri.get("sensitivity"))}, specificity {_pct(tri.get("specificity"))} there.

### Reproduce

```bash
{prov.get("train_command", "")}
{_reproducible(prov.get("export_command", ""))}
```
"""


def _refit_line(prov: dict) -> str:
    refit = prov.get("calibration_refit")
    if not refit:
        return ""
    return (
        f" The INT8 columns, the calibration and the triage threshold were re-measured on {refit.get('date')} by "
        "`python -m convert.refit_calibration` through the runtime's bit-exact resize; the float column and the "
        "INT8-vs-float figures are the export's (made with the former resize)."
    )


def _repeated_crossfit(cal: dict) -> str:
    """The mean cross-fitted ECE over random halvings, when the export measured it."""
    key = next((k for k in cal if k.startswith("ece_2fold_crossfit_") and k.endswith("_random_halvings")), None)
    if key is None:
        return ""
    n = key.split("_")[3]
    r = cal[key]
    return (
        f" (one halving of a few hundred images moves ECE by about ±0.01; mean over {n} random halvings: "
        f"{r['temperature']['mean']} temperature alone, {r['isotonic']['mean']} with the former isotonic step map, "
        f"{r['smooth']['mean']} with the smooth map)"
    )


def _sensitivity_line(cal: dict) -> str:
    """One INT8 logit step: how far the calibrated probabilities can move (issue 13)."""
    s = cal.get("logit_step_sensitivity")
    if not s:
        return ""
    return (
        f"- One INT8 logit step ({s['logit_step']}) moves any calibrated probability by at most "
        f"{s['smooth_map_after']['max']} on the validation images ({s['temperature_only']['max']} with the "
        f"temperature alone; {s['isotonic_step_map_before']['max']} with the isotonic step map this replaced)."
    )


REPRODUCIBILITY = """### Same answers on every device

Guaranteed (checked by `make test-arm64`, see `docs/robustness.md`): with the same wheels (numpy,
opencv-python-headless, ai-edge-litert at the versions pinned in the check) and `threads=1`, boxes, scores,
probabilities, refer flags and class activation maps are bit-identical on x86-64 and on aarch64 (Cortex-A72,
Raspberry Pi 4; Cortex-A76, Raspberry Pi 5): every resize is OpenCV's fixed-point `INTER_LINEAR_EXACT`,
colour constancy is integer arithmetic, and the INT8 interpreter (XNNPACK) gives the same integers.
Not guaranteed: other interpreter builds or versions (tflite-runtime, TensorFlow's own interpreter, other
XNNPACK releases), other OpenCV or numpy wheels, more threads with another interpreter, the Edge TPU (its
compiler re-quantizes some operations, so its answers differ and must be measured separately), the
`dermoscopy` preprocessing profile (inpainting and CLAHE are not pinned), the classical detector, and the
annotated overlay images (display only).
"""


def ph2_section(check: dict, spec: dict) -> str:
    """The out-of-distribution PH2 check, for the model it was run on (matched by SHA-256)."""
    rows = [m for m in check.get("models", []) if m.get("sha256") == spec.get("sha256")]
    if not rows:
        return "### PH2 check\n\nThe PH2 check on file was run on another model; run it again (see below).\n"
    m = rows[0]
    lines = [
        "### Out-of-distribution check: PH2 melanoma against naevi (`benchmarks/ph2_classification.py`)",
        "",
        f"{check['images']} PH2 images ({m['melanomas']} melanomas, {m['naevi']} naevi; another clinic and camera, never used",
        "for training, selection or calibration), classified as deployed. 20 melanomas: one image is 5 points.",
        "",
        "| crop | AUC P(mel) | AUC P(malignant) | melanomas called mel | melanomas referred | naevi referred |",
        "|---|---|---|---|---|---|",
    ]
    for view, title in (("lesion_box", "expert-mask box + margin"), ("whole_frame", "whole frame")):
        r = m[view]
        lines.append(
            f"| {title} | {_pct(r['melanoma_auc_p_mel'])} | {_pct(r['melanoma_auc_p_malignant'])} | "
            f"{_pct(r['top1_mel_on_melanomas'])} | {_pct(r.get('melanomas_referred'))} | {_pct(r.get('naevi_referred'))} |"
        )
    lines += [
        "",
        "The triage threshold was fitted on HAM10000 validation images; on PH2 it refers few melanomas. Do not",
        "rely on the refer flag for images unlike HAM10000 without fitting the threshold on your own data.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(REPO / "edgeskin/models"))
    parser.add_argument(
        "--ph2-check",
        default=str(REPO / "training/runs/classifier/ph2_check.json"),
        help="JSON of benchmarks.ph2_classification for the shipped classifier (section left out if absent)",
    )
    args = parser.parse_args(argv)
    models = Path(args.models)
    parts = [
        "# edgeskin model card\n",
        "**Intended use:** research and device prototyping: measuring what an INT8 lesion detector and classifier",
        "can do on small hardware. **Not a diagnosis**, not a medical device, not validated clinically.",
        "**Licence of the weights:** trained on HAM10000 (CC BY-NC 4.0) and PH2 (research use with citation):",
        "non-commercial use only. Every figure below is written by the conversion scripts from their own",
        "measurements on the validation split named; the maintainers' held-out scores are reported on the issues.\n",
        "**Known limits:** HAM10000 images are lesion-centred dermoscopy crops from two centres, mostly light skin;",
        "nevi are 72% of the data; rare classes (df 60, vasc 80 images in total) have few validation examples, so",
        "their per-class figures are noisy. Performance on clinical (non-dermoscopic) photos is unknown.\n",
    ]
    cls = models / "edgeskin-mnv2-cls.json"
    if cls.is_file():
        spec = json.loads(cls.read_text())
        parts.append(classifier_section(spec, (models / spec["model_file"]).stat().st_size))
        ph2 = Path(args.ph2_check)
        if ph2.is_file():
            parts.append(ph2_section(json.loads(ph2.read_text()), spec))
        parts.append(REPRODUCIBILITY)
    det_card = models / "DETECTOR_CARD.md"
    if det_card.is_file():
        parts.append(det_card.read_text())
    (models / "MODEL_CARD.md").write_text("\n".join(parts))
    print(f"wrote {models / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
