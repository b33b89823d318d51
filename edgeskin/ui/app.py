"""The edgeskin Streamlit app: upload (or photograph) a skin lesion → detection, classification, CAM.

Serve it with ``edgeskin ui`` (``python -m streamlit run`` on this file, bound to 127.0.0.1). Uploaded
and photographed images are decoded in memory, analysed and kept only in the browser session; nothing
is written on the server. A Raspberry Pi kiosk serves the same page: ``edgeskin ui --server.headless
true`` and ``chromium --kiosk http://127.0.0.1:8501``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from edgeskin.annotate import annotate, lesion_crop_heatmap
from edgeskin.errors import EdgeskinError, NoDefaultModelError
from edgeskin.labels import DX_NAMES
from edgeskin.results import CONTEXT_VIEW
from edgeskin.ui import launch

UPLOAD_TYPES = ("jpg", "jpeg", "png", "bmp", "tif", "tiff")
DEFAULT_OPACITY = 0.45


@st.cache_resource(show_spinner="Loading the models…")
def _default_pipeline() -> Any:
    # One pipeline per server process, shared by the sessions; _analyses serialises its calls with the lock.
    return launch.load_pipeline()


@st.cache_resource
def _pipeline_lock() -> Any:
    import threading

    return threading.Lock()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _probability_chart(probabilities: dict[str, float], titles: dict[str, str], title: str) -> alt.LayerChart:
    rows = [{"class": titles.get(name, name), "probability": float(p)} for name, p in probabilities.items()]
    base = alt.Chart(pd.DataFrame(rows), title=title).encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=None),
        y=alt.Y("class:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False)),
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("probability:Q", format=".1%")],
    )
    bars = base.mark_bar()
    values = base.mark_text(align="left", dx=3).encode(text=alt.Text("probability:Q", format=".0%"))
    return (bars + values).properties(height=alt.Step(22))


def _inputs() -> list[tuple[str, str, bytes]]:
    """(key, name, bytes) of every uploaded file and of the camera photo, in page order."""
    uploads = st.file_uploader(
        "Dermoscopic or close-up images (JPEG, PNG, BMP, TIFF)",
        type=list(UPLOAD_TYPES),
        accept_multiple_files=True,
        help="Images are analysed in memory and never stored.",
    )
    items = [(f"upload-{f.file_id}", f.name, f.getvalue()) for f in uploads or []]
    if st.toggle("Take a photo with the camera", key="use_camera"):
        photo = st.camera_input("Camera", label_visibility="collapsed")
        if photo is not None:
            items.append((f"camera-{photo.file_id}", "camera photo", photo.getvalue()))
    return items


def _sidebar(pipeline: Any) -> None:
    with st.sidebar:
        st.header("Models")
        for fact in launch.model_facts(pipeline):
            st.markdown(f"**{fact.role}:** `{fact.name}`  \ninput {fact.input_size}")
            if fact.metrics:
                st.table(
                    [{"validation metric": k, "value": v} for k, v in fact.metrics.items()],
                    hide_index=True,
                )
            if fact.data:
                st.caption(f"Training data: {fact.data}")
            st.caption(f"Licence: {fact.licence or 'see the model card'}")
        st.caption("**Not for diagnosis.** For research and education only.")
        card = launch.model_card_text()
        if card:
            with st.expander("Model card"):
                st.markdown(card)
        st.divider()
        st.caption(
            "Images are decoded in memory and never stored on the server. "
            "Kiosk: `chromium --kiosk http://127.0.0.1:8501`."
        )


def _summary(index: int, lesion: Any, pipeline: Any) -> None:
    """The lesion's most likely diagnosis and group in words, and the REFER flag."""
    dx_p = float(lesion.dx.probabilities.max())
    group_p = float(lesion.group.probabilities.max())
    st.markdown(
        f"#### Lesion {index + 1}: most likely **{launch.dx_title(lesion.dx.label)}** ({dx_p:.0%})\n"
        f"Group **{lesion.group.label}** ({group_p:.0%}) · malignant probability {lesion.malignant:.0%} · "
        f"detector confidence {lesion.score:.0%}{' (unsure)' if lesion.detector_unsure else ''}"
    )
    if lesion.context_view:
        st.caption(CONTEXT_VIEW[:1].upper() + CONTEXT_VIEW[1:] + ".")
    if lesion.refer:
        spec = launch.classifier_spec(pipeline)
        threshold = spec.malignant_threshold if spec is not None else None
        at = f" (at or above the referral threshold {threshold:.0%})" if threshold is not None else ""
        st.error(
            f"**REFER** — malignant probability {lesion.malignant:.0%}{at}: have this lesion examined by a "
            "dermatologist.",
            icon=":material/flag:",
        )


def _details(index: int, lesion: Any, analysis: launch.Analysis, pipeline: Any, opacity: float) -> None:
    """The lesion's CAM, its probability charts, and its crop before and after preprocessing."""
    explanation, charts = st.columns([2, 3])
    with explanation:
        overlay = lesion_crop_heatmap(analysis.frame, lesion, opacity)
        if overlay is not None:
            st.image(overlay, caption=f"Lesion {index + 1}: class activation map (CAM), where the classifier looked")
        else:
            st.caption("This model gives no class activation map.")
    with charts:
        st.altair_chart(
            _probability_chart(lesion.group.as_dict(), {}, f"Lesion {index + 1}: 4 groups"), width="stretch"
        )
        st.altair_chart(
            _probability_chart(
                lesion.dx.as_dict(),
                {k: f"{v} ({k})" for k, v in DX_NAMES.items()},
                f"Lesion {index + 1}: {len(lesion.dx.labels)} diagnoses",
            ),
            width="stretch",
        )
    spec = launch.classifier_spec(pipeline)
    if spec is not None:
        with st.expander(f"Lesion {index + 1}: the classifier's input before and after preprocessing"):
            before, after, profile = launch.preprocessing_views(analysis.frame, lesion, spec)
            left, right = st.columns(2)
            left.image(before, caption="Crop resized to the model input", width="stretch")
            right.image(after, caption=f"After the '{profile}' preprocessing profile", width="stretch")


def _quality(report: Any) -> None:
    """The quality gate's verdict (nothing when the gate is not installed)."""
    if report is None:
        return
    messages = launch.quality_messages(report)
    if messages:
        st.warning("**Image quality:** " + "; ".join(messages) + ".", icon=":material/photo_camera:")
    else:
        st.caption(
            f"Image quality: ok (edge softness {report.edge_softness:.2f}, skin brightness "
            f"{report.skin_luminance:.0f}/255)"
        )


def _timings(result: Any) -> None:
    with st.expander("Timings"):
        timings = dict(result.timings_ms)
        rows = [{"stage": stage.removesuffix("_ms"), "ms": round(float(ms), 1)} for stage, ms in timings.items()]
        if not any(stage.startswith("total") for stage in timings):
            rows.append({"stage": "total", "ms": round(sum(float(ms) for ms in timings.values()), 1)})
        st.table(rows, hide_index=True)


def _downloads(key: str, analysis: launch.Analysis, annotated: Any, pipeline: Any) -> None:
    stem = analysis.source.rsplit(".", 1)[0].replace(" ", "_") or "image"
    st.download_button(
        "Download the annotated image (PNG)",
        launch.encode_png(annotated),
        file_name=f"{stem}-edgeskin.png",
        mime="image/png",
        key=f"png-{key}",
        on_click="ignore",
        icon=":material/download:",
    )
    st.download_button(
        "Download the report (JSON)",
        json.dumps(launch.report(analysis, pipeline), indent=2),
        file_name=f"{stem}-edgeskin.json",
        mime="application/json",
        key=f"json-{key}",
        on_click="ignore",
        icon=":material/download:",
    )


def _render(key: str, analysis: launch.Analysis, pipeline: Any, opacity: float) -> None:
    st.subheader(analysis.source)
    if analysis.error is not None:
        st.error(f"Could not analyse this image: {analysis.error}", icon=":material/broken_image:")
        return
    result = analysis.result
    annotated = annotate(analysis.frame, result, heatmap=True, opacity=opacity)
    picture, text = st.columns([3, 2])
    plural = "s" if len(result.lesions) > 1 else ""
    caption = f"Detected lesion{plural} with CAM" if result.found else "The image as analysed"
    picture.image(annotated, caption=caption, width="stretch")
    with text:
        _quality(analysis.quality)
        if not result.found:
            reason = next((m for m in result.messages if m in launch.RETAKE_ADVICE), launch.NO_LESION_MESSAGE)
            others = [m for m in result.messages if m and m not in launch.RETAKE_ADVICE]
            detail = " (" + "; ".join(others) + ")" if others else ""
            st.info(
                f"**{reason[:1].upper()}{reason[1:]}**{detail}. {launch.RETAKE_ADVICE[reason]}",
                icon=":material/search_off:",
            )
        else:
            if any(lesion.detector_unsure for lesion in result.lesions):
                st.warning(
                    "**Detector unsure.** The detector scored this box below its presence threshold. It is "
                    "answered because the image looks like skin and the box stands out from it: check that the "
                    "box is on the lesion.",
                    icon=":material/help:",
                )
            for index, lesion in enumerate(result.lesions):
                _summary(index, lesion, pipeline)
            other = [m for m in result.messages if m and m != launch.UNSURE_MESSAGE]
            if other:
                st.caption(" · ".join(other))
        _timings(result)
        _downloads(key, analysis, annotated, pipeline)
        st.caption("Not a diagnosis.")
    for index, lesion in enumerate(result.lesions):
        _details(index, lesion, analysis, pipeline, opacity)


def _analyses(pipeline: Any, items: list[tuple[str, str, bytes]]) -> list[tuple[str, launch.Analysis]]:
    """Analyse each new item once; results live in this browser session only, for the current items."""
    cache: dict[str, launch.Analysis] = st.session_state.setdefault("analyses", {})
    for stale in set(cache) - {key for key, _, _ in items}:
        del cache[stale]
    out = []
    for key, name, data in items:
        if key not in cache:
            with st.spinner(f"Analysing {name}…"), _pipeline_lock():
                cache[key] = launch.analyse(pipeline, data, name)
        out.append((key, cache[key]))
    return out


def main(load_pipeline: Callable[[], Any] | None = None) -> None:
    """Draw the page.

    Args:
        load_pipeline: Returns the pipeline to use; default: the shipped models, loaded once per server.
    """
    st.set_page_config(page_title="edgeskin", page_icon=":material/biotech:", layout="wide")
    st.title("edgeskin · skin-lesion analysis")
    st.warning(f"**Not a diagnosis.** {launch.NOT_A_DIAGNOSIS}", icon=":material/warning:")
    try:
        pipeline = load_pipeline() if load_pipeline is not None else _default_pipeline()
    except NoDefaultModelError as exc:
        reason = _one_line(exc).removeprefix("no default model is installed: ")
        st.error(
            f"**No default model is installed.** {reason[:1].upper()}{reason[1:]}",
            icon=":material/deployed_code_alert:",
        )
        st.stop()
    except EdgeskinError as exc:
        st.error(f"**The models could not be loaded.** {_one_line(exc)}", icon=":material/error:")
        st.stop()
    _sidebar(pipeline)
    items = _inputs()
    if not items:
        st.info("Upload one or more images of a skin lesion, or take a photo, to analyse them.")
        return
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, DEFAULT_OPACITY, 0.05, key="opacity")
    for key, analysis in _analyses(pipeline, items):
        with st.container(border=True):
            _render(key, analysis, pipeline, opacity)


if __name__ == "__main__":
    main()
