"""The training transform: image paths to both views through the image processor, with seeded augmentation."""

import zlib
from collections import Counter

import numpy as np
from transformers.utils import logging

from emotic.commands import check_number
from emotic.processing.image_files import open_image

logger = logging.get_logger(__name__)

# The 68-point convention mirrored: each point's partner on the other side of the face (jaw, brows, eyes, nostrils and
# mouth run the other way; the nose's ridge stays), so a mirrored face's landmarks keep their meaning.
MIRROR_68 = np.array([*range(16, -1, -1), *range(26, 16, -1), *range(27, 31), *range(35, 30, -1),
                      45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, *range(54, 47, -1), *range(59, 54, -1),
                      *range(64, 59, -1), *range(67, 64, -1)])


def _random_box(rng: np.random.Generator, width: int, height: int, areas: tuple, aspects: tuple) -> tuple:
    """`(left, top, w, h)` of a box inside a `width x height` image covering a fraction of its area drawn from
    `areas`, its aspect ratio drawn log-uniformly from `aspects` (torchvision's RandomResizedCrop and
    RandomErasing draw the same way), its sides clipped to the image."""
    area = width * height * rng.uniform(*areas)
    aspect = float(np.exp(rng.uniform(np.log(aspects[0]), np.log(aspects[1]))))
    w = int(min(width, max(1, round(np.sqrt(area * aspect)))))
    h = int(min(height, max(1, round(np.sqrt(area / aspect)))))
    return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h


def _lands(landmarks: np.ndarray, width: int, height: int) -> bool:
    """Whether moved landmarks still describe a face in the image (a crop can leave a small face outside it)."""
    from emotic.processing.face_geometry import boxes_from_landmarks, check_landmark_boxes

    try:
        check_landmark_boxes(boxes_from_landmarks(landmarks), width, height)
    except ValueError:
        return False
    return True


class ViewTransform:
    """`dataset.set_transform(ViewTransform(processor))`: decodes a batch of image paths into both views.

    Training augmentation (`crop_scale`, `rotation`, `hflip`, `color_jitter`, `erasing`: the usual recipe for
    unaligned expression crops such as FER2013's, each off by default) draws from a generator seeded by (seed,
    epoch, row), not from a running random state, so a run resumed mid-epoch (whose skipped batches are never
    loaded) augments exactly as an uninterrupted run does, and the same data copied elsewhere is augmented alike
    (every reader gives the row as `index`; a dataset without it is keyed by the image's path).
    `trainer.EpochCallback` keeps `epoch` current during training.

    With `geometry` `detector` or `auto` (unaligned faces, such as FER's), each image's face is found once, on the
    image as read, and its landmarks are kept (`found`, by row) and moved with every crop, rotation and mirror:
    the auxiliary view lands on the eyes, nose and mouth epoch after epoch at the cost of one detection per image,
    not one per image and epoch. An image whose face is not found is taken whole (`full_image`), as the processor
    does. (With `dataloader_num_workers` > 0 each worker keeps its own.)

    An image that cannot be decoded does not stop a run: it is skipped and counted (`unreadable`: path -> reason,
    reported by `EpochCallback` and the run summary). Its slot in the batch holds a blank image whose label is -1
    (NaN values for valence-arousal and action units), which the loss and the metrics ignore.
    """

    def __init__(self, processor, hflip: bool = False, main_view_only: bool = False, seed: int = 0,
                 color_jitter: float = 0.0, geometry: str | None = None, crop_scale: float = 1.0,
                 rotation: float = 0.0, erasing: float = 0.0):
        check_number("--crop_scale", crop_scale, 0, 1, low_open=True)
        for name, value, high in (("--rotation", rotation, 180), ("--erasing", erasing, 1),
                                  ("--color_jitter", color_jitter, 1)):
            check_number(name, value, 0, high)
        self.processor = processor
        self.geometry = geometry  # e.g. "template" for aligned training frames; the saved processor keeps its own
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.crop_scale = crop_scale  # random resized crops keep this fraction of the area or more (1.0: none)
        self.rotation = rotation  # random rotation by up to this many degrees either way
        self.erasing = erasing  # probability of erasing a random rectangle (2-25% of the image) with noise
        self.main_view_only = main_view_only
        self.seed = seed
        self.epoch = 0
        self.unreadable = {}  # path -> why it could not be decoded
        # views built per geometry the processor used (`template`, `detector`, `full_image` where the detector found
        # no face, `landmarks`), over the run: what the auxiliary view was built from, kept in emotic_run.json
        self.geometries = Counter()
        self.found = {}  # row (or path) -> the (68, 2) landmarks of its face as read, or None: none found

    @property
    def detects(self) -> bool:
        """Whether faces are found by the detector (`detector`, or `auto` with one installed)."""
        from emotic.processing.face_geometry import FaceLandmarker, detector_available

        geometry = self.geometry or self.processor.geometry
        if geometry == "detector" and not detector_available():
            FaceLandmarker.shared()  # raises the ImportError that names what to install
        return geometry == "detector" or (geometry == "auto" and detector_available())

    def _landmarks(self, image, key):
        from emotic.processing.face_geometry import FaceLandmarker

        if key not in self.found:
            points = FaceLandmarker.shared()(np.asarray(image))
            # landmarks collapsed onto a speck are no usable face, as the processor decides
            self.found[key] = points.astype(np.float32) if points is not None and _lands(points, *image.size) else None
        return self.found[key]

    def _random(self, key: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(f"{self.seed}:{self.epoch}:{key}".encode()))

    @property
    def augments(self) -> bool:
        return bool(self.hflip or self.color_jitter or self.crop_scale < 1 or self.rotation or self.erasing)

    def augment(self, image, key: str):
        """In this order, each drawn from (seed, epoch, `key`: the sample's row index, or its path): a random resized
        crop (area from `crop_scale` to 1, aspect ratio 3/4 to 4/3, as torchvision's), a rotation by up to
        ±`rotation` degrees (the corners filled by the edge's mean colour), a mirror with probability 0.5, brightness,
        contrast and saturation jitter by up to ±`color_jitter`, and with probability `erasing` a rectangle of 2-25%
        of the image replaced by noise (random erasing). The image keeps its size: the processor resizes it after."""
        return self.augment_with_landmarks(image, key)[0]

    def augment_with_landmarks(self, image, key: str, landmarks: np.ndarray | None = None):
        """`augment`, and `landmarks` (`(68, 2)` pixel positions in `image`, or None) moved with the image: where the
        same points lie in the augmented image (mirrored faces' points swap sides, `MIRROR_68`)."""
        from PIL import Image, ImageEnhance, ImageOps

        rng = self._random(key)
        width, height = image.size
        points = None if landmarks is None else np.array(landmarks, dtype=np.float64) + 0.5  # pixel centres
        if self.crop_scale < 1:
            left, top, w, h = _random_box(rng, width, height, (self.crop_scale, 1.0), (3 / 4, 4 / 3))
            image = image.resize((width, height), Image.BILINEAR, box=(left, top, left + w, top + h))
            if points is not None:
                points = (points - [left, top]) * [width / w, height / h]
        if self.rotation:
            pixels = np.asarray(image)
            edge = np.concatenate([pixels[[0, -1]].reshape(-1, 3), pixels[:, [0, -1]].reshape(-1, 3)])
            angle = rng.uniform(-self.rotation, self.rotation)
            image = image.rotate(angle, Image.BILINEAR, fillcolor=tuple(int(v) for v in edge.mean(0)))
            if points is not None:  # counter-clockwise on screen (y points down) about the image's centre
                cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
                dx, dy = (points - [width / 2, height / 2]).T
                points = np.stack([width / 2 + dx * cos + dy * sin, height / 2 - dx * sin + dy * cos], axis=1)
        if self.hflip and rng.random() < 0.5:
            image = ImageOps.mirror(image)
            if points is not None:
                points = np.stack([width - points[:, 0], points[:, 1]], axis=1)
                points = points[MIRROR_68]  # the detector gives 68 points
        if self.color_jitter > 0:
            for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                image = enhancer(image).enhance(1.0 + rng.uniform(-self.color_jitter, self.color_jitter))
        if self.erasing and rng.random() < self.erasing:
            left, top, w, h = _random_box(rng, width, height, (0.02, 0.25), (0.3, 3.3))
            pixels = np.array(image)
            pixels[top:top + h, left:left + w] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
        return image, None if points is None else points - 0.5

    def __call__(self, batch: dict) -> dict:
        import torch

        images, landmarks, readable = [], [], []
        detects = self.detects
        for row, item in enumerate(batch["image"]):
            # a path (folder readers), or a `datasets` image left undecoded ({"bytes", "path"}) by `read_dataset`
            name = item if isinstance(item, str) else (item or {}).get("path") or f"row {batch['index'][row]}"
            try:
                image = self.processor.to_rgb(open_image(item), name)  # decoded and checked like any input
            except (ValueError, OSError) as error:
                if name not in self.unreadable:
                    logger.warning(f"skipping an image that cannot be used for training: {error}")
                self.unreadable[name] = str(error)
                readable.append(False)
                continue
            key = batch["index"][row] if "index" in batch else name  # the row seeds augmentation where there is one
            points = self._landmarks(image, key) if detects else None
            if self.augments:
                image, points = self.augment_with_landmarks(image, key, points)
                points = points if points is None or _lands(points, *image.size) else None
            images.append(image)
            landmarks.append(points)
            readable.append(True)
        size = self.processor.size
        blank = torch.zeros(len(readable), 3, size["height"], size["width"])  # the mean colour once normalised
        out = {"pixel_values": blank}
        if not self.main_view_only:
            out["pixel_values_aux"] = blank.clone()
        if images and detects:  # the faces found once, moved with the image; the rest taken whole
            views = self.processor(images, landmarks=landmarks, return_tensors="pt", geometry="template")
            self.geometries.update("full_image" if points is None else "detector" for points in landmarks)
        elif images:
            views = self.processor(images, return_tensors="pt", geometry=self.geometry, return_regions=True)
            self.geometries.update(region["geometry"] for region in views["regions"])
        if images:
            for key in out:
                out[key][torch.tensor(readable)] = views[key]
        if "label" in batch:
            labels = batch["label"]
            if labels and isinstance(labels[0], (list, tuple)):  # values per frame (VA, AUs): NaN is ignored
                out["labels"] = torch.tensor([label if ok else [float("nan")] * len(label)
                                              for label, ok in zip(labels, readable)], dtype=torch.float32)
            else:
                out["labels"] = torch.tensor([label if ok else -1 for label, ok in zip(labels, readable)],
                                             dtype=torch.long)  # -1: ignored
        return out
