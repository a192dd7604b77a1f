"""The one record of inference: what became of one face of one frame (or of a frame without any face), as every
stage of the loop hands it on (`emotic.inference.stream`) and every writer takes it."""

from dataclasses import dataclass, replace

import numpy as np

# A frame's status: a face was found (or the geometry is the aligned template), no face was found, the frame could
# not be decoded, or (evaluation) the annotated frame has no image.
FACE, NO_FACE, UNREADABLE, MISSING = "face", "no_face", "unreadable", "missing"
DROPPED = "dropped"  # a live frame the model could not take within --max_latency (`emotic.inference.live`)


class _DroppedFrame:
    def __repr__(self) -> str:
        return "<a dropped live frame>"


DROPPED_FRAME = _DroppedFrame()  # what a dropped live frame holds instead of its image
STATUSES = (FACE, NO_FACE, UNREADABLE)  # what the summaries count


def has_image(image) -> bool:
    """Whether a frame's image is there: not a dropped live frame, nor a missing one (None)."""
    return image is not None and image is not DROPPED_FRAME


@dataclass
class FrameResult:
    """One face of one frame, or one frame without a face.

    `raw` is what the model gave (the head's outputs as `head_outputs` gives them, or the pooled features): with one
    face a frame, every frame has a row, a frame without a usable face a stand-in its neighbours' replace; with
    tracked faces, a frame without any face has none (None). `smoothed` is `raw` after the smoothing stage (frames
    without a face first filled from their neighbours); None until then.
    """

    location: str  # `video/00001.jpg`; a separate image's file name
    frame: int | None  # 0-based position in its video (None: a separate image)
    time: float | None  # seconds from the video's start (None where its frame rate is not known)
    status: str
    face: object | None = None  # the tracked face (`emotic.inference.tracking.TrackedFace`); None without tracking
    # what the auxiliary view was built from: `landmarks` (given), `detector` (the face's own landmarks), `template`
    # (an aligned crop) or `full_image` (no face found); None for a frame without a view (unreadable, missing)
    geometry: str | None = None
    raw: np.ndarray | None = None
    smoothed: np.ndarray | None = None

    @property
    def track(self) -> int | None:
        """The tracked person's id, or None."""
        return None if self.face is None else self.face.track

    @property
    def has_face(self) -> bool:
        return self.status == FACE

    def with_(self, **changes) -> "FrameResult":
        """A copy with `changes` (results are shared by stages that keep them, such as the app's re-smoothing)."""
        return replace(self, **changes)
