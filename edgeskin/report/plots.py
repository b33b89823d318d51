"""PNG plots of the benchmark report (matplotlib, Agg backend: the ``[eval]`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeskin.report.render import _latency_rows


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no window)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` (PNG, 110 dpi) and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_accuracy(results: dict[str, Any], out: Path) -> Path | None:
    plt = _pyplot()
    cls = results.get("accuracy", {}).get("classifier", {}).get("rows", {})
    det = results.get("accuracy", {}).get("detector", {}).get("rows", {})
    metrics = [
        ("balanced_accuracy", "balanced acc", cls),
        ("auc", "AUC", cls),
        ("malignant_sensitivity", "malignant sens.", cls),
        ("mean_iou", "detector mean IoU", det),
    ]
    float_key = {
        "balanced_accuracy": "float_keras",
        "auc": "float_keras",
        "malignant_sensitivity": "float_keras",
        "mean_iou": "float_pytorch",
    }
    labels, floats, int8s = [], [], []
    for key, label, rows in metrics:
        f = rows.get(float_key[key], {}).get(key)
        q = rows.get("int8_tflite", {}).get(key)
        if f is None and q is None:
            continue
        labels.append(label)
        floats.append(f or 0.0)
        int8s.append(q or 0.0)
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(labels))
    width = 0.38
    bars_f = ax.bar([i - width / 2 for i in x], floats, width, label="float baseline (CPU)", color="#8c8c8c")
    bars_q = ax.bar([i + width / 2 for i in x], int8s, width, label="edge INT8 TFLite", color="#1f77b4")
    for bars in (bars_f, bars_q):
        ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    for i, (f, q) in enumerate(zip(floats, int8s, strict=True)):
        if f:
            ax.text(i, max(f, q) + 0.08, f"INT8/float {q / f:.2f}", ha="center", fontsize=8)
    ax.set_xticks(list(x), labels)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("score")
    ax.set_title("Accuracy: edge INT8 vs float baseline (validation images)")
    ax.legend(loc="upper center", fontsize=8, ncol=2)
    return _save(fig, out / "accuracy.png")


def plot_latency(results: dict[str, Any], out: Path) -> Path | None:
    plt = _pyplot()
    rows = [(task, name, r) for task, name, r, _ in _latency_rows(results) if "latency_ms" in r]
    pipeline = results.get("latency", {}).get(f"pipeline-{results['settings']['threads']}t", {})
    if not rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    names = [f"{task}: {name}" for task, name, _ in rows]
    colours = ["#1f77b4" if "INT8" in name else "#8c8c8c" for _, name, _ in rows]
    p50 = [r["latency_ms"]["p50"] for _, _, r in rows]
    p90 = [r["latency_ms"]["p90"] for _, _, r in rows]
    y = range(len(rows))
    ax = axes[0]
    ax.barh(list(y), p50, color=colours, label="p50")
    ax.scatter(p90, list(y), color="black", marker="|", s=120, label="p90", zorder=3)
    int8 = {task: r["latency_ms"]["p50"] for task, name, r in rows if "INT8" in name}
    for i, ((task, _, _), value, high) in enumerate(zip(rows, p50, p90, strict=True)):
        ratio = f" ({value / int8[task]:.1f}x INT8)" if task in int8 and "INT8" not in names[i] else ""
        ax.text(max(value, high), i, f"  {value:.1f}{ratio}", va="center", fontsize=7)
    ax.set_yticks(list(y), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per image (p50 bar, p90 tick)")
    ax.set_title(f"Latency, {results['settings']['threads']} threads")
    ax.legend(fontsize=7)
    ax = axes[1]
    fps = [r["fps"] for _, _, r in rows]
    ax.barh(list(y), fps, color=colours)
    for i, value in enumerate(fps):
        ax.text(value, i, f" {value:.0f}", va="center", fontsize=7)
    ax.set_yticks(list(y), [""] * len(rows))
    ax.invert_yaxis()
    ax.set_xlabel("images per second (1000 / p50)")
    ax.set_title("Throughput (one stream)")
    ax = axes[2]
    sizes = [r.get("model_size_mb") or 0.0 for _, _, r in rows]
    rss = [r.get("peak_rss_mb") or 0.0 for _, _, r in rows]
    ax.barh([i - 0.2 for i in y], sizes, height=0.4, color=colours, label="model size, MB")
    ax.barh([i + 0.2 for i in y], rss, height=0.4, color=colours, alpha=0.45, label="peak RSS of the process, MiB")
    for i, (s, m) in enumerate(zip(sizes, rss, strict=True)):
        ax.text(s, i - 0.2, f" {s:.1f}", va="center", fontsize=6)
        ax.text(m, i + 0.2, f" {m:.0f}", va="center", fontsize=6)
    ax.set_xscale("log")
    ax.set_yticks(list(y), [""] * len(rows))
    ax.invert_yaxis()
    ax.set_title("Model size and peak RSS (log)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    if "end_to_end_ms" in pipeline:
        fig.suptitle(
            f"Edge INT8 vs float baselines. Whole INT8 pipeline (768x576): p50 {pipeline['end_to_end_ms']['p50']:.1f} ms, "
            f"{pipeline['fps']:.0f} FPS, peak RSS {pipeline['peak_rss_mb']:.0f} MiB",
            fontsize=10,
        )
    return _save(fig, out / "latency.png")


def plot_stages(results: dict[str, Any], out: Path) -> Path | None:
    plt = _pyplot()
    latency = results.get("latency", {})
    columns = [(f"{n} thread{'s' if n > 1 else ''}", latency.get(f"pipeline-{n}t", {})) for n in (1, 2, 4)]
    columns = [(label, r) for label, r in columns if "stages_ms" in r]
    if not columns:
        return None
    stages = ["preprocess", "detect", "crop", "classify", "cam"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (_label, r) in enumerate(columns):
        bottom = 0.0
        counts = r["invoke_counts_per_frame"]
        invoke = sum(stats["p50"] * counts.get(name, 1.0) for name, stats in r["invoke_ms"].items())
        for j, stage in enumerate(stages):
            value = r["stages_ms"].get(stage, {}).get("p50", 0.0)
            ax.bar(i, value, bottom=bottom, color=plt.cm.tab10(j), label=stage if i == 0 else None)
            bottom += value
        ax.scatter(
            [i],
            [r["end_to_end_ms"]["p50"]],
            color="black",
            marker="_",
            s=400,
            zorder=3,
            label="end-to-end p50" if i == 0 else None,
        )
        ax.scatter(
            [i], [invoke], color="red", marker="_", s=400, zorder=3, label="summed bare invoke p50" if i == 0 else None
        )
        ax.text(i, r["end_to_end_ms"]["p50"], f"  ratio {r['overhead_ratio']:.2f}", va="bottom", fontsize=8)
    ax.set_xticks(range(len(columns)), [label for label, _ in columns])
    top = max(r["end_to_end_ms"]["p50"] for _, r in columns)
    ax.set_ylim(0, top * 1.45)
    ax.set_ylabel("ms (p50 per stage)")
    ax.set_title("INT8 pipeline on a 768x576 PH2 frame: where the time goes")
    ax.legend(fontsize=7, loc="upper center", ncol=4)
    return _save(fig, out / "pipeline_stages.png")
