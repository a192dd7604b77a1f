"""The training transform: image paths to both views through the image processor, with seeded augmentation."""

import zlib

import numpy as np
from transformers.utils import logging

from emotic.processing.image_files import open_image

logger = logging.get_logger(__name__)


class ViewTransform:
    """`dataset.set_transform(ViewTransform(processor))`: decodes a batch of image paths into both views.

    Training augmentation (`hflip`, `color_jitter`) draws from a generator seeded by (seed, epoch, row), not from
    a running random state, so a run resumed mid-epoch (whose skipped batches are never loaded) augments exactly
    as an uninterrupted run does, and the same data copied elsewhere is augmented alike (every reader gives the
    row as `index`; a dataset without it is keyed by the image's path). `trainer.EpochCallback` keeps `epoch`
    current during training.

    An image that cannot be decoded does not stop a run: it is skipped and counted (`unreadable`: path -> reason,
    reported by `EpochCallback` and the run summary). Its slot in the batch holds a blank image whose label is -1
    (NaN values for valence-arousal and action units), which the loss and the metrics ignore.
    """

    def __init__(self, processor, hflip: bool = False, main_view_only: bool = False, seed: int = 0,
                 color_jitter: float = 0.0, geometry: str | None = None):
        self.processor = processor
        self.geometry = geometry  # e.g. "template" for aligned training frames; the saved processor keeps its own
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.main_view_only = main_view_only
        self.seed = seed
        self.epoch = 0
        self.unreadable = {}  # path -> why it could not be decoded

    def _random(self, key: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(f"{self.seed}:{self.epoch}:{key}".encode()))

    def augment(self, image, key: str):
        """Mirror with probability 0.5 and jitter brightness, contrast and saturation by up to ±`color_jitter`, drawn
        from (seed, epoch, `key`): the sample's row index, or its path."""
        from PIL import ImageEnhance, ImageOps

        rng = self._random(key)
        if self.hflip and rng.random() < 0.5:
            image = ImageOps.mirror(image)
        if self.color_jitter > 0:
            for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                image = enhancer(image).enhance(1.0 + rng.uniform(-self.color_jitter, self.color_jitter))
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
            images.append(self.augment(image, key) if self.hflip or self.color_jitter else image)
            readable.append(True)
        size = self.processor.size
        blank = torch.zeros(len(readable), 3, size["height"], size["width"])  # the mean colour once normalised
        out = {"pixel_values": blank}
        if not self.main_view_only:
            out["pixel_values_aux"] = blank.clone()
        if images:
            views = self.processor(images, return_tensors="pt", geometry=self.geometry)
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
