"""Face geometry for the auxiliary view: where the face, eyes, mouth and nose are in an image.

Three sources, in the order the image processor tries them:
1. landmarks from the caller, in one of the conventions of `LANDMARK_CONVENTIONS` (5, 68, 468 or 478 points);
2. a face detector and 68-point landmark model: MediaPipe's BlazeFace (full range) run by LiteRT, its model shipped
   in this package (`face_models/`, Apache-2.0), or dlib's HOG detector (`FACE_DETECTORS`, `set_face_detector`);
   then dlib's shape predictor, whose weights ship in `face_recognition_models` (nothing is downloaded at run time);
3. the canonical template of an aligned face crop (`CANONICAL_FIVE_POINTS`), for Aff-Wild2 `cropped_aligned`
   frames and other crops aligned the same way.

Boxes are `(x0, y0, x1, y1)` in pixels of the input image. This file is copied into Hub repositories next to the
image processor, so it imports only numpy at the top level; the detector is imported on first use.
"""

import functools
import importlib.util
import os
import threading
from typing import Literal, get_args

import numpy as np

# The regions of the auxiliary view, top to bottom: the order they are laid out in it
Region = Literal["eyes", "nose", "mouth"]
REGIONS = get_args(Region)
MAX_FACE_SCALE = 4  # a face from caller's landmarks may reach past the image, but not be this many times larger

# The 5-point alignment template of 112x112 aligned face crops (InsightFace/ArcFace, as used by RetinaFace-aligned
# datasets), as fractions of the crop: eye centres (image left, image right), nose tip, mouth corners.
CANONICAL_FIVE_POINTS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
) / 112.0

# Region boxes on that template (fractions of the crop). With d the distance between the eye centres and w the
# mouth width: eyes from 0.45 d beyond each eye centre, 0.38 d above the eye line (brows) to 0.17 d below it; nose
# 0.3 d either side of the tip, from the eye line (the bridge) to 0.2 d below the tip; mouth 0.1 w beyond each
# corner, 0.26 w above to 0.24 w below the corners (tight on closed lips, still half of a wide-open mouth).
CANONICAL_REGION_BOXES = {
    "eyes": (0.2003, 0.3411, 0.7981, 0.5142),
    "nose": (0.4058, 0.4607, 0.5946, 0.7034),
    "mouth": (0.3449, 0.7562, 0.6576, 0.8865),
}

# Point indices of each region per landmark convention (the number of points names the convention).
_FACE_MESH_EYES = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,  # right eye
                   263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,  # left eye
                   46, 53, 52, 65, 55, 70, 63, 105, 66, 107, 276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
_FACE_MESH_NOSE = [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115,
                   48, 64]
_FACE_MESH_MOUTH = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409]
LANDMARK_CONVENTIONS = {
    5: "5-point (eye centres, nose tip, mouth corners; MTCNN/RetinaFace order)",
    68: "68-point (iBUG 300-W / dlib)",
    468: "468-point (MediaPipe FaceMesh)",
    478: "478-point (MediaPipe FaceMesh with irises)",
}
_DENSE_REGIONS = {
    68: {"eyes": list(range(17, 27)) + list(range(36, 48)), "nose": list(range(27, 36)), "mouth": list(range(48, 60))},
    468: {"eyes": _FACE_MESH_EYES, "nose": _FACE_MESH_NOSE, "mouth": _FACE_MESH_MOUTH},
}
_DENSE_REGIONS[478] = _DENSE_REGIONS[468]
# Per convention, which points belong to each region, as a `(regions, points)` mask in `CANONICAL_REGION_BOXES`'s order
_DENSE_MASKS = {count: np.array([np.isin(np.arange(count), regions[region]) for region in CANONICAL_REGION_BOXES])
                for count, regions in _DENSE_REGIONS.items()}
# Five points from a dense convention: (eye indices, other eye indices, nose tip, mouth corner, mouth corner), and as
# a `(points, 5)` matrix of weights (each eye the mean of its points): `landmarks @ weights` gives the five.
_FIVE_FROM_DENSE = {
    68: (range(36, 42), range(42, 48), 30, 48, 54),
    468: ([33, 133, 159, 145], [263, 362, 386, 374], 4, 61, 291),
}
_FIVE_FROM_DENSE[478] = _FIVE_FROM_DENSE[468]
_FIVE_WEIGHTS = {count: np.stack([np.isin(np.arange(count), part) / np.size(part) for part in parts], axis=1)
                 for count, parts in _FIVE_FROM_DENSE.items()}
# Margins around a dense region's points, as fractions of its box (left, top, right, bottom).
_DENSE_MARGINS = {"eyes": (0.05, 0.10, 0.05, 0.25), "nose": (0.20, 0.0, 0.20, 0.10), "mouth": (0.10, 0.20, 0.10, 0.20)}
_DENSE_MARGIN_ARRAY = np.array([_DENSE_MARGINS[region] for region in CANONICAL_REGION_BOXES])  # (regions, 4)
# The template's regions as complex centres (x + iy) and half sizes
_TEMPLATE_BOXES = np.array(list(CANONICAL_REGION_BOXES.values()))
_TEMPLATE_CENTRES = ((_TEMPLATE_BOXES[:, 0] + _TEMPLATE_BOXES[:, 2])
                     + 1j * (_TEMPLATE_BOXES[:, 1] + _TEMPLATE_BOXES[:, 3])) / 2
_TEMPLATE_HALF_SIZES = ((_TEMPLATE_BOXES[:, 2] - _TEMPLATE_BOXES[:, 0])
                        + 1j * (_TEMPLATE_BOXES[:, 3] - _TEMPLATE_BOXES[:, 1])) / 2  # half width + i half height


def validate_landmarks(landmarks, name: str = "landmarks") -> np.ndarray:
    """`(K, 2)` float array of a known convention, or a `ValueError` naming the input and what is expected."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValueError(f"{name}: expected an array of shape (num_points, 2) or (num_points, 3); "
                         f"got shape {points.shape}")
    if points.shape[0] not in LANDMARK_CONVENTIONS:
        known = ", ".join(f"{k} = {v}" for k, v in LANDMARK_CONVENTIONS.items())
        raise ValueError(f"{name}: {points.shape[0]} points is not a known landmark convention; expected {known}")
    if not np.isfinite(points).all():
        raise ValueError(f"{name}: contains NaN or infinite coordinates")
    return points[:, :2]


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres (image left first), nose tip, mouth corners (image left first) from any known convention."""
    points = _five_points(_complex(np.asarray(landmarks, dtype=float)[None]))[0]
    return np.stack([points.real, points.imag], axis=1)


def _complex(points: np.ndarray) -> np.ndarray:
    """`(..., 2)` points → `(...)` complex numbers `x + iy`: a similarity is then `z * point + shift`."""
    return points[..., 0] + 1j * points[..., 1]


def _five_points(landmarks: np.ndarray) -> np.ndarray:
    """`five_points` of `(N, K)` complex landmarks of one convention: `(N, 5)` complex."""
    points = landmarks.copy() if landmarks.shape[1] == 5 else landmarks @ _FIVE_WEIGHTS[landmarks.shape[1]]
    # order the eyes and the mouth corners left/right as they appear in the image (numpy orders complex numbers by
    # their real part, x, first)
    points[:, 0:2], points[:, 3:5] = np.sort(points[:, 0:2], axis=1), np.sort(points[:, 3:5], axis=1)
    return points


def _similarity_fit(source: np.ndarray) -> tuple[np.ndarray, complex]:
    """What fitting similarities from the `(M,)` complex `source` points needs: `(M, 2)` weights, such that
    `targets @ weights` gives each target row's `z` and mean, and the source's mean. For 2-D points Umeyama's least
    squares without reflection is complex least squares, `z = sum(t conj(s)) / sum(|s|^2)` on the centred source (the
    centred source sums to 0, so the targets need no centring)."""
    source_mean = source.mean()
    centred = source - source_mean
    spread = float((centred * centred.conj()).real.sum())
    if spread == 0:
        raise ValueError("similarity: the source points all lie at one place; expected points spread over a face")
    return np.stack([centred.conj() / spread, np.full(len(source), 1 / len(source))], axis=1), source_mean


def _similarities(targets: np.ndarray, fit: tuple[np.ndarray, complex]) -> tuple[np.ndarray, np.ndarray]:
    """`(z, shift)`, each `(N,)` complex, of the least-squares similarities taking the source points of `fit`
    (`_similarity_fit`) onto each row of `(N, M)` complex `targets`: a point `p` maps to `z p + shift` (scale `|z|`,
    angle `arg z`), for all N at once (the processor asks for every image)."""
    weights, source_mean = fit
    z, target_mean = (targets @ weights).T
    return z, target_mean - z * source_mean


def similarity_transform(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares scale, rotation matrix and translation taking `source` points onto `target` (Umeyama)."""
    z, shift = _similarities(_complex(np.asarray(target, dtype=float))[None],
                             _similarity_fit(_complex(np.asarray(source, dtype=float))))
    a, b, scale = float(z[0].real), float(z[0].imag), float(abs(z[0]))
    rotation = np.array([[a, -b], [b, a]]) / scale if scale > 0 else np.eye(2)  # all targets at one place: scale 0
    return scale, rotation, np.array([shift[0].real, shift[0].imag])


# The points a face is fitted on, from its five: eyes, nose tip and the mouth's centre (`five @ _STABLE_FROM_FIVE`).
# Mouth corners move with the expression (a smile widens the mouth), which would stretch the fitted face; their
# midpoint moves much less.
_STABLE_FROM_FIVE = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0.5], [0, 0, 0, 0.5]])
_TEMPLATE_WEIGHTS, _TEMPLATE_MEAN = _similarity_fit(_complex(CANONICAL_FIVE_POINTS) @ _STABLE_FROM_FIVE)
_TEMPLATE_FIT = _STABLE_FROM_FIVE @ _TEMPLATE_WEIGHTS, _TEMPLATE_MEAN  # applied to the five points directly


def _boxes(points: np.ndarray, landmarks: np.ndarray | None = None) -> list[dict]:
    """Face and region boxes of `(N, 5)` complex points: the aligned-crop frame and the template's regions, carried by
    the similarity transform that takes the template's eyes, nose and mouth centre onto them. With dense `(N, K, 2)`
    landmarks, each region's box comes from its own points instead (an open mouth gets a taller box), with margins."""
    z, shift = (value[:, None] for value in _similarities(points, _TEMPLATE_FIT))
    # the whole face, even when tilted: the box around the crop's mapped corners (x, y in {0, 1}, mapped to
    # shift + a x - b y and shift + b x + a y), each side the shift plus the negative (or positive) parts
    a, b = z.real, z.imag
    parts = np.concatenate([a, -b, b, a], axis=1)  # (N, 4): x from x, x from y, y from x, y from y
    negative, positive = np.minimum(parts, 0), np.maximum(parts, 0)
    origin = np.concatenate([shift.real, shift.imag], axis=1)
    face = np.concatenate([origin + negative[:, 0::2] + negative[:, 1::2],
                           origin + positive[:, 0::2] + positive[:, 1::2]], axis=1)
    # regions: a box of the scaled size around the mapped centre, which a tilted head does not inflate
    centres, half = z * _TEMPLATE_CENTRES + shift, abs(z) * _TEMPLATE_HALF_SIZES  # (N, R): x + iy, width + i height
    regions = np.stack([centres - half, centres + half], axis=2).view(float)  # (N, R, 4): x0, y0, x1, y1
    masks = None if landmarks is None else _DENSE_MASKS.get(landmarks.shape[1])
    if masks is not None:
        xy = np.ascontiguousarray(landmarks.transpose(0, 2, 1))[:, None]  # (N, 1, 2, K) against (R, 1, K) masks
        low = np.where(masks[:, None], xy, np.inf).min(3)  # (N, R, 2)
        high = np.where(masks[:, None], xy, -np.inf).max(3)
        size = np.maximum(high - low, 1.0)
        regions = np.concatenate([low - _DENSE_MARGIN_ARRAY[:, :2] * size, high + _DENSE_MARGIN_ARRAY[:, 2:] * size],
                                 axis=2)
    names = ("face", *CANONICAL_REGION_BOXES)
    return [dict(zip(names, map(tuple, rows))) for rows in np.concatenate([face[:, None], regions], axis=1).tolist()]


def boxes_from_five_points(points: np.ndarray) -> dict:
    """Face and region boxes from 5 points: the aligned-crop frame and the template's regions, carried by the
    similarity transform that takes the template's eyes, nose and mouth centre onto these."""
    return _boxes(_complex(np.asarray(points, dtype=float))[None])[0]


def boxes_from_landmarks(landmarks: np.ndarray, name: str = "landmarks") -> dict:
    """Face box from the 5 points of any convention; with dense landmarks, region boxes from the region's own
    points (an open mouth gets a taller box), with margins. Degenerate points (eyes less than a pixel apart, as
    when every point sits at one spot) are a `ValueError`."""
    return boxes_from_landmark_batch(np.asarray(landmarks, dtype=float)[None], [name])[0]


def boxes_from_landmark_batch(landmarks: np.ndarray, names: list[str]) -> list[dict]:
    """`boxes_from_landmarks` of `(N, K, 2)` landmarks of one convention, named by `names`, computed together."""
    points = _five_points(_complex(landmarks))
    degenerate = (abs(points[:, 0] - points[:, 1]) < 1.0) | (points.imag.max(1) - points.imag.min(1) < 1.0)
    if degenerate.any():
        index = int(degenerate.argmax())
        spans = [round(float(np.ptp(part)), 2) for part in (points[index].real, points[index].imag)]
        raise ValueError(f"{names[index]} are degenerate: eye centres {_rounded(points[index, 0])} and "
                         f"{_rounded(points[index, 1])}, points spanning {spans} pixels; expected distinct eye, nose "
                         f"and mouth points in pixels of the image (not fractions of it)")
    return _boxes(points, landmarks)


def _rounded(point: complex) -> list[float]:
    return [round(float(point.real), 1), round(float(point.imag), 1)]


def check_landmark_boxes(boxes: dict, width: int, height: int, name: str = "landmarks") -> None:
    """A `ValueError` when boxes from caller's landmarks cannot be this image's face: a face box outside the image,
    or more than `MAX_FACE_SCALE` times its size (landmarks at another scale). Landmarks in [0, 1] units are
    refused earlier, as degenerate."""
    x0, y0, x1, y1 = boxes["face"]
    if max(x1 - x0, y1 - y0) > MAX_FACE_SCALE * max(width, height):
        raise ValueError(f"{name}: the face they describe is {x1 - x0:.0f}x{y1 - y0:.0f} pixels, more than "
                         f"{MAX_FACE_SCALE} times the {width}x{height} image; expected landmarks in pixels of this "
                         f"image")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise ValueError(f"{name}: the face box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) lies outside the "
                         f"{width}x{height} image; expected landmarks in pixels of this image")


def template_boxes(width: int, height: int) -> dict:
    """Boxes of an aligned face crop of `width × height` pixels: the face is the whole crop."""
    boxes = {"face": (0.0, 0.0, float(width), float(height))}
    for region, (x0, y0, x1, y1) in CANONICAL_REGION_BOXES.items():
        boxes[region] = (x0 * width, y0 * height, x1 * width, y1 * height)
    return boxes


def box_iou(a, b) -> float:
    """Intersection over union of two `(x0, y0, x1, y1)` boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


@functools.lru_cache(maxsize=1)
def detector_available() -> bool:
    """True when a face detector and the landmark model can be loaded (`pip install "emotic[faces]"`). Looked
    up once per process: the processor asks for every image."""
    return importlib.util.find_spec("dlib") is not None and _predictor_path() is not None


# The face detectors `FaceLandmarker` can use (`--detector`): MediaPipe's BlazeFace (full-range model) through LiteRT,
# or dlib's HOG detector. BlazeFace finds small, noisy and turned faces HOG misses, at a fraction of its time (see
# docs/benchmarks.md); HOG needs no LiteRT.
FaceDetector = Literal["blazeface", "hog"]
FACE_DETECTORS = get_args(FaceDetector)
_chosen_detector = None  # set by `set_face_detector`; None: `default_face_detector()`


@functools.lru_cache(maxsize=1)
def blazeface_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None and _blazeface_path() is not None


def default_face_detector() -> str:
    """BlazeFace where LiteRT is installed (`emotic[faces]` installs it), else HOG."""
    return "blazeface" if blazeface_available() else "hog"


def set_face_detector(name: str | None) -> None:
    """The detector every `FaceLandmarker.shared()` of this process uses from now on (None: the default); what the
    commands' `--detector` sets. An unknown name, or BlazeFace without LiteRT, is refused."""
    global _chosen_detector
    if name is not None and name not in FACE_DETECTORS:
        raise ValueError(f"--detector {name!r}; allowed: {list(FACE_DETECTORS)}")
    if name == "blazeface" and not blazeface_available():
        raise ImportError("--detector blazeface needs LiteRT: pip install 'emotic[faces]' (ai-edge-litert)")
    _chosen_detector = name


def face_detector() -> str:
    """The detector `FaceLandmarker.shared()` uses now."""
    return _chosen_detector or default_face_detector()


def _blazeface_path() -> str | None:
    """The BlazeFace model shipped in `emotic.processing` (beside this file, or, in a Hub repository's copy of this
    file, in the installed emotic package)."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "face_models", BlazeFace.MODEL)
    if os.path.isfile(here):
        return here
    spec = importlib.util.find_spec("emotic.processing") if importlib.util.find_spec("emotic") else None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "face_models", BlazeFace.MODEL)
    return path if os.path.isfile(path) else None


class BlazeFace:
    """MediaPipe's BlazeFace full-range face detector (`face_detection_full_range_sparse.tflite`, Apache-2.0, as
    MediaPipe 0.10.21 ships it), run by LiteRT (`ai-edge-litert`) with MediaPipe's own pre- and post-processing: the
    image letterboxed to 192x192 in [-1, 1], 2,304 anchors (one per cell of a 48x48 grid), sigmoid scores kept from
    `min_score` (MediaPipe's 0.6), boxes and 6 keypoints decoded from the anchors, and MediaPipe's weighted
    non-maximum suppression (IoU 0.3). An image over 576 pixels on its longer side is also searched in squares of
    its shorter side, half a square apart (a 640x360 frame: four windows in all), so that small faces are seen at
    twice the scale; an image where nothing is found, once more inside a border (a face filling the frame, which a
    model made for faces at a distance misses).

    Call it with `(H, W, 3)` uint8 RGB: `[(box, score, keypoints)]`, best first; boxes `(x0, y0, x1, y1)` and the
    `(6, 2)` keypoints (right eye, left eye, nose tip, mouth centre, right ear, left ear; the person's right) in
    pixels of the image.
    """

    MODEL = "face_detection_full_range_sparse.tflite"
    SIZE = 192

    def __init__(self, min_score: float = 0.6, min_suppression_iou: float = 0.3):
        from ai_edge_litert.interpreter import Interpreter

        path = _blazeface_path()
        if path is None:
            raise ImportError("the BlazeFace model is missing from emotic/processing/face_models; reinstall emotic")
        self.interpreter = Interpreter(model_path=path, num_threads=1)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = {tuple(d["shape"])[-1]: d["index"] for d in self.interpreter.get_output_details()}
        self._boxes, self._scores = outputs[16], outputs[1]
        cells = self.SIZE // 4
        ys, xs = np.mgrid[0:cells, 0:cells]
        self.anchors = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 2)
        self.min_score, self.min_suppression_iou = min_score, min_suppression_iou

    def __call__(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        height, width = rgb.shape[:2]
        windows = [(0, 0, width, height, 0.0)]
        side = min(width, height)
        if max(width, height) > 3 * self.SIZE:  # small faces in a large frame: squares of the short side
            tile = max(self.SIZE, side)

            def steps(length):  # tile origins along a side, half a tile apart
                return np.linspace(0, length - tile, max(1, int(np.ceil((length - tile) / (tile / 2))) + 1))

            windows += [(int(x), int(y), tile, tile, 0.0) for y in steps(height) for x in steps(width)]
        found = [self._window(rgb, *window) for window in windows]
        if not any(len(scores) for _, scores, _ in found):
            # nothing: perhaps one face filling the frame (a face crop, a webcam close-up), which the full-range model,
            # made for faces at a distance, misses; the image shrunk to a third inside a border of its mean colour
            # (FER+'s 48x48 test faces: 16 of 100 found without the border, 82 with it; HOG 74)
            found.append(self._window(rgb, 0, 0, width, height, 1.0))
        boxes = np.concatenate([f[0] for f in found])
        return self._suppress(boxes, np.concatenate([f[1] for f in found]), np.concatenate([f[2] for f in found]))

    def _window(self, rgb, left, top, width, height, border: float):
        """The faces in one window of the image, letterboxed (and, with `border`, inside a border of the window's
        mean colour `border` times its long side wide on each side)."""
        from PIL import Image

        scale = self.SIZE / (max(width, height) * (1 + 2 * border))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        offset = ((self.SIZE - size[0]) // 2, (self.SIZE - size[1]) // 2)
        crop = np.ascontiguousarray(rgb[top:top + height, left:left + width])
        pixels = np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR, reducing_gap=2.0), np.float32)
        canvas = np.zeros((self.SIZE, self.SIZE, 3), np.float32)
        if border:
            canvas[:] = pixels.mean(axis=(0, 1)) / 127.5 - 1
        canvas[offset[1]:offset[1] + size[1], offset[0]:offset[0] + size[0]] = pixels / 127.5 - 1
        self.interpreter.set_tensor(self._input, canvas[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._boxes)[0]
        logits = np.clip(self.interpreter.get_tensor(self._scores)[0, :, 0].astype(np.float64), -100, 100)
        scores = 1 / (1 + np.exp(-logits))
        keep = scores >= self.min_score
        raw, scores, anchors = raw[keep] / self.SIZE, scores[keep], self.anchors[keep]
        centres = raw[:, :2] + anchors
        boxes = np.concatenate([centres - raw[:, 2:4] / 2, centres + raw[:, 2:4] / 2], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]
        shift, unit = np.array([left, top]) - np.array(offset) / scale, self.SIZE / scale
        return boxes * unit + np.tile(shift, 2), scores, keypoints * unit + shift

    def _suppress(self, boxes, scores, keypoints):
        """MediaPipe's weighted NMS: each kept face is the score-weighted mean of the boxes that overlap it."""
        order, kept = list(np.argsort(-scores)), []
        while order:
            best = order[0]
            overlaps = [i for i in order if box_iou(boxes[best], boxes[i]) > self.min_suppression_iou]
            weights = scores[overlaps][:, None]
            kept.append(((boxes[overlaps] * weights).sum(0) / weights.sum(), float(scores[best]),
                         (keypoints[overlaps] * weights[:, :, None]).sum(0) / weights.sum()))
            order = [i for i in order if i not in overlaps]
        return kept


def _predictor_path():
    return face_model_path("shape_predictor_68_face_landmarks.dat")


def face_model_path(name: str) -> str | None:
    """The path of one of face_recognition_models' files (`shape_predictor_68_face_landmarks.dat`,
    `dlib_face_recognition_resnet_model_v1.dat`), or None when the package or the file is missing."""
    # face_recognition_models' __init__ imports pkg_resources, gone from recent setuptools: find its data directly.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    return path if os.path.isfile(path) else None


class FaceLandmarker:
    """A face detector (`detector`: BlazeFace or dlib's HOG, see `FACE_DETECTORS`) + dlib's 68-point shape predictor.
    The largest face wins.

    HOG runs on a copy resized to at most `detect_max_side` pixels (and upsampled once when the image is small), so
    large photos stay fast; BlazeFace on its own 192-pixel input (and tiles of a large image). Landmarks are then
    fitted at full resolution, in a box the size of HOG's (BlazeFace's box, which reaches the hairline, is scaled
    by `BLAZEFACE_TO_HOG`); a face under `UPSCALE_BELOW` pixels is upscaled first, so that the predictor sees a
    48-pixel FER crop at the size it was trained on.
    """

    _shared = {}
    _lock = threading.Lock()
    BLAZEFACE_TO_HOG = 0.9  # HOG's box over BlazeFace's, measured on the astronaut and Grace Hopper: 0.86 and 0.95
    UPSCALE_BELOW = 80

    def __init__(self, detect_max_side: int = 640, detector: str | None = None):
        detector = detector or default_face_detector()
        if detector not in FACE_DETECTORS:
            raise ValueError(f"detector={detector!r}; allowed: {list(FACE_DETECTORS)}")
        try:
            import dlib
        except ImportError as error:  # the optional extra is missing
            raise ImportError(
                "face detection needs dlib and its 68-point model: pip install 'emotic[faces]' "
                "(dlib-bin and face_recognition_models)"
            ) from error
        path = _predictor_path()
        if path is None:
            raise ImportError("face detection needs face_recognition_models (the 68-point landmark model): "
                              "pip install 'emotic[faces]'")
        self._dlib = dlib
        self.detector_name = detector
        self.detector = dlib.get_frontal_face_detector() if detector == "hog" else BlazeFace()
        # below this score a face may be partly hidden or no face (BlazeFace: 0.6 to 0.7 on half faces, above 0.8 on
        # most whole ones): the tracker lets such a detection continue a track but not start one at once
        # (`FaceTracker`). HOG's margins say no such thing.
        self.confident_score = 0.7 if detector == "blazeface" else None
        self.predictor = dlib.shape_predictor(path)
        self.detect_max_side = detect_max_side
        self._calls = threading.Lock()  # one detection at a time: dlib's objects are not documented thread-safe

    @classmethod
    def shared(cls, detector: str | None = None) -> "FaceLandmarker":
        """One instance per detector and process (loading the 100 MB landmark model takes about a second); without
        `detector`, the process's choice (`set_face_detector`, the commands' `--detector`), else the default."""
        detector = detector or face_detector()
        with cls._lock:
            if detector not in cls._shared:
                cls._shared[detector] = cls(detector=detector)
            return cls._shared[detector]

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """`(H, W, 3)` uint8 RGB → `(68, 2)` landmarks of the largest face, or None when no face is found."""
        faces = self.all_faces(rgb, limit=1)
        return faces[0] if faces else None

    def all_faces(self, rgb: np.ndarray, limit: int | None = None) -> list[np.ndarray]:
        """`(68, 2)` landmarks of every face found (at most `limit`), largest first."""
        return [landmarks for landmarks, _, _ in self.detect(rgb, limit)[0]]

    def detect(self, rgb: np.ndarray, limit: int | None = None) -> tuple[list[tuple], int]:
        """Every face found, largest first, as `((68, 2) landmarks, detector score, detector box)` (at most `limit`
        of them; boxes `(x0, y0, x1, y1)` in pixels of `rgb`), and how many faces were found in all (more than
        `limit` when some were left out)."""
        full = np.ascontiguousarray(rgb)
        with self._calls:
            candidates = self._blazeface_boxes(full) if self.detector_name == "blazeface" else self._hog_boxes(full)
            ranked = sorted(candidates, key=lambda candidate: candidate[0], reverse=True)  # largest first
            found = [(self._shape(full, self._dlib.rectangle(*rect)), score, rect) for _, rect, score in ranked[:limit]]
        return found, len(ranked)

    def _blazeface_boxes(self, full: np.ndarray) -> list[tuple]:
        """`(area, (x0, y0, x1, y1), score)` per face: BlazeFace's box, as the square around its centre that dlib's
        landmark model was trained on (HOG's boxes are about `BLAZEFACE_TO_HOG` of BlazeFace's larger side)."""
        candidates = []
        for box, score, _ in self.detector(full):
            centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]).max() / 2 * self.BLAZEFACE_TO_HOG
            rect = tuple(int(round(v)) for v in (*(centre - half), *(centre + half)))
            candidates.append(((box[2] - box[0]) * (box[3] - box[1]), rect, score))
        return candidates

    def _hog_boxes(self, full: np.ndarray) -> list[tuple]:
        """`(area, (x0, y0, x1, y1), score)` per face: dlib's HOG detector on the frame at most `detect_max_side`
        pixels a side, its boxes scaled back to `full`."""
        height, width = full.shape[:2]
        factor = min(1.0, self.detect_max_side / max(height, width))
        small = full
        if factor < 1.0:  # a real resize by the exact factor: integer subsampling could halve an 800-px photo
            from PIL import Image

            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            small = np.asarray(Image.fromarray(full).resize(size, Image.BILINEAR, reducing_gap=2.0))
            factor = size[0] / width
        upsample = 1 if max(small.shape[:2]) < 400 else 0  # the HOG detector's smallest face is about 80 px
        small = np.ascontiguousarray(small)
        faces, scores, _ = self.detector.run(small, upsample)
        if len(faces) == 0 and upsample == 0:  # a small face in a large photo: look once more at twice the size
            faces, scores, _ = self.detector.run(small, 1)
        return [(face.width() * face.height(),
                 (int(face.left() / factor), int(face.top() / factor), int(face.right() / factor),
                  int(face.bottom() / factor)), float(score)) for face, score in zip(faces, scores)]

    def follow(self, rgb: np.ndarray, box) -> np.ndarray:
        """`(68, 2)` landmarks fitted inside `box` `(x0, y0, x1, y1)` (a face's box in the previous frame, moved to
        where it is expected): following a face between detections, at the cost of the landmark model only."""
        rect = self._dlib.rectangle(*(int(round(value)) for value in box))
        with self._calls:
            return self._shape(np.ascontiguousarray(rgb), rect)

    def _shape(self, full: np.ndarray, rect) -> np.ndarray:
        size = max(rect.width(), rect.height())
        if size >= self.UPSCALE_BELOW:
            return np.array([(p.x, p.y) for p in self.predictor(full, rect).parts()], dtype=np.float64)
        # a small face: its surroundings (half a face each side) upscaled so the face is UPSCALE_BELOW pixels
        from PIL import Image

        margin, scale = size // 2 + 1, self.UPSCALE_BELOW / max(size, 1)
        left, top = max(0, rect.left() - margin), max(0, rect.top() - margin)
        right, bottom = min(full.shape[1], rect.right() + margin), min(full.shape[0], rect.bottom() + margin)
        crop = Image.fromarray(full[top:bottom, left:right])
        big = np.ascontiguousarray(np.asarray(crop.resize((max(1, round(crop.width * scale)),
                                                           max(1, round(crop.height * scale))), Image.BICUBIC)))
        moved = self._dlib.rectangle(*(int(round(v)) for v in ((rect.left() - left) * scale, (rect.top() - top) * scale,
                                                                (rect.right() - left) * scale,
                                                                (rect.bottom() - top) * scale)))
        points = np.array([(p.x, p.y) for p in self.predictor(big, moved).parts()], dtype=np.float64)
        return points / scale + [left, top]
