"""The live loop: newest frame → quality gate → pipeline → smoothed diagnosis, one JSON entry per frame.

::

    with open_source("picamera2") as source:
        pipeline = LesionPipeline.from_defaults(threads=4)
        summary = LiveLoop(source, pipeline, max_frames=300, on_result=show).run()
    print(summary.fps)

The loop

* always works on the newest frame the source has (sources drop stale frames; ``Frame.index`` jumps);
* checks the frame's quality first (blur, exposure) and, when it fails, reports guidance ("hold still",
  "too dark") instead of running the pipeline; after the pipeline it checks the main lesion's size
  ("move closer"). A frame that fails the gate gets no diagnosis (``diagnosis_withheld``);
* smooths the diagnosis of the main lesion over frames (an exponential moving average of its dx
  probabilities), following the lesion by box overlap and starting again when it is lost or jumps;
* reports and counts errors from the camera or from a bad frame and carries on; it ends at ``max_frames``,
  at the end of a file or folder, when the camera is gone for good, on :meth:`LiveLoop.stop`, or after
  ``max_consecutive_errors`` failed reads in a row;
* analyses a full-resolution still on demand (:meth:`LiveLoop.capture_still`, or
  :meth:`LiveLoop.request_still` from another thread, e.g. a UI).

The pipeline fills :class:`~edgeskin.roles.PipelineRole` (``edgeskin.tasks.LesionPipeline``: a call and the
referral threshold it applies), or is any callable ``pipeline(frame_rgb) -> PipelineResult``; it is only ever
called from the thread running the loop, so one interpreter serves every frame. The loop's settings are one
:class:`LiveOptions`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgeskin.annotate import BoxAnnotator, MessageAnnotator, annotate
from edgeskin.capture.quality import QualityGate, QualityReport
from edgeskin.capture.sources import CameraLostError, Frame, FrameSource
from edgeskin.core.boxes import box_iou
from edgeskin.labels import is_dx_labels, malignant_probability, refer_decision
from edgeskin.results import Lesion, PipelineResult
from edgeskin.roles import PipelineRole

__all__ = [
    "Pipeline",
    "LiveOptions",
    "LiveFrame",
    "LiveSummary",
    "StillAnalysis",
    "SmoothedDiagnosis",
    "DiagnosisSmoother",
    "LiveLoop",
    "scale_result",
    "draw_result",
    "render_live",
]

logger = logging.getLogger(__name__)


Pipeline = PipelineRole  # the name this module used before the roles moved to edgeskin.roles


# --------------------------------------------------------------------------------------------- smoothing


@dataclass(frozen=True)
class SmoothedDiagnosis:
    """The main lesion's diagnosis averaged over the frames it has been followed in.

    Attributes:
        label: Most probable diagnosis after smoothing.
        dx: Smoothed probability per diagnosis.
        malignant: Smoothed mel + bcc + scc + ak (akiec) probability.
        refer: The pipeline's referral rule on the smoothed probabilities: ``malignant`` at or above the
            threshold, or (no threshold) the most probable group is malignant.
        frames: Frames averaged since the lesion was (re)acquired.
        box: The lesion's box in the latest frame (pixel xyxy).
    """

    label: str
    dx: Mapping[str, float]
    malignant: float
    refer: bool | None
    frames: int
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "dx": {k: round(float(v), 6) for k, v in self.dx.items()},
            "malignant": round(self.malignant, 6),
            "refer": self.refer,
            "frames": self.frames,
            "box": [round(v, 2) for v in self.box],
        }


class DiagnosisSmoother:
    """Exponential moving average of the dx probabilities of one followed lesion.

    ``p_smooth = (1 - smoothing) * p_frame + smoothing * p_smooth``. The lesion followed is the one
    overlapping the previous box most (IoU at least ``iou_reset``); when none does (the lesion was lost
    or the box jumped), the average starts again from the highest-scoring lesion.

    Args:
        smoothing: Weight of the history in [0, 1); 0 turns smoothing off.
        iou_reset: Smallest IoU with the previous box that still counts as the same lesion.
        refer_threshold: Malignant probability at which ``refer`` is set; None: refer when the most
            probable group is malignant (the pipeline's rule without a triage threshold).
    """

    def __init__(self, smoothing: float = 0.6, iou_reset: float = 0.3, refer_threshold: float | None = None) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
        if not 0.0 <= iou_reset <= 1.0:
            raise ValueError(f"iou_reset must lie in [0, 1], got {iou_reset}")
        self.smoothing = float(smoothing)
        self.iou_reset = float(iou_reset)
        self.refer_threshold = refer_threshold
        self._probs: np.ndarray | None = None
        self._labels: tuple[str, ...] = ()
        self._box: np.ndarray | None = None
        self._frames = 0
        self.resets = 0

    def reset(self) -> None:
        if self._probs is not None:
            self.resets += 1
        self._probs = None
        self._box = None
        self._frames = 0

    def select(self, lesions: Sequence[Lesion]) -> int | None:
        """Index of the lesion to follow: the previous one if still overlapping, else the top-scoring one."""
        if not lesions:
            return None
        if self._box is not None:
            boxes = np.stack([np.asarray(lesion.box, np.float32) for lesion in lesions])
            ious = box_iou(self._box[None, :], boxes)[0]
            best = int(np.argmax(ious))
            if ious[best] >= self.iou_reset:
                return best
        return int(np.argmax([float(lesion.score) for lesion in lesions]))

    def update(self, lesion: Lesion | None) -> SmoothedDiagnosis | None:
        """Add one frame's main lesion (None: no lesion in a usable frame, which resets the average)."""
        if lesion is None:
            self.reset()
            return None
        box = np.asarray(lesion.box, np.float32)
        probs = np.asarray(lesion.dx.probabilities, np.float64)
        jumped = self._box is not None and float(box_iou(self._box[None, :], box[None, :])[0, 0]) < self.iou_reset
        if self._probs is None or jumped or lesion.dx.labels != self._labels or probs.shape != self._probs.shape:
            if self._probs is not None:
                self.resets += 1
            self._probs = probs.copy()
            self._labels = tuple(lesion.dx.labels)
            self._frames = 1
        else:
            self._probs = (1.0 - self.smoothing) * probs + self.smoothing * self._probs
            self._frames += 1
        self._box = box
        return self.current()

    def current(self) -> SmoothedDiagnosis | None:
        if self._probs is None or self._box is None:
            return None
        probs = self._probs / max(float(self._probs.sum()), 1e-12)
        if is_dx_labels(self._labels):
            malignant = float(malignant_probability(probs, self._labels))
        else:  # a third-party label set: no malignant view
            malignant = float("nan")
        refer = _refer(probs, self._labels, self.refer_threshold) if np.isfinite(malignant) else None
        return SmoothedDiagnosis(
            label=self._labels[int(np.argmax(probs))],
            dx=dict(zip(self._labels, (float(p) for p in probs), strict=True)),
            malignant=malignant,
            refer=refer,
            frames=self._frames,
            box=tuple(float(v) for v in self._box),  # type: ignore[arg-type]
        )


def _refer(probs: np.ndarray, labels: Sequence[str], threshold: float | None) -> bool:
    """The pipeline's referral rule (:func:`edgeskin.labels.refer_decision`) on smoothed probabilities."""
    return bool(refer_decision(probs.astype(np.float32), labels, threshold))


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class LiveFrame:
    """One processed frame: what came in, what the pipeline said, and its JSON entry.

    Attributes:
        frame: The frame from the source.
        result: The pipeline's result; None when the quality gate stopped the frame or the pipeline failed.
        quality: The quality report (None when the gate is off).
        smoothed: The smoothed diagnosis of the followed lesion, or None.
        withheld: True when the frame failed the quality gate (guidance instead of a diagnosis).
        entry: The JSON-ready per-frame entry.
    """

    frame: Frame
    result: PipelineResult | None
    quality: QualityReport | None
    smoothed: SmoothedDiagnosis | None
    withheld: bool
    entry: dict[str, Any]

    @property
    def messages(self) -> tuple[str, ...]:
        return tuple(self.entry.get("messages", ()))


@dataclass(frozen=True, eq=False)
class StillAnalysis:
    """A full-resolution still and its analysis (``result`` None and ``error`` set when it failed)."""

    image: np.ndarray | None
    result: PipelineResult | None
    quality: QualityReport | None = None
    error: str | None = None
    timings_ms: Mapping[str, float] = field(default_factory=dict)


@dataclass
class LiveSummary:
    """What a run of the loop did. ``to_dict()`` is the JSON the ``edgeskin run`` command writes."""

    source: str
    fps: float
    processed: int
    errors: int
    dropped: int
    duration_s: float
    stopped_because: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    error_messages: list[dict[str, Any]] = field(default_factory=list)
    mean_timings_ms: dict[str, float] = field(default_factory=dict)
    withheld: int = 0

    def to_dict(self, *, frames: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fps": round(self.fps, 3),
            "source": self.source,
            "processed": self.processed,
            "errors": self.errors,
            "dropped_frames": self.dropped,
            "withheld": self.withheld,
            "duration_s": round(self.duration_s, 3),
            "stopped_because": self.stopped_because,
            "mean_timings_ms": {k: round(v, 3) for k, v in self.mean_timings_ms.items()},
            "error_messages": list(self.error_messages),
        }
        if frames:
            out["frames"] = list(self.frames)
        return out


# --------------------------------------------------------------------------------------------- the loop


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


@dataclass(frozen=True)
class LiveOptions:
    """How a :class:`LiveLoop` runs; validated when made.

    Attributes:
        max_frames: Stop after this many processed frames (None: until the source ends or ``stop()``).
        smoothing: History weight of the diagnosis average in [0, 1) (0: no smoothing).
        iou_reset: Box overlap below which the followed lesion counts as lost.
        quality_gate: The gate; ``"default"``: :class:`QualityGate()` with the PH2-measured thresholds;
            None: off.
        on_result: Called with each :class:`LiveFrame` in the loop's thread; its exceptions are logged.
        keep_records: Keep every frame's entry in the summary (``summary.frames``). Off by default, so a
            long run keeps constant memory; use ``on_result`` to stream entries instead.
        max_consecutive_errors: Stop after this many failed reads in a row (a source that never recovers).
        retry_delay: Pause after a failed read, seconds.
        refer_threshold: Malignant probability for the smoothed ``refer`` flag; None: the pipeline's own
            ``refer_threshold`` (:class:`~edgeskin.roles.PipelineRole`), else the group rule.
        error_log_size: How many recent error messages the summary keeps.
    """

    max_frames: int | None = None
    smoothing: float = 0.6
    iou_reset: float = 0.3
    quality_gate: QualityGate | Callable[..., QualityReport] | None | str = "default"
    on_result: Callable[[LiveFrame], Any] | None = None
    keep_records: bool = False
    max_consecutive_errors: int = 50
    retry_delay: float = 0.05
    refer_threshold: float | None = None
    error_log_size: int = 100

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be at least 1 or None, got {self.max_frames}")
        if self.max_consecutive_errors < 1:
            raise ValueError(f"max_consecutive_errors must be at least 1, got {self.max_consecutive_errors}")
        if isinstance(self.quality_gate, str) and self.quality_gate != "default":
            raise ValueError(f"quality_gate: expected a gate, None or 'default', got {self.quality_gate!r}")


class LiveLoop:
    """Run a pipeline over a frame source, live.

    Args:
        source: A :class:`~edgeskin.capture.sources.FrameSource`.
        pipeline: A :class:`~edgeskin.roles.PipelineRole` (``LesionPipeline``), or any
            ``pipeline(frame_rgb) -> PipelineResult``.
        options: The loop's :class:`LiveOptions` (default: ``LiveOptions()``).
        **overrides: Single options by name, applied on top of ``options`` (e.g. ``max_frames=300``).
    """

    def __init__(
        self,
        source: FrameSource,
        pipeline: PipelineRole | Callable[[np.ndarray], PipelineResult],
        options: LiveOptions | None = None,
        **overrides: Any,
    ) -> None:
        options = replace(options or LiveOptions(), **overrides) if overrides else options or LiveOptions()
        self.options = options
        self.source = source
        self.pipeline = pipeline
        self.max_frames = options.max_frames
        gate = options.quality_gate
        self.quality_gate = QualityGate() if isinstance(gate, str) else gate
        self.on_result = options.on_result
        self.keep_records = options.keep_records
        self.max_consecutive_errors = int(options.max_consecutive_errors)
        self.retry_delay = float(options.retry_delay)
        threshold = options.refer_threshold
        if threshold is None and isinstance(pipeline, PipelineRole):
            threshold = pipeline.refer_threshold
        self.smoother = DiagnosisSmoother(options.smoothing, options.iou_reset, threshold)
        self._stop = threading.Event()
        self._still_lock = threading.Lock()
        self._still_requests: deque[Callable[[StillAnalysis], Any]] = deque()
        self._errors = 0
        self._error_log: deque[dict[str, Any]] = deque(maxlen=max(1, options.error_log_size))
        self._records: list[dict[str, Any]] = []
        self._processed = 0
        self._withheld = 0
        self._dropped = 0
        self._last_index: int | None = None
        self._timing_sums: dict[str, float] = {}
        self._timing_counts: dict[str, int] = {}
        self._started: float | None = None
        self._ended: float | None = None
        self._stopped_because = "not started"

    # -- control (thread-safe)

    def stop(self) -> None:
        """Ask the loop to end after the frame in progress (callable from any thread)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def request_still(self, callback: Callable[[StillAnalysis], Any]) -> None:
        """Ask the loop's thread to capture and analyse a full-resolution still; ``callback`` gets it.

        Use this from a UI thread: the pipeline stays on the loop's thread. The callback runs on the
        loop's thread too; hand its result to the UI thread yourself (Tk: a queue polled by ``after``).
        """
        with self._still_lock:
            self._still_requests.append(callback)

    # -- figures

    @property
    def processed(self) -> int:
        return self._processed

    @property
    def errors(self) -> int:
        return self._errors

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time since the run started."""
        if self._started is None or self._processed == 0:
            return 0.0
        end = self._ended if self._ended is not None else time.monotonic()
        return self._processed / max(end - self._started, 1e-9)

    def summary(self) -> LiveSummary:
        duration = 0.0
        if self._started is not None:
            duration = (self._ended if self._ended is not None else time.monotonic()) - self._started
        return LiveSummary(
            source=str(getattr(self.source, "name", type(self.source).__name__)),
            fps=self.fps,
            processed=self._processed,
            errors=self._errors,
            dropped=self._dropped,
            duration_s=duration,
            stopped_because=self._stopped_because,
            frames=list(self._records),
            error_messages=list(self._error_log),
            mean_timings_ms={k: self._timing_sums[k] / self._timing_counts[k] for k in self._timing_sums},
            withheld=self._withheld,
        )

    # -- running

    def run(self) -> LiveSummary:
        """Process frames until ``max_frames``, the end of the source, ``stop()`` or Ctrl-C; returns the summary."""
        self._started = time.monotonic()
        self._ended = None
        self._stopped_because = "running"
        consecutive_errors = 0
        try:
            while True:
                if self._stop.is_set():
                    self._stopped_because = "stopped"
                    break
                if self.max_frames is not None and self._processed >= self.max_frames:
                    self._stopped_because = "max_frames"
                    break
                self._serve_still_requests()
                read_start = time.monotonic()
                try:
                    frame = self.source.read()
                except StopIteration:
                    self._stopped_because = "end of source"
                    break
                except CameraLostError as exc:
                    self._record_error("camera", exc)
                    self._stopped_because = "camera lost"
                    break
                except Exception as exc:  # a camera hiccup: report, wait a little, try again
                    self._record_error("camera", exc)
                    consecutive_errors += 1
                    if consecutive_errors >= self.max_consecutive_errors:
                        self._stopped_because = f"{consecutive_errors} failed reads in a row"
                        break
                    self._stop.wait(self.retry_delay)
                    continue
                consecutive_errors = 0
                self.process(frame, read_ms=_ms(time.monotonic() - read_start))
        except KeyboardInterrupt:
            self._stopped_because = "interrupted"
        finally:
            self._ended = time.monotonic()
            self._serve_still_requests()
        return self.summary()

    def process(self, frame: Frame, *, read_ms: float = 0.0) -> LiveFrame:
        """Analyse one frame (quality gate, pipeline, smoothing), count it and call ``on_result``.

        Exceptions from the pipeline are reported in the entry (``"error"``) and counted, never raised.
        """
        if self._started is None:
            self._started = time.monotonic()
        start = time.monotonic()
        if self._last_index is not None and frame.index > self._last_index + 1:
            self._dropped += frame.index - self._last_index - 1
        self._last_index = frame.index
        timings: dict[str, float] = {"read": read_ms}
        entry: dict[str, Any] = {"index": int(frame.index), "timestamp": round(float(frame.timestamp), 6)}
        result: PipelineResult | None = None
        report: QualityReport | None = None
        smoothed: SmoothedDiagnosis | None = None
        withheld = False
        messages: list[str] = []
        lesions: list[dict[str, Any]] = []
        try:
            if self.quality_gate is not None:
                t0 = time.monotonic()
                report = self.quality_gate(frame.rgb)
                timings["quality"] = _ms(time.monotonic() - t0)
            if report is not None and not report.ok:
                withheld = True
                messages.extend(report.guidance)
            else:
                result = self.pipeline(frame.rgb)
                timings.update({k: float(v) for k, v in result.timings_ms.items()})
                main = self.smoother.select(result.lesions)
                if main is None:
                    self.smoother.update(None)
                    messages.extend(result.messages or ("no lesion found",))
                else:
                    lesion = result.lesions[main]
                    if report is not None and isinstance(self.quality_gate, QualityGate):
                        report = self.quality_gate.check_box(report, lesion.box, frame.size)
                    if report is not None and not report.ok:
                        withheld = True
                        messages.extend(report.guidance)
                        entry["boxes"] = [[round(float(v), 2) for v in le.box] for le in result.lesions]
                    else:
                        smoothed = self.smoother.update(lesion)
                        lesions = [le.to_dict() for le in result.lesions]
                        entry["main_lesion"] = main
                        messages.extend(result.messages)
        except Exception as exc:  # a bad frame must not end a live session
            self._record_error("frame", exc, index=frame.index)
            entry["error"] = f"{type(exc).__name__}: {exc}"
            result = None
        timings["process"] = _ms(time.monotonic() - start)
        if withheld:
            self._withheld += 1
        entry.update(
            {
                "lesions": lesions,
                "messages": messages,
                "diagnosis_withheld": withheld,
                "quality": None if report is None else report.to_dict(),
                "smoothed": None if smoothed is None else smoothed.to_dict(),
                "timings_ms": {k: round(float(v), 3) for k, v in timings.items()},
            }
        )
        for key, value in timings.items():
            self._timing_sums[key] = self._timing_sums.get(key, 0.0) + float(value)
            self._timing_counts[key] = self._timing_counts.get(key, 0) + 1
        self._processed += 1
        if self.keep_records:
            self._records.append(entry)
        live = LiveFrame(frame=frame, result=result, quality=report, smoothed=smoothed, withheld=withheld, entry=entry)
        if self.on_result is not None:
            try:
                self.on_result(live)
            except Exception as exc:
                logger.exception("on_result callback failed: %s", exc)
        return live

    def capture_still(self) -> StillAnalysis:
        """Capture a full-resolution still from the source and analyse it (call from the loop's thread).

        Failures are returned in ``StillAnalysis.error`` and counted, not raised.
        """
        timings: dict[str, float] = {}
        image = None
        try:
            t0 = time.monotonic()
            image = self.source.capture_still()
            timings["capture"] = _ms(time.monotonic() - t0)
            report = self.quality_gate(image) if self.quality_gate is not None else None
            t1 = time.monotonic()
            result = self.pipeline(image)
            timings["analyse"] = _ms(time.monotonic() - t1)
            return StillAnalysis(image=image, result=result, quality=report, timings_ms=timings)
        except Exception as exc:
            self._record_error("still", exc)
            return StillAnalysis(image=image, result=None, error=f"{type(exc).__name__}: {exc}", timings_ms=timings)

    # -- internals

    def _serve_still_requests(self) -> None:
        while True:
            with self._still_lock:
                if not self._still_requests:
                    return
                callback = self._still_requests.popleft()
            still = self.capture_still()
            try:
                callback(still)
            except Exception as exc:
                logger.exception("still callback failed: %s", exc)

    def _record_error(self, kind: str, exc: BaseException, index: int | None = None) -> None:
        self._errors += 1
        message = f"{type(exc).__name__}: {exc}"
        entry: dict[str, Any] = {"kind": kind, "time": round(time.monotonic(), 3), "message": message}
        if index is not None:
            entry["index"] = int(index)
        self._error_log.append(entry)
        # The same message every retry would flood the log: the first of a run at WARNING, the rest at DEBUG.
        previous = self._error_log[-2]["message"] if len(self._error_log) > 1 else None
        logger.log(logging.DEBUG if message == previous else logging.WARNING, "%s error: %s", kind, message)


# --------------------------------------------------------------------------------------------- drawing

# A lesion found in a frame that failed the quality gate: a plain grey box, no label, no colour code.
_WITHHELD_BOXES = BoxAnnotator(refer_color=(200, 200, 200), ok_color=(200, 200, 200))


def scale_result(result: PipelineResult, to_size: tuple[int, int]) -> PipelineResult:
    """The result with its boxes moved to a frame of ``to_size`` (width, height), e.g. lores → main.

    The scale comes from the two frame sizes (never a fixed factor); CAM maps stay valid because they
    cover the (scaled) crop box.
    """
    from_w, from_h = result.image_size
    to_w, to_h = int(to_size[0]), int(to_size[1])
    if (from_w, from_h) == (to_w, to_h):
        return result
    factors = np.array([to_w / from_w, to_h / from_h, to_w / from_w, to_h / from_h], np.float64)
    lesions = []
    for lesion in result.lesions:
        box = (np.asarray(lesion.box, np.float64) * factors).astype(np.float32)
        crop = np.rint(np.asarray(lesion.crop_box, np.float64) * factors).astype(np.int64)
        lesions.append(replace(lesion, box=box, crop_box=crop))
    return replace(result, image_size=(to_w, to_h), lesions=tuple(lesions))


def draw_result(
    frame: np.ndarray, result: PipelineResult | None, *, heatmap: bool = False, messages: Sequence[str] = ()
) -> np.ndarray:
    """Draw a result on a copy of ``frame`` (boxes in that frame's pixels) and any guidance messages.

    Composes the annotators: :func:`edgeskin.annotate.annotate` for the result, then
    :class:`~edgeskin.annotate.MessageAnnotator` for the guidance.
    """
    out = annotate(frame, result, heatmap=heatmap) if result is not None else frame.copy()
    if messages:
        MessageAnnotator(tuple(messages)).annotate(out, copy=False)
    return out


def render_live(live: LiveFrame, *, heatmap: bool = False) -> np.ndarray:
    """The picture of a processed frame: drawn on ``main`` when the source gave it, else on ``rgb``.

    A frame whose diagnosis was withheld shows its guidance and, when a lesion was found but is too
    small, a plain box around it without a label.
    """
    frame = live.frame.main if live.frame.main is not None else live.frame.rgb
    result = live.result
    if result is not None and live.frame.main is not None:
        result = scale_result(result, (frame.shape[1], frame.shape[0]))
    if live.withheld:
        out = draw_result(frame, None, messages=live.messages)
        if result is not None:
            _WITHHELD_BOXES.annotate(out, result.lesions, copy=False)
        return out
    found = result is not None and bool(result.lesions)
    return draw_result(frame, result, heatmap=heatmap, messages=() if found else live.messages)
