"""Face geometry for the auxiliary view: where the face, eyes, mouth and nose are in an image.

Three sources, in the order the image processor tries them:
1. landmarks from the caller, in one of the conventions of `LANDMARK_CONVENTIONS` (5, 68, 468 or 478 points);
2. a face detector and 68-point landmark model (dlib's HOG detector and shape predictor, whose weights ship in the
   `dlib-bin` and `face_recognition_models` packages: nothing is downloaded at run time);
3. the canonical template of an aligned face crop (`CANONICAL_FIVE_POINTS`), for Aff-Wild2 `cropped_aligned`
   frames and other crops aligned the same way.

Boxes are `(x0, y0, x1, y1)` in pixels of the input image. This file is copied into Hub repositories next to the
image processor, so it imports only numpy at the top level; the detector is imported on first use.
"""

import functools
import importlib.util
import math
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
_DENSE_REGIONS = {count: {region: np.array(indices) for region, indices in regions.items()}
                  for count, regions in _DENSE_REGIONS.items()}  # index arrays: indexing with lists converts each time
# Five points from a dense convention: (eye indices, other eye indices, nose tip, mouth corner, mouth corner).
_FIVE_FROM_DENSE = {
    68: (np.arange(36, 42), np.arange(42, 48), 30, 48, 54),
    468: (np.array([33, 133, 159, 145]), np.array([263, 362, 386, 374]), 4, 61, 291),
}
_FIVE_FROM_DENSE[478] = _FIVE_FROM_DENSE[468]
# Margins around a dense region's points, as fractions of its box (left, top, right, bottom).
_DENSE_MARGINS = {"eyes": (0.05, 0.10, 0.05, 0.25), "nose": (0.20, 0.0, 0.20, 0.10), "mouth": (0.10, 0.20, 0.10, 0.20)}


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
    if len(landmarks) == 5:
        points = landmarks.copy()
    else:
        eye_a, eye_b, nose, mouth_a, mouth_b = _FIVE_FROM_DENSE[len(landmarks)]
        points = np.stack([landmarks[eye_a].mean(0), landmarks[eye_b].mean(0), landmarks[nose],
                           landmarks[mouth_a], landmarks[mouth_b]])
    if points[0, 0] > points[1, 0]:  # order left/right as they appear in the image
        points[[0, 1]] = points[[1, 0]]
    if points[3, 0] > points[4, 0]:
        points[[3, 4]] = points[[4, 3]]
    return points


def _similarity(source, target) -> tuple[float, float, float, float]:
    """`(a, b, tx, ty)` of the least-squares similarity taking `source` points onto `target`: a point `(x, y)` maps
    to `(a x - b y + tx, b x + a y + ty)` (scale `hypot(a, b)`, angle `atan2(b, a)`). For 2-D points Umeyama's
    solution without reflection is complex least squares, `z = sum(t conj(s)) / sum(|s|^2)` on centred points,
    computed here on plain floats (the processor asks for every image)."""
    source, target = [complex(x, y) for x, y in source], [complex(x, y) for x, y in target]
    source_mean, target_mean = sum(source) / len(source), sum(target) / len(target)
    centred = [point - source_mean for point in source]
    spread = sum(abs(c) ** 2 for c in centred)
    if spread == 0:
        raise ValueError("similarity: the source points all lie at one place; expected points spread over a face")
    z = sum((t - target_mean) * c.conjugate() for t, c in zip(target, centred)) / spread
    shift = target_mean - z * source_mean
    return z.real, z.imag, shift.real, shift.imag


def similarity_transform(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares scale, rotation matrix and translation taking `source` points onto `target` (Umeyama)."""
    a, b, tx, ty = _similarity(np.asarray(source, dtype=float).tolist(), np.asarray(target, dtype=float).tolist())
    scale = float(np.hypot(a, b))
    rotation = np.array([[a, -b], [b, a]]) / scale if scale > 0 else np.eye(2)  # all targets at one place: scale 0
    return scale, rotation, np.array([tx, ty])


def _map_box(box, transform, keep_size=False):
    """Carry a box through the transform: the bounding box of its mapped corners, or (`keep_size`) a box of the
    scaled size around its mapped centre, which a tilted head does not inflate."""
    a, b, tx, ty = transform
    x0, y0, x1, y1 = box
    if keep_size:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        centre_x, centre_y = a * cx - b * cy + tx, b * cx + a * cy + ty
        scale = (a * a + b * b) ** 0.5
        half_x, half_y = scale * (x1 - x0) / 2, scale * (y1 - y0) / 2
        return centre_x - half_x, centre_y - half_y, centre_x + half_x, centre_y + half_y
    xs = [a * x - b * y + tx for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    ys = [b * x + a * y + ty for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    return min(xs), min(ys), max(xs), max(ys)


def _stable_points(points) -> list:
    # eyes, nose tip and the mouth's centre: mouth corners move with the expression (a smile widens the mouth),
    # which would stretch the fitted face; their midpoint moves much less
    (x0, y0), (x1, y1), nose, (x3, y3), (x4, y4) = np.asarray(points, dtype=float).tolist()
    return [(x0, y0), (x1, y1), tuple(nose), ((x3 + x4) / 2, (y3 + y4) / 2)]


_TEMPLATE_STABLE_POINTS = _stable_points(CANONICAL_FIVE_POINTS)


def boxes_from_five_points(points: np.ndarray) -> dict:
    """Face and region boxes from 5 points: the aligned-crop frame and the template's regions, carried by the
    similarity transform that takes the template's eyes, nose and mouth centre onto these."""
    transform = _similarity(_TEMPLATE_STABLE_POINTS, _stable_points(points))
    boxes = {"face": _map_box((0.0, 0.0, 1.0, 1.0), transform)}  # the whole face, even when tilted
    for region, box in CANONICAL_REGION_BOXES.items():
        boxes[region] = _map_box(box, transform, keep_size=True)
    return boxes


def boxes_from_landmarks(landmarks: np.ndarray, name: str = "landmarks") -> dict:
    """Face box from the 5 points of any convention; with dense landmarks, region boxes from the region's own
    points (an open mouth gets a taller box), with margins. Degenerate points (eyes less than a pixel apart, as
    when every point sits at one spot) are a `ValueError`."""
    points = five_points(landmarks)
    ys = points[:, 1].tolist()
    if math.dist(points[0].tolist(), points[1].tolist()) < 1.0 or max(ys) - min(ys) < 1.0:
        raise ValueError(f"{name} are degenerate: eye centres {points[0].round(1).tolist()} and "
                         f"{points[1].round(1).tolist()}, points spanning {np.ptp(points, 0).round(2).tolist()} "
                         f"pixels; expected distinct eye, nose and mouth points in pixels of the image (not "
                         f"fractions of it)")
    boxes = boxes_from_five_points(points)
    regions = _DENSE_REGIONS.get(len(landmarks))
    if regions:
        for region, indices in regions.items():
            region_points = landmarks[indices]
            (x0, y0), (x1, y1) = region_points.min(0).tolist(), region_points.max(0).tolist()
            left, top, right, bottom = _DENSE_MARGINS[region]
            width, height = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
            boxes[region] = (x0 - left * width, y0 - top * height, x1 + right * width, y1 + bottom * height)
    return boxes


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
    """True when the face detector and the landmark model can be loaded (`pip install "emotic[faces]"`). Looked
    up once per process: the processor asks for every image."""
    return importlib.util.find_spec("dlib") is not None and _predictor_path() is not None


def _predictor_path():
    # face_recognition_models' __init__ imports pkg_resources, gone from recent setuptools: find its data directly.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "shape_predictor_68_face_landmarks.dat")
    return path if os.path.isfile(path) else None


class FaceLandmarker:
    """dlib's HOG face detector + 68-point shape predictor. The largest face wins.

    The detector runs on a copy resized to at most `detect_max_side` pixels (and upsampled once when the image is
    small), so large photos stay fast; landmarks are then fitted at full resolution.
    """

    _shared = None
    _lock = threading.Lock()

    def __init__(self, detect_max_side: int = 640):
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
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(path)
        self.detect_max_side = detect_max_side
        self._calls = threading.Lock()  # one detection at a time: dlib's objects are not documented thread-safe

    @classmethod
    def shared(cls) -> "FaceLandmarker":
        """One instance per process: loading the 100 MB model takes about a second."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """`(H, W, 3)` uint8 RGB → `(68, 2)` landmarks of the largest face, or None when no face is found."""
        faces = self.all_faces(rgb, limit=1)
        return faces[0] if faces else None

    def all_faces(self, rgb: np.ndarray, limit: int | None = None) -> list[np.ndarray]:
        """`(68, 2)` landmarks of every face found (at most `limit`), largest first."""
        height, width = rgb.shape[:2]
        factor = min(1.0, self.detect_max_side / max(height, width))
        small = rgb
        if factor < 1.0:  # a real resize by the exact factor: integer subsampling could halve an 800-px photo
            from PIL import Image

            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR, reducing_gap=2.0))
            factor = size[0] / width
        upsample = 1 if max(small.shape[:2]) < 400 else 0  # the HOG detector's smallest face is about 80 px
        small = np.ascontiguousarray(small)
        full = np.ascontiguousarray(rgb)
        found = []
        with self._calls:
            faces = self.detector(small, upsample)
            if len(faces) == 0 and upsample == 0:  # a small face in a large photo: look once more at twice the size
                faces = self.detector(small, 1)
            for face in sorted(faces, key=lambda r: r.width() * r.height(), reverse=True)[:limit]:
                rect = self._dlib.rectangle(int(face.left() / factor), int(face.top() / factor),
                                            int(face.right() / factor), int(face.bottom() / factor))
                shape = self.predictor(full, rect)
                found.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64))
        return found
