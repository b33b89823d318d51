"""Render ``MODEL_CARD.md`` from the models' specs, so every figure in it is measured.

    python -m convert.model_card --out artifacts/model-card [--models edgeskin/models] [--ship]

Reads ``<name>.json`` of the classifier and detector in ``--models`` (metrics, calibration, triage, provenance)
and the detector helper's notes (``DETECTOR_CARD.md``, appended as written), and writes the card into ``--out``
(not the shipped ``edgeskin/models``); ``--ship`` then replaces the shipped card with it and says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convert.ship import refuse_shipped_out, ship

REPO = Path(__file__).resolve().parents[1]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


CHOICES = ("ptq", "qat", "best")  # export_classifier --choose


def _reproducible(command: str) -> str:
    """The export command as one runs it from scratch: ``--qat-model FILE`` (reusing a QAT model made by
    the same command earlier) becomes the QAT run itself, and an old ``--ship ptq|qat|best`` is ``--choose``."""
    import shlex

    parts = shlex.split(command)
    renamed = "--ship" in parts and parts[parts.index("--ship") + 1 : parts.index("--ship") + 2] in [
        [c] for c in CHOICES
    ]
    if renamed:  # before --ship came to mean "replace the shipped model", it named the candidate (now --choose)
        parts[parts.index("--ship")] = "--choose"
    if "--qat-model" in parts:
        i = parts.index("--qat-model")
        del parts[i : i + 2]
        return shlex.join(parts) + "  # runs QAT (this export reused the QAT model of such a run: --qat-model)"
    return shlex.join(parts) if renamed else command


def _row(name: str, m: dict, keys) -> str:
    """A table row: counts as integers, rates and scores with three decimals."""
    values = [_get(m, k) for k in keys]
    return f"| {name} | " + " | ".join(str(v) if isinstance(v, int) else _pct(v) for v in values) + " |"


def _get(m: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(m, dict):
            return None
        m = m.get(part)
    return m


SOURCE_NAMES = {
    "all": "all sources",
    "ham10000": "HAM10000 (Vienna, Queensland)",
    "isic2017": "ISIC 2017 images (other clinics, mostly MSK)",
    "isic2017_heldout": "ISIC 2017, held-out third (source held out)",
    "ph2": "PH2 (Porto; never used)",
}


def _float_rows(m: dict) -> list[str]:
    """Float against INT8 (uncalibrated) per label view: balanced accuracy and AUC."""
    rows = []
    for view in ("dx8", "dx", "group") if "dx8" in m.get("int8_uncalibrated", {}) else ("dx", "group"):
        for key in ("balanced_accuracy", "auc"):
            f = _get(m, f"float.{view}.{key}")
            i = _get(m, f"int8_uncalibrated.{view}.{key}")
            name = {"dx8": "8 dx", "dx": "7 dx (ak+scc=akiec)", "group": "4 groups"}[view]
            rows.append(
                f"| {name} {key.replace('_', ' ')} | {_pct(f)} | {_pct(i)} | {_pct(None if f is None or i is None else i - f)} |"
            )
    return rows


INTERNAL_KEYS = ("n", "dx.balanced_accuracy", "dx8.balanced_accuracy", "dx.auc", "malignant_auc",
                 "malignant.sensitivity", "malignant.specificity", "melanoma.auc_p_mel",
                 "melanoma.sensitivity_at_80_specificity", "melanoma.sensitivity_at_90_specificity", "ece")  # fmt: skip
EXTERNAL_KEYS = ("n", "melanoma.auc_p_mel", "melanoma.auc_p_malignant", "melanoma.sensitivity_at_80_specificity",
                 "melanoma.sensitivity_at_90_specificity", "melanoma.melanomas_referred",
                 "melanoma.benign_referred", "ece")  # fmt: skip


def _scc_line(m: dict) -> str:
    scc = _get(m, "int8_calibrated.scc_vs_ak")
    if not scc:
        return ""
    return (
        f"SCC vs AK (internal validation, {scc['scc']['support']} SCC and {scc['ak']['support']} AK images: few, "
        f"so these move by several points per image): SCC precision {_pct(scc['scc']['precision'])}, recall "
        f"{_pct(scc['scc']['recall'])}; AK precision {_pct(scc['ak']['precision'])}, recall {_pct(scc['ak']['recall'])}; "
        f"true (ak, scc) × predicted (ak, scc): {scc['confusion_true_ak_scc_vs_predicted_ak_scc']}."
    )


def _qat_line(quant: dict) -> str:
    if "qat" not in quant or "ptq" not in quant:
        return ""
    return (
        f"Quantization, both measured the same way on the internal validation: QAT (tfmot) 7-dx balanced accuracy "
        f"{_pct(_get(quant, 'qat.dx.balanced_accuracy'))} (one view {_pct(_get(quant, 'qat.single_view.dx.balanced_accuracy'))}), "
        f"PTQ with bias correction {_pct(_get(quant, 'ptq.dx.balanced_accuracy'))} (one view "
        f"{_pct(_get(quant, 'ptq.single_view.dx.balanced_accuracy'))}); shipped: {quant.get('shipped', '?').upper()}, "
        "chosen on these internal figures only."
    )


def _temperature_text(cal: dict) -> str:
    """The temperature, flagged when its fit ended at the search bound (then it is a limit, not a fit)."""
    if not cal.get("temperature_at_bound"):
        return str(cal.get("temperature"))
    return (
        f"{cal.get('temperature')} (**at the bound of its search**: the fit did not converge to an interior value, "
        "so the temperature only limits the confidence; the top-label map does the calibrating)"
    )


def classifier_section(spec: dict, size_bytes: int) -> str:
    m = spec.get("metrics", {})
    cfg = spec.get("provenance", {}).get("training_config", {})
    labels = spec.get("labels", [])
    views = m.get("test_time_views") or ["identity"]
    agree = m.get("int8_vs_float", {})
    cal = spec.get("calibration", {})
    tri = spec.get("triage", {})
    prov = spec.get("provenance", {})
    quant = m.get("quantization") or {}
    float_rows = _float_rows(m)
    per_source = m.get("int8_calibrated_per_source", {})
    internal_rows = [_row(SOURCE_NAMES.get(name, name), r, INTERNAL_KEYS) for name, r in per_source.items()]
    external_rows = [
        _row(SOURCE_NAMES.get(name, name), r, EXTERNAL_KEYS) for name, r in (m.get("external") or {}).items()
    ]
    scc_line = _scc_line(m)
    qat_line = _qat_line(quant)
    tri_rows = [
        f"| {SOURCE_NAMES.get(name, name)} | {_pct(r.get('sensitivity'))} | {_pct(r.get('specificity'))} | "
        f"{r.get('n_malignant')} / {r.get('n_benign')} |"
        for name, r in (tri.get("per_source") or {}).items()
    ]
    notes = "".join(f"- {note}\n" for note in prov.get("notes", []))
    train_s = m.get("training_seconds")
    schedule = "cosine with warm-up" if cfg.get("warmup_epochs") else "cosine, no warm-up"
    if cfg.get("init_from"):
        schedule += f"; continued from `{cfg['init_from']}`, an earlier run: the time and epochs are this run's only"
    return f"""## Classifier: `{spec["model_file"]}` ({size_bytes / 1e6:.2f} MB, full INT8)

- Architecture: {cfg.get("backbone", "?")} alpha {cfg.get("alpha", "?")}, input {spec["input"]["size"][0]}x{spec["input"]["size"][1]} RGB
  (stretched), GAP → Dropout → Dense({len(labels)}: {", ".join(labels)}); preprocessing profile `{spec["preprocessing"]["name"]}`
  ({", ".join(s["op"] for s in spec["preprocessing"]["steps"]) or "none"}). Outputs: `logits` and `features` (the last
  feature map, for the class activation map). The 7 HAM10000 dx are a view: ak + scc = akiec.
- Initialisation: {cfg.get("weights", "?")} ({Path(str(cfg.get("resolved_weights") or "none")).name}).
- Data: {prov.get("data", "?")}. Licence: {prov.get("license", "?")}.
- Trained on: {prov.get("trained_on", "this machine's CPU")}{f", {train_s / 60:.0f} min" if train_s else ""} ({cfg.get("epochs", "?")} epochs
  of source-balanced draws {json.dumps(cfg.get("source_shares", {}))}, classes balanced as drawn, AdamW lr
  {cfg.get("learning_rate", "?")} {schedule}, label smoothing {cfg.get("label_smoothing", "?")}, EMA {cfg.get("ema", "none")}).
- Inputs in training: the runtime's crop of each image's expert-mask box (margin {_get(cfg, "crop.margin")}, jitter
  {_get(cfg, "crop.jitter")}, whole frame {_get(cfg, "crop.whole_frame")} of the time), albumentations
  {json.dumps(cfg.get("augment", {}))}, then the preprocessing profile, as on the device.

### Internal validation (lesion-grouped, stratified by dx and source): INT8 as deployed, calibrated

The model choice, the calibration and the refer threshold used these images and nothing else.

| source | n | BACC 7 dx | BACC 8 dx | AUC 7 dx | malignant AUC | malignant sensitivity | malignant specificity | melanoma AUC | melanoma sensitivity at 80% specificity | at 90% | ECE |
|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(internal_rows)}

{scc_line}

### External checks: never trained on, calibrated on or chosen on

Each image is classified on its expert mask's box with the pipeline's margin, as deployed; melanoma against
all other lesions. 20 PH2 melanomas: one image is 5 points of sensitivity.

| set | n | melanoma AUC P(mel) | AUC P(malignant) | sensitivity at 80% specificity | at 90% | melanomas referred | benign referred | ECE |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(external_rows)}

### Float against INT8 (internal validation, uncalibrated, {len(views)} test-time view(s))

| metric | float (Keras) | INT8 (TFLite) | INT8 − float |
|---|---|---|---|
{chr(10).join(float_rows)}

INT8 vs float: top-1 agreement {_pct(agree.get("top1_agreement"))}, max |Δp| {_pct(agree.get("max_probability_difference"))}.
{qat_line} Test-time views: {", ".join(views)} (logits averaged; `Classifier(tta=())` runs one view).
Median INT8 invoke time of one view during the export (x86, 2 threads; the CPU was shared, so take latency
from `docs/benchmarks/report.md`): {m.get("int8_invoke_ms_median_2_threads", "?")} ms.

{("### Notes on this model" + chr(10) + chr(10) + notes) if notes else ""}
### Calibration and triage

- Temperature {_temperature_text(cal)}, then a smooth top-label map (monotone, continuous, piecewise linear, slope
  bounded), fitted on the internal validation INT8 logits (views averaged). ECE ({cal.get("ece_bins", 15)} bins)
  {cal.get("ece_before")} uncalibrated → {cal.get("ece_after")} in-sample; 2-fold cross-fitted
  {cal.get("ece_after_2fold_crossfit")}{_repeated_crossfit(cal)}.
{_sensitivity_line(cal)}
- Refer threshold: P(malignant) ≥ {_pct(tri.get("malignant_threshold"))} ({tri.get("rule", "")}):

| internal validation | sensitivity | specificity | malignant / benign |
|---|---|---|---|
| all | {_pct(tri.get("sensitivity"))} | {_pct(tri.get("specificity"))} | {tri.get("n_malignant")} / {tri.get("n_benign")} |
{chr(10).join(tri_rows)}

### Reproduce

```bash
{prov.get("train_command", "")}
{_reproducible(prov.get("export_command", ""))}
```
"""


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
        return ""  # run on another model: the classifier section's external checks cover PH2
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
    parser.add_argument("--models", default=str(REPO / "edgeskin/models"), help="folder of the specs to describe")
    parser.add_argument("--out", required=True, help="folder of your own for MODEL_CARD.md (not edgeskin/models)")
    parser.add_argument(
        "--ship", action="store_true", help="then replace the shipped MODEL_CARD.md with it (says what it replaced)"
    )
    parser.add_argument(
        "--ph2-check",
        default=str(REPO / "training/runs/classifier/ph2_check.json"),
        help="JSON of benchmarks.ph2_classification for the shipped classifier (section left out if absent)",
    )
    args = parser.parse_args(argv)
    refuse_shipped_out(parser, args.out)
    models = Path(args.models)
    parts = [
        "# edgeskin model card\n",
        "**Intended use:** research and device prototyping: measuring what an INT8 lesion detector and classifier",
        "can do on small hardware. **Not a diagnosis**, not a medical device, not validated clinically.",
        "**Licence of the weights:** the classifier is trained on HAM10000 and ISIC Archive images (both CC BY-NC",
        "4.0), the detector also on PH2 (research use with citation): non-commercial use only. Every figure below",
        "is written by the conversion scripts from their own measurements on the data named; the maintainers'",
        "held-out scores are reported on the issues.\n",
        "**Known limits:** the training images are dermoscopy from HAM10000's two centres and the ISIC 2017",
        "contributors (mostly Memorial Sloan Kettering), mostly light skin; naevi are two thirds of the data; rare",
        "classes (df 115, vasc 142, ak 130, scc 197 images in total) have few validation examples, so their",
        "per-class figures are noisy. Performance on clinical (non-dermoscopic) photos is unknown.\n",
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
    card = Path(args.out) / "MODEL_CARD.md"
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text("\n".join(parts))
    print(f"wrote {card}")
    if args.ship:
        print("\n".join(ship([card])))
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.model_card")
