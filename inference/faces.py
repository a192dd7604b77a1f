"""How the loop finds the faces of a frame and turns them into the model's two views: strategies that never touch the
model (`emotic.inference.stream` runs it on what they prepare).

- `OneFace`: the one face of each frame, as the image processor finds it for its `geometry`: an aligned crop
  (`template`), the largest face the detector finds (`detector`, or `auto` where a detector is installed); a frame
  where none is found is taken whole and marked `no_face`. A row for every frame.
- `TrackedFaces`: every face of each frame, followed with a stable id per person (`emotic.inference.tracking`); a
  row per face, and a row without a face for a frame where nobody is found.

Both take a batch of decoded frames at a time (`prepare`), in the loop's background thread, and give the batch's
results (`FrameResult`, without outputs yet), the views of the faces to run and which results those views are.
"""

import logging

import numpy as np

from emotic.inference.results import DROPPED, DROPPED_FRAME, FACE, MISSING, NO_FACE, UNREADABLE, FrameResult
from emotic.inference.sources import DEFAULT_FPS
from emotic.inference.tracking import FaceTracker, Quality
from emotic.processing.image_files import open_image

FACES = ("auto", "all", "largest")  # the choices of `--faces`


def _decode(processor, image, location: str):
    """The frame as RGB, or the status of a frame without one (`missing`, `unreadable`)."""
    if image is None:
        return None, MISSING
    if image is DROPPED_FRAME:  # a live frame dropped to keep up: nothing to decode
        return None, DROPPED
    try:
        return processor.to_rgb(open_image(image), location), FACE
    except (ValueError, OSError):
        return None, UNREADABLE


class OneFace:
    """The one face of each frame, found by the image processor (see the module's docstring). Frames without a
    usable face get the model's stand-in row in the loop (`fills_frames`), which their neighbours' replaces."""

    tracked = False
    fills_frames = True  # every frame has a row to smooth

    def __init__(self, processor, geometry: str | None = None):
        self.processor, self.geometry = processor, geometry
        # the processor's per-image "no face found" warning is not said: the commands count and report those frames
        logging.getLogger(type(processor).__module__).setLevel(logging.ERROR)

    def start(self, fps: float | None) -> None:
        """A new video begins (nothing is carried from one frame to the next)."""

    def prepare(self, batch):
        """`batch`: (location, frame, time, image) per frame. The results, the processor's views of the frames that
        could be decoded, and the indices of their results."""
        results, images, viewed = [], [], []
        for location, frame, time, image in batch:
            rgb, status = _decode(self.processor, image, location)
            results.append(FrameResult(location, frame, time, status))
            if rgb is not None:
                viewed.append(len(results) - 1)
                images.append(rgb)
        if not images:
            return results, None, viewed
        views = self.processor(images, return_tensors="pt", return_regions=True, geometry=self.geometry)
        for index, region in zip(viewed, views["regions"]):
            results[index].geometry = region["geometry"]
            if region["geometry"] == "full_image":  # nothing found: the whole image was the face
                results[index].status = NO_FACE
        return results, views, viewed


class TrackedFaces:
    """Every face of each frame, tracked (see the module's docstring): `start(fps)` begins a video with a new
    `FaceTracker` (its options checked and its models loaded when this is made); after a video, `seen` holds its
    tracks (first and last frame, frames seen, first box) and `dropped` the faces beyond `max_faces`."""

    tracked = True
    fills_frames = False  # a frame without a face has no row to smooth

    def __init__(self, processor, **tracker_options):
        self.processor, self.tracker_options = processor, tracker_options
        self.tracker = FaceTracker(**tracker_options)

    def start(self, fps: float | None) -> None:
        self.tracker = FaceTracker(**{**self.tracker_options, "fps": fps or DEFAULT_FPS})

    @property
    def seen(self) -> dict:
        return self.tracker.seen

    @property
    def dropped(self) -> int:
        return self.tracker.dropped

    def prepare(self, batch):
        results, images, landmarks, viewed = [], [], [], []
        for location, frame, time, image in batch:
            rgb, status = _decode(self.processor, image, location)
            if rgb is None:
                self.tracker.skip()  # time goes on, nobody is seen
                results.append(FrameResult(location, frame, time, status))
                continue
            rgb = np.asarray(rgb)
            faces = self.tracker.update(rgb)
            if not faces:
                results.append(FrameResult(location, frame, time, NO_FACE))
            for face in faces:
                viewed.append(len(results))
                results.append(FrameResult(location, frame, time, FACE, face, geometry="detector"))
                images.append(rgb)
                landmarks.append(face.landmarks)
        views = self.processor(images, landmarks=landmarks, return_tensors="pt") if images else None
        return results, views, viewed


def frame_reliability(paths, processor) -> np.ndarray:
    """Per frame (an image path, or None for a frame without an image) whether its largest face is `reliable`: found
    by the detector and passing `Quality.reliable`. A frame without an image, or without a face found, is not."""
    from emotic.processing.face_geometry import FaceLandmarker

    landmarker, flags = FaceLandmarker.shared(), np.zeros(len(paths), dtype=bool)
    for index, path in enumerate(paths):
        rgb, _ = _decode(processor, path, str(path))
        if rgb is None:
            continue
        rgb = np.asarray(rgb)
        found, _ = landmarker.detect(rgb, 1)
        flags[index] = bool(found) and Quality.of(rgb, found[0][0]).reliable
    return flags


def tracked_sources(sources, faces: str, geometry: str, temporal_model=None) -> set:
    """The names of the sources whose faces are all tracked (`--faces`): with `all`, every video, live source and
    frame folder; with `auto`, the video files and live sources, unless the frames are aligned crops (`--geometry
    template`) or a temporal head predicts one face a frame. Separate images are never tracked."""
    if faces not in FACES:
        raise ValueError(f"--faces {faces!r}; allowed: {', '.join(FACES)}")
    if faces == "largest" or (faces == "auto" and (geometry == "template" or temporal_model)):
        return set()
    if faces == "all" and geometry == "template":
        raise ValueError("--faces all finds faces with the detector; --geometry template says the frames are aligned "
                         "crops of one face: drop one of the two")
    if faces == "all" and temporal_model:
        raise ValueError("--temporal_model predicts one face per frame from its neighbours; with a temporal head "
                         "use --faces largest")
    from emotic.processing.face_geometry import detector_available

    kinds = ("video", "stream") if faces == "auto" else ("video", "stream", "frames")
    chosen = {source.name for source in sources if source.kind in kinds}
    if chosen and not detector_available():
        if faces == "auto":
            return set()  # nothing to find faces with: the largest-face behaviour, as the processor's template
        raise ImportError("--faces all needs the face detector and landmark models: pip install 'emotic[faces]'")
    return chosen
