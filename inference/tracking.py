"""Every face of a video, followed: an online tracker that gives each person a stable id while the video is decoded,
and a quality record per face that says how far its prediction can be trusted.

`FaceTracker.update(rgb)` takes one frame at a time (no second pass; only the tracks seen in the last `max_gap`
seconds are held, so memory stays flat over an hour of video) and returns the faces of that frame with their track
ids:

1. faces are found by dlib's HOG detector and 68-point landmark model (`emotic[faces]`) on every `detect_every`-th
   frame, the largest `max_faces` of them; in the frames between, each track's landmarks are refitted in the box the
   detector gave around them at the last detection, moved by the motion measured between detections (following a
   face costs the landmark model only), and a face whose landmarks slide off the box expected for it is dropped until
   the next detection;
2. a face is matched to the track it overlaps most (box IoU of at least `min_iou`, one face per track, by
   `scipy.optimize.linear_sum_assignment`); where faces or tracks overlap, not if its descriptor is another known
   person's; where it overlaps its track alone but looks unlike the track's face in its last frame (`appearance`,
   `MIN_APPEARANCE`: a cut to another person at the same place), not if its descriptor is `max_distance` or more
   from the track's own (someone else, known or not). Between detections, a followed face that looks unlike its
   track's is dropped until the next detection;
3. a face no track overlaps is matched by dlib's 128-d face descriptor (`dlib_face_recognition_resnet_model_v1`,
   shipped in face_recognition_models) to a track seen in the last `max_gap` seconds: a person who leaves the picture
   and comes back keeps the id; the descriptor distance must be under `max_distance` (0.6, the threshold dlib's
   model is documented with: one person's faces lie within it);
4. any other face starts a new track. Ids are 1, 2, 3, ... in order of first appearance (left to right among
   faces that appear in the same frame).

Descriptors are computed only where they are needed: for faces no track overlaps, when two faces or tracks overlap
(people crossing), when a face's appearance changes suddenly, and every `refresh_every` detections of a track, to
keep it current. Every track's first face is described, so a face that changed can always be compared; the
appearance itself (an 8x8 grey picture of the eyes, nose and mouth) costs well under a millisecond a face.

The quality record (`Quality`): face size in pixels, head yaw and pitch (degrees, from the landmarks by a
scaled-orthographic fit of a generic 3-D face), and sharpness (variance of the Laplacian of the face at 64x64).
`Quality.reliable` flags faces smaller than `MIN_FACE_SIZE`, turned beyond `MAX_YAW` / `MAX_PITCH`, or blurred
below `MIN_SHARPNESS`.
"""

import math
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from emotic.processing.face_geometry import box_iou

# What a reliable face is (`Quality.reliable`): at least this many pixels across, turned at most this far (degrees;
# the frontal-to-profile range the training data mostly covers), and this sharp (variance of the Laplacian of the
# grey face at 64x64, in 0-255 grey levels: a sharp photographed face scores several hundred, one blurred by a
# Gaussian of about a pixel at that size around 100 or under).
MIN_FACE_SIZE = 48
MAX_YAW = 45.0
MAX_PITCH = 30.0
MIN_SHARPNESS = 100.0
# A track's face that looks this little like its face in the track's last frame (`appearance`: normalised correlation)
# may be someone else, as after a cut between two people at the same place: its descriptor decides. Measured on the
# two real people of the tests, moving and scaling with noise: one person from frame to frame 0.70 at the least (0.95
# for 95% of frames), the two people at the same place 0.53 at the most.
MIN_APPEARANCE = 0.65

# A generic 3-D face (x right, y up, z towards the camera; arbitrary units) at six of the 68 landmarks: nose tip,
# chin, the eyes' outer corners and the mouth corners, as the image shows them (left first).
_HEAD_POINTS = np.array([[0.0, 0.0, 0.0], [0.0, -330.0, -65.0], [-225.0, 170.0, -135.0], [225.0, 170.0, -135.0],
                         [-150.0, -150.0, -125.0], [150.0, -150.0, -125.0]])
_HEAD_INDICES = [30, 8, 36, 45, 48, 54]
_HEAD_CENTRED = _HEAD_POINTS - _HEAD_POINTS.mean(0)
_HEAD_SOLVE = np.linalg.pinv(_HEAD_CENTRED)  # (3, 6): the least-squares projection from the centred 2-D points


def head_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """Yaw and pitch in degrees of a face from its `(68, 2)` landmarks (image pixels, y down): yaw > 0 when the face
    turns towards the image's right, pitch > 0 when it looks up. A scaled-orthographic fit of `_HEAD_POINTS`: the
    2x3 projection least-squares fitted, its rows made orthonormal, the angles read from the rotation."""
    points = np.asarray(landmarks, dtype=np.float64)[_HEAD_INDICES] * [1.0, -1.0]  # y up, as the 3-D face
    projection = (_HEAD_SOLVE @ (points - points.mean(0))).T  # (2, 3)
    first = projection[0] / (np.linalg.norm(projection[0]) or 1.0)
    second = projection[1] - (projection[1] @ first) * first
    second /= np.linalg.norm(second) or 1.0
    yaw = np.arcsin(np.clip(first[2], -1.0, 1.0))
    pitch = np.arctan2(-second[2], second[1] * np.cos(yaw))
    return float(np.degrees(yaw)), float(np.degrees(pitch))


def sharpness(grey_face: np.ndarray) -> float:
    """Variance of the Laplacian of a grey face `(64, 64)` in 0-255: low when the face is blurred."""
    face = np.asarray(grey_face, dtype=np.float64)
    laplacian = (face[:-2, 1:-1] + face[2:, 1:-1] + face[1:-1, :-2] + face[1:-1, 2:] - 4.0 * face[1:-1, 1:-1])
    return float(laplacian.var())


def landmark_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The face box of the tracker and the CSV: the bounding box of the 68 landmarks (brows to chin)."""
    points = np.asarray(landmarks)
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()),
            float(points[:, 1].max()))


def grey_face(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face in its landmarks' box, grey, at 64x64 (0-255): what its sharpness and appearance are measured on."""
    from PIL import Image

    x0, y0, x1, y1 = landmark_box(landmarks)
    height, width = rgb.shape[:2]
    crop = (max(0, int(x0)), max(0, int(y0)), min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1))))
    if crop[2] - crop[0] < 2 or crop[3] - crop[1] < 2:
        return np.zeros((64, 64))
    return np.asarray(Image.fromarray(rgb).crop(crop).convert("L").resize((64, 64), Image.BILINEAR))


def appearance(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A face's appearance, for telling a sudden change of face: the region of its eyes, nose and mouth (placed by
    the eyes, which the landmarks find more steadily than the face's outline), grey at 8x8, zero mean and unit norm,
    so that the dot product of two is their normalised correlation."""
    from PIL import Image

    points = np.asarray(landmarks, dtype=np.float64)
    left, right = points[36:42].mean(0), points[42:48].mean(0)
    (x, y), span = (left + right) / 2, max(float(np.linalg.norm(right - left)), 1.0)
    region = (int(x - 1.6 * span), int(y - 1.0 * span), int(np.ceil(x + 1.6 * span)), int(np.ceil(y + 2.2 * span)))
    small = np.asarray(Image.fromarray(rgb).crop(region).convert("L").resize((8, 8), Image.BILINEAR),
                       dtype=np.float64)
    small = small - small.mean()
    return small / (np.linalg.norm(small) or 1.0)


@dataclass(frozen=True)
class Quality:
    """How far a face's prediction can be trusted; `reliable` by the thresholds at the top of this module."""

    face_size: float  # the larger side of the face box, in pixels
    yaw: float
    pitch: float
    sharpness: float

    @classmethod
    def of(cls, rgb: np.ndarray, landmarks: np.ndarray, grey: np.ndarray | None = None) -> "Quality":
        """`grey`: the face's `grey_face`, where already made."""
        x0, y0, x1, y1 = landmark_box(landmarks)
        grey = grey_face(rgb, landmarks) if grey is None else grey
        yaw, pitch = head_pose(landmarks)
        return cls(max(x1 - x0, y1 - y0), yaw, pitch, sharpness(grey))

    @property
    def reliable(self) -> bool:
        return (self.face_size >= MIN_FACE_SIZE and abs(self.yaw) <= MAX_YAW and abs(self.pitch) <= MAX_PITCH
                and self.sharpness >= MIN_SHARPNESS)


@dataclass
class TrackedFace:
    """One face of one frame: its track id, landmarks, box (`landmark_box`), detector score (None for a face
    followed between detections) and `Quality`."""

    track: int
    landmarks: np.ndarray
    box: tuple
    score: float | None
    quality: Quality


@dataclass
class _Track:
    id: int
    landmarks: np.ndarray
    box: tuple  # landmark_box
    # the detector's box around the landmarks' box at the last detection, as fractions of the landmarks' box: where the
    # landmark model is fitted when the face is followed (a fixed relation, so that following a still face stays put)
    relation: tuple
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, pixels per frame
    detected_box: tuple | None = None  # the box and frame of its last detection
    detected_frame: int | None = None
    descriptors: deque = field(default_factory=lambda: deque(maxlen=8))
    detections: int = 0
    look: np.ndarray | None = None  # `appearance` of its face in the last frame it was seen

    def changed(self, look: np.ndarray) -> bool:
        """Whether a face looks unlike this track's face in its last frame (`MIN_APPEARANCE`)."""
        return self.look is not None and float((look * self.look).sum()) < MIN_APPEARANCE

    def expected_box(self, frame: int) -> tuple:
        dx, dy = self.velocity * (frame - self.last_frame)
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def distance(self, descriptor: np.ndarray) -> float:
        return float(min(np.linalg.norm(known - descriptor) for known in self.descriptors)) \
            if self.descriptors else np.inf


def _ious(boxes_a, boxes_b) -> np.ndarray:
    """IoU of every `(x0, y0, x1, y1)` box of `boxes_a` with every one of `boxes_b`: `(len(a), len(b))`."""
    a, b = np.asarray(boxes_a, dtype=float).reshape(-1, 4), np.asarray(boxes_b, dtype=float).reshape(-1, 4)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area = lambda boxes: (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _relation(outer, inner) -> tuple:
    """`outer` box's sides relative to `inner` box's, as fractions of its width and height."""
    width, height = max(inner[2] - inner[0], 1.0), max(inner[3] - inner[1], 1.0)
    return ((outer[0] - inner[0]) / width, (outer[1] - inner[1]) / height, (outer[2] - inner[2]) / width,
            (outer[3] - inner[3]) / height)


def _assign(cost: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """Pairs (row, column) of the least-cost one-to-one assignment whose cost is under `limit`."""
    from scipy.optimize import linear_sum_assignment

    if cost.size == 0:
        return []
    rows, columns = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
    return [(r, c) for r, c in zip(rows, columns) if cost[r, c] < limit]


class FaceDescriptor:
    """dlib's 128-d face descriptor (ResNet, trained so that one person's faces lie within 0.6 of each other), from
    the face's 68 landmarks. Its weights ship in face_recognition_models (`emotic[faces]`)."""

    _shared = None
    _lock = threading.Lock()

    @classmethod
    def shared(cls) -> "FaceDescriptor":
        """One instance per process (the model is 22 MB)."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __init__(self):
        import dlib

        from emotic.processing.face_geometry import face_model_path

        path = face_model_path("dlib_face_recognition_resnet_model_v1.dat")
        if path is None:
            raise ImportError("tracking faces needs face_recognition_models (dlib's face descriptor model): "
                              "pip install 'emotic[faces]'")
        self._dlib, self.model = dlib, dlib.face_recognition_model_v1(path)

    def __call__(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        x0, y0, x1, y1 = (int(round(v)) for v in landmark_box(landmarks))
        shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1, y1),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])
        return np.asarray(self.model.compute_face_descriptor(np.ascontiguousarray(rgb), shape), dtype=np.float64)


class FaceTracker:
    """Stable track ids for every face of a video, frame by frame (see the module's docstring).

    Args:
        fps: the video's frame rate (`max_gap` is in seconds).
        max_faces: the largest faces kept per frame; the others are counted in `dropped`.
        max_gap: seconds a track may be unseen and still take back a face by its descriptor.
        detect_every: detect faces on every n-th frame, follow them with landmarks in between.
        min_iou, max_distance: the box overlap that continues a track, the descriptor distance that re-identifies.
    """

    def __init__(self, fps: float = 30.0, max_faces: int = 8, max_gap: float = 2.0, detect_every: int = 1,
                 min_iou: float = 0.3, max_distance: float = 0.6, refresh_every: int = 5, landmarker=None,
                 descriptor=None):
        if not 0 < fps <= 1000:  # also NaN and infinity
            raise ValueError(f"fps={fps}; expected a frame rate > 0 and <= 1000")
        if not 0 <= max_gap <= 86400:
            raise ValueError(f"max_gap={max_gap}; expected seconds >= 0 and <= 86400 (a day)")
        for name, value in (("max_faces", max_faces), ("detect_every", detect_every)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected an integer >= 1")
        if landmarker is None:
            from emotic.processing.face_geometry import FaceLandmarker

            landmarker = FaceLandmarker.shared()
        self.landmarker = landmarker
        self.descriptor = descriptor or FaceDescriptor.shared()
        self.fps, self.max_faces, self.detect_every = fps, max_faces, detect_every
        self.max_gap_frames = max(1, int(round(max_gap * fps)))
        # a track unseen for at most this many frames still continues by overlap (a detection missed now and then)
        self.recent_frames = max(detect_every, int(round(0.25 * fps)))
        self.min_iou, self.max_distance, self.refresh_every = min_iou, max_distance, refresh_every
        self.tracks: dict[int, _Track] = {}  # the tracks seen in the last max_gap seconds
        self.frame = -1
        self.size = None  # the last frame's (height, width): a frame of another size is a detection frame
        self.next_id = 1
        self.seen = {}  # per track ever given: first and last frame, frames seen, first box (a few numbers each)
        self.dropped = 0  # faces found beyond max_faces, over the video
        # A detection below the detector's `confident_score` (BlazeFace's score of a half-hidden face, whose
        # descriptor is no one's, or of a false detection) continues a track it overlaps, but neither takes back a
        # track by its descriptor nor starts one until it has been found at the same place by every detection for
        # half a second: until then it is pending, not shown (ByteTrack lets unsure detections continue tracks only;
        # a small face far away, unsure all the time, is still tracked after the wait).
        self.confident_score = getattr(landmarker, "confident_score", None)
        self.confirm_after = max(2, math.ceil(0.5 * fps / detect_every))  # detections in a row
        self.pending = []  # (box, detections in a row) of unsure faces of the last detection frame no track took

    def update(self, rgb: np.ndarray) -> list[TrackedFace]:
        """The faces of the next frame (`(H, W, 3)` uint8 RGB), each with its track id, in the order of their ids."""
        self.frame += 1
        frame = self.frame
        for track_id in [t.id for t in self.tracks.values() if frame - t.last_frame > self.max_gap_frames]:
            del self.tracks[track_id]  # gone for longer than max_gap: its id is never given again
        resized, self.size = self.size is not None and rgb.shape[:2] != self.size, rgb.shape[:2]
        if frame % self.detect_every == 0 or resized:  # boxes followed from a frame of another size would be wrong
            found = self._detect(rgb)
        else:
            found = self._follow(rgb)
        faces = [TrackedFace(track.id, track.landmarks, track.box, score, Quality.of(rgb, track.landmarks, grey))
                 for track, score, grey in found]
        for face in faces:
            record = self.seen.setdefault(face.track, {"first_frame": frame, "first_box": [round(v, 1) for v in
                                                                                            face.box], "frames": 0})
            record["last_frame"], record["frames"] = frame, record["frames"] + 1
        return sorted(faces, key=lambda face: face.track)

    def skip(self) -> None:
        """A frame that could not be decoded: time goes on, nobody is seen."""
        self.frame += 1

    # -- detection frames --------------------------------------------------------------------------------------------

    def _detect(self, rgb):
        detections, total = self.landmarker.detect(rgb, self.max_faces)
        self.dropped += total - len(detections)
        boxes = [landmark_box(landmarks) for landmarks, _, _ in detections]
        greys = [grey_face(rgb, landmarks) for landmarks, _, _ in detections]
        looks = [appearance(rgb, landmarks) for landmarks, _, _ in detections]
        descriptors = [None] * len(detections)

        def describe(index):
            if descriptors[index] is None:
                descriptors[index] = self.descriptor(rgb, detections[index][0])
            return descriptors[index]

        recent = [t for t in self.tracks.values() if self.frame - t.last_frame <= self.recent_frames]
        expected = [t.expected_box(self.frame) for t in recent]
        ious = _ious(boxes, expected)
        crowded = (_ious(boxes, boxes) > 0).sum(1) > 1 if boxes else np.zeros(0, bool)  # faces overlapping faces
        crowded |= (ious > 0).sum(1) > 1 if recent else False  # a face overlapping two tracks: people crossing
        matches = {}
        for face, column in _assign(1.0 - ious, 1.0 - self.min_iou):
            track = recent[column]
            overlapping = crowded[face] or (ious[:, column] > 0).sum() > 1
            if overlapping and self._someone_else(describe(face), track):
                continue  # it overlaps, but its descriptor is another person's
            if not overlapping and track.changed(looks[face]) and track.descriptors and \
                    track.distance(describe(face)) >= self.max_distance:
                continue  # where the track's face was, looking otherwise, and not its person: someone else (a cut)
            matches[face] = track
        # faces no track overlaps: re-identified among the tracks not yet matched, seen in the last max_gap seconds
        # (not unsure ones: a half-hidden face's or a false detection's descriptor may come near anyone's)
        free = [i for i in range(len(detections)) if i not in matches and not self._unsure(detections[i][1])]
        taken = {track.id for track in matches.values()}
        candidates = [t for t in self.tracks.values() if t.id not in taken and t.descriptors]
        if free and candidates:
            distance = np.array([[track.distance(describe(face)) for track in candidates] for face in free])
            for row, column in _assign(distance, self.max_distance):
                matches[free[row]] = candidates[column]
        found, pending = [], []
        for index in sorted(range(len(detections)), key=lambda i: boxes[i][0]):  # new ids left to right
            landmarks, score, detector_box = detections[index]
            track = matches.get(index)
            if track is None and self._unsure(score):
                seen = 1 + max([count for box, count in self.pending if box_iou(boxes[index], box) >= self.min_iou],
                               default=0)
                if seen < self.confirm_after:
                    pending.append((boxes[index], seen))  # unsure and new: shown once confirmed
                    continue
            if track is None:
                track = self.tracks[self.next_id] = _Track(self.next_id, landmarks, boxes[index], (0, 0, 0, 0),
                                                           self.frame)
                self.next_id += 1
                describe(index)
            self._move(track, landmarks, boxes[index], looks[index], _relation(detector_box, boxes[index]))
            track.detections += 1
            if descriptors[index] is None and track.detections % self.refresh_every == 0:
                describe(index)
            if descriptors[index] is not None:
                track.descriptors.append(descriptors[index])
            found.append((track, score, greys[index]))
        self.pending = pending
        return found

    def _unsure(self, score) -> bool:
        return self.confident_score is not None and score is not None and score < self.confident_score

    def _someone_else(self, descriptor: np.ndarray, track: _Track) -> bool:
        """Whether a face that overlaps `track` among other faces or tracks is another known person: nearer to
        another track's descriptors (and within `max_distance` of them) than to this one's. Among others, a face
        merely far from its own track (half hidden behind someone, turned) stays with it."""
        own = track.distance(descriptor)
        return any(other.distance(descriptor) < min(own, self.max_distance)
                   for other in self.tracks.values() if other is not track)

    def _move(self, track: _Track, landmarks, box, look, relation=None) -> None:
        """The track's face is now `landmarks` in `box`, looking `look`; `relation`: found by the detector (else
        followed)."""
        if relation is not None:  # its motion from detection to detection, for the boxes expected in between
            gap = self.frame - track.detected_frame if track.detected_frame is not None else 0
            if 0 < gap <= self.recent_frames:
                centre = lambda b: np.array([b[0] + b[2], b[1] + b[3]]) / 2  # noqa: E731
                motion = (centre(box) - centre(track.detected_box)) / gap
                limit = 0.2 * (box[2] - box[0])  # a face moves less than a fifth of its width a frame
                track.velocity = motion * min(1.0, limit / (np.linalg.norm(motion) or 1.0))
            else:
                track.velocity = np.zeros(2)  # new, or re-identified after an absence: no motion known
            track.relation, track.detected_box, track.detected_frame = relation, box, self.frame
        track.landmarks, track.box, track.look, track.last_frame = landmarks, box, look, self.frame

    # -- frames between detections -------------------------------------------------------------------------------------

    def _follow(self, rgb):
        height, width = rgb.shape[:2]
        found = []
        for track in sorted(self.tracks.values(), key=lambda t: t.id):
            if track.last_frame != self.frame - 1:
                continue  # not seen in the last frame: only a detection brings it back
            expected = track.expected_box(self.frame)
            x0, y0, x1, y1 = expected
            width_, height_ = x1 - x0, y1 - y0
            r = track.relation
            landmarks = self.landmarker.follow(rgb, (x0 + r[0] * width_, y0 + r[1] * height_, x1 + r[2] * width_,
                                                     y1 + r[3] * height_))
            box = landmark_box(landmarks)
            centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if not (0 <= centre_x < width and 0 <= centre_y < height):
                continue  # followed out of the picture: lost until a detection finds it
            if box_iou(box, expected) < 0.5:
                continue  # the landmarks slid away (onto a face nearby, or off a face that left): wait for a detection
            if any(box_iou(box, other.box) > 0.5 for other, _, _ in found):
                continue  # two tracks on one face: the older keeps it
            look = appearance(rgb, landmarks)
            if track.changed(look):
                continue  # another face where the track's was (a cut?): the next detection tells whose it is
            self._move(track, landmarks, box, look)
            found.append((track, None, grey_face(rgb, landmarks)))
        return found
