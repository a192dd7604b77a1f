"""The training transform: image paths to both views through the image processor, with seeded augmentation."""

import zlib
from collections import Counter

import numpy as np
from transformers.utils import logging

from emotic.processing.image_files import open_image

logger = logging.get_logger(__name__)


def _random_box(rng: np.random.Generator, width: int, height: int, areas: tuple, aspects: tuple) -> tuple:
    """`(left, top, w, h)` of a box inside a `width x height` image covering a fraction of its area drawn from
    `areas`, its aspect ratio drawn log-uniformly from `aspects` (torchvision's RandomResizedCrop and
    RandomErasing draw the same way), its sides clipped to the image."""
    area = width * height * rng.uniform(*areas)
    aspect = float(np.exp(rng.uniform(np.log(aspects[0]), np.log(aspects[1]))))
    w = int(min(width, max(1, round(np.sqrt(area * aspect)))))
    h = int(min(height, max(1, round(np.sqrt(area / aspect)))))
    return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h


class ViewTransform:
    """`dataset.set_transform(ViewTransform(processor))`: decodes a batch of image paths into both views.

    Training augmentation (`crop_scale`, `rotation`, `hflip`, `color_jitter`, `erasing`: the usual recipe for
    unaligned expression crops such as FER2013's, each off by default) draws from a generator seeded by (seed,
    epoch, row), not from a running random state, so a run resumed mid-epoch (whose skipped batches are never
    loaded) augments exactly as an uninterrupted run does, and the same data copied elsewhere is augmented alike
    (every reader gives the row as `index`; a dataset without it is keyed by the image's path).
    `trainer.EpochCallback` keeps `epoch` current during training.

    An image that cannot be decoded does not stop a run: it is skipped and counted (`unreadable`: path -> reason,
    reported by `EpochCallback` and the run summary). Its slot in the batch holds a blank image whose label is -1
    (NaN values for valence-arousal and action units), which the loss and the metrics ignore.
    """

    def __init__(self, processor, hflip: bool = False, main_view_only: bool = False, seed: int = 0,
                 color_jitter: float = 0.0, geometry: str | None = None, crop_scale: float = 1.0,
                 rotation: float = 0.0, erasing: float = 0.0):
        for name, value, low, high in (("crop_scale", crop_scale, 0.0, 1.0), ("rotation", rotation, 0.0, 180.0),
                                       ("erasing", erasing, 0.0, 1.0), ("color_jitter", color_jitter, 0.0, 1.0)):
            if not low <= value <= high or (name == "crop_scale" and value == 0):
                raise ValueError(f"--{name} {value}: expected a number in {'(' if name == 'crop_scale' else '['}"
                                 f"{low:g}, {high:g}]")
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
        from PIL import Image, ImageEnhance, ImageOps

        rng = self._random(key)
        width, height = image.size
        if self.crop_scale < 1:
            left, top, w, h = _random_box(rng, width, height, (self.crop_scale, 1.0), (3 / 4, 4 / 3))
            image = image.resize((width, height), Image.BILINEAR, box=(left, top, left + w, top + h))
        if self.rotation:
            pixels = np.asarray(image)
            edge = np.concatenate([pixels[[0, -1]].reshape(-1, 3), pixels[:, [0, -1]].reshape(-1, 3)])
            image = image.rotate(rng.uniform(-self.rotation, self.rotation), Image.BILINEAR,
                                 fillcolor=tuple(int(v) for v in edge.mean(0)))
        if self.hflip and rng.random() < 0.5:
            image = ImageOps.mirror(image)
        if self.color_jitter > 0:
            for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                image = enhancer(image).enhance(1.0 + rng.uniform(-self.color_jitter, self.color_jitter))
        if self.erasing and rng.random() < self.erasing:
            left, top, w, h = _random_box(rng, width, height, (0.02, 0.25), (0.3, 3.3))
            pixels = np.array(image)
            pixels[top:top + h, left:left + w] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
        return image

    def __call__(self, batch: dict) -> dict:
        import torch

        images, readable = [], []
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
            images.append(self.augment(image, key) if self.augments else image)
            readable.append(True)
        size = self.processor.size
        blank = torch.zeros(len(readable), 3, size["height"], size["width"])  # the mean colour once normalised
        out = {"pixel_values": blank}
        if not self.main_view_only:
            out["pixel_values_aux"] = blank.clone()
        if images:
            views = self.processor(images, return_tensors="pt", geometry=self.geometry, return_regions=True)
            self.geometries.update(region["geometry"] for region in views["regions"])
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
