"""EmoticImageProcessor: turns a face image, or an ordinary photo with a face in it, into the two views the model
fuses: the main view (the face) and the auxiliary view (its eyes, mouth and, optionally, nose), built without
training. This file and its sibling `face_geometry.py` are copied into Hub repositories for `trust_remote_code`,
so they import only numpy, PIL, torch, transformers and each other; torchvision is not needed.
"""

import math
import os
import warnings
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ImagesKwargs
from transformers.utils import logging

from .face_geometry import (
    REGIONS,
    Region,
    FaceLandmarker,
    boxes_from_landmark_batch,
    boxes_from_landmarks,
    check_landmark_boxes,
    detector_available,
    template_boxes,
    validate_landmarks,
)

logger = logging.get_logger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# The closed choices of the processor; the command-line arguments reuse them (`get_args` lists them).
AuxLayout = Literal["concat", "updown", "mean", "mask"]
Geometry = Literal["auto", "detector", "template"]
OnNoFace = Literal["full_image", "error"]
Resampling = Literal["nearest", "bilinear", "bicubic"]  # antialiased when downscaling (bilinear, bicubic)
AUX_LAYOUTS, GEOMETRIES, NO_FACE_BEHAVIOURS, RESAMPLING = map(get_args, (AuxLayout, Geometry, OnNoFace, Resampling))
PIL_RESAMPLING = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # transformers' PILImageResampling values
_GROUPED_PIXELS = 256 * 256  # images up to this size that share their boxes are resized as one batch


class EmoticImageProcessorKwargs(ImagesKwargs, total=False):
    """emotic's options beside transformers' standard image-processor keywords (`ImagesKwargs`)."""

    aux_regions: list[Region] | None
    aux_layout: AuxLayout | None
    geometry: Geometry | None
    on_no_face: OnNoFace | None
    max_image_pixels: int | None
    min_image_size: int | None


class EmoticImageProcessor(BaseImageProcessor):
    r"""
    Builds `pixel_values` (the face) and `pixel_values_aux` (its key regions), both `(B, 3, H, W)`, normalised.

    Face geometry, in this order: `landmarks` passed to the call (5, 68, 468 or 478 points per image); with
    `geometry="auto"` or `"detector"`, a face detector and 68-point landmark model (`pip install "emotic[faces]"`;
    the largest face wins); with `geometry="template"` (or `"auto"` without a detector installed), the canonical
    template of an aligned face crop (Aff-Wild2 `cropped_aligned` frames). When the detector finds no face,
    `on_no_face="full_image"` (default) logs a warning and treats the whole image as an aligned face;
    `on_no_face="error"` raises.

    Args:
        size (`dict` or `int`, defaults to 224): output `{"height", "width"}` of both views.
        resample (`str`, defaults to `"bilinear"`): `nearest`, `bilinear` or `bicubic` (antialiased); transformers'
            `PILImageResampling` values are accepted too.
        do_convert_rgb (`bool`, defaults to `True`): convert every input to RGB (grey repeated, alpha on white).
            With `False`, arrays and tensors keep their channels (give `image_mean`/`image_std` per channel).
        do_rescale (`bool`, defaults to `True`), rescale_factor (`float`, defaults to 1/255): scale pixel values.
        do_normalize (`bool`, defaults to `True`), image_mean, image_std (`list[float]`): normalisation (ImageNet's,
            as MAE and MAE-Face use).
        aux_regions (`list[str]`, defaults to `["eyes", "mouth"]`): any non-empty subset of eyes, mouth, nose.
        aux_layout (`str`, defaults to `"concat"`): `concat` (regions side by side, top-to-bottom order left to
            right), `updown` (stacked: eyes above nose above mouth), `mean` (pixel mean of the region crops) or
            `mask` (the face with everything but the regions blanked to the mean colour).
        geometry (`str`, defaults to `"auto"`): `auto`, `detector` or `template` (see above).
        on_no_face (`str`, defaults to `"full_image"`): `full_image` or `error`.
        max_image_pixels (`int`, defaults to 50,000,000): larger images are refused (decompression-bomb guard).
        min_image_size (`int`, defaults to 16): images with a side shorter than this are refused.

    Call it with one image or a list (PIL images, numpy arrays `HWC`/`CHW`/`HW`, torch tensors, or file paths;
    any PIL mode, 8- or 16-bit). Every option above can also be given to the call, as can transformers' standard
    `input_data_format` (`"channels_first"`/`"channels_last"`, when the layout of an array is ambiguous),
    `data_format` (of the output), `device` and `return_tensors`. `return_regions=True` adds `regions`: per image,
    the `face`, `eyes`, `mouth` and `nose` boxes `(x0, y0, x1, y1)` in input pixels and the `geometry` used
    (`landmarks`, `detector`, `template` or `full_image`).
    """

    model_input_names = ["pixel_values", "pixel_values_aux"]
    valid_kwargs = EmoticImageProcessorKwargs
    # class defaults: an option set to None on an instance falls back to these (and None survives save/load)
    do_convert_rgb = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    # the call options; anything else is refused (a misspelt option must not be ignored silently)
    _valid_processor_keys = [
        "images", "landmarks", "return_regions", "return_tensors", "aux_regions", "aux_layout", "geometry",
        "on_no_face", "size", "resample", "do_resize", "do_convert_rgb", "do_rescale", "rescale_factor",
        "do_normalize", "image_mean", "image_std", "input_data_format", "data_format", "device",
    ]

    def __init__(
        self,
        size=None,
        resample: str = "bilinear",
        image_mean=None,
        image_std=None,
        aux_regions=None,
        aux_layout: AuxLayout = "concat",
        geometry: Geometry = "auto",
        on_no_face: OnNoFace = "full_image",
        max_image_pixels: int = 50_000_000,
        min_image_size: int = 16,
        do_convert_rgb: bool | None = True,
        do_rescale: bool | None = True,
        rescale_factor: float | None = 1 / 255,
        do_normalize: bool | None = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.size = self._size_dict(224 if size is None else size)
        self.resample = self._resample_name(resample)
        self.image_mean = list(IMAGENET_MEAN if image_mean is None else image_mean)
        self.image_std = list(IMAGENET_STD if image_std is None else image_std)
        self.aux_regions = list(aux_regions or ["eyes", "mouth"])
        self.aux_layout = aux_layout
        self.geometry = geometry
        self.on_no_face = on_no_face
        self.max_image_pixels = max_image_pixels
        self.min_image_size = min_image_size
        self.do_convert_rgb, self.do_rescale, self.do_normalize = do_convert_rgb, do_rescale, do_normalize
        self.rescale_factor = rescale_factor
        self._check_options(self.aux_regions, aux_layout, geometry, on_no_face)
        # transformers' `load_image` (which `pipeline` calls before this processor sees the image) decodes whatever
        # Pillow's own decompression-bomb limit lets through: lower that process-wide limit to ours (never raise it),
        # so an oversized image is refused from its header there too (Pillow refuses above twice the limit).
        if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > max_image_pixels:
            Image.MAX_IMAGE_PIXELS = max_image_pixels

    @staticmethod
    def _size_dict(size) -> dict:
        value = {"height": size, "width": size} if isinstance(size, int) else dict(size)
        if sorted(value) != ["height", "width"] or not all(isinstance(v, int) and v >= 1 for v in value.values()):
            raise ValueError(f"EmoticImageProcessor: size={size!r}; expected an int or {{'height': h, 'width': w}}")
        return value

    @staticmethod
    def _resample_name(resample) -> str:
        name = PIL_RESAMPLING.get(int(resample), resample) if isinstance(resample, int) else resample
        if name not in RESAMPLING:
            raise ValueError(f"EmoticImageProcessor: resample={resample!r}; allowed: {list(RESAMPLING)} (or "
                             f"PILImageResampling.NEAREST, BILINEAR, BICUBIC)")
        return name

    @staticmethod
    def _check_options(aux_regions, aux_layout, geometry, on_no_face):
        if not aux_regions or not set(aux_regions) <= set(REGIONS) or len(set(aux_regions)) != len(aux_regions):
            raise ValueError(f"EmoticImageProcessor: aux_regions={aux_regions!r}; allowed: a non-empty subset of "
                             f"{list(REGIONS)}")
        for name, value, allowed in (("aux_layout", aux_layout, AUX_LAYOUTS), ("geometry", geometry, GEOMETRIES),
                                     ("on_no_face", on_no_face, NO_FACE_BEHAVIOURS)):
            if value not in allowed:
                raise ValueError(f"EmoticImageProcessor: {name}={value!r}; allowed: {list(allowed)}")

    # -- public entry point ----------------------------------------------------------------------------------------

    def preprocess(
        self,
        images,
        landmarks=None,
        return_regions: bool = False,
        return_tensors=None,
        aux_regions: list[Region] | None = None,
        aux_layout: AuxLayout | None = None,
        geometry: Geometry | None = None,
        on_no_face: OnNoFace | None = None,
        size=None,
        resample=None,
        do_resize: bool | None = None,
        do_convert_rgb: bool | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean=None,
        image_std=None,
        input_data_format=None,
        data_format=None,
        device=None,
        **kwargs,
    ) -> BatchFeature:
        if kwargs:  # a misspelt option must not be ignored silently
            raise TypeError(f"EmoticImageProcessor got unexpected arguments {sorted(kwargs)}; options are "
                            f"{', '.join(self._valid_processor_keys[1:])}")
        if do_resize is False:
            raise ValueError("EmoticImageProcessor: do_resize=False is not supported; both views are built at `size` "
                             "(set size to the resolution you want)")
        options = self._options(locals())
        self._check_options(options["aux_regions"], options["aux_layout"], options["geometry"],
                            options["on_no_face"])
        images = self._as_list(images)
        if landmarks is not None:
            if len(images) == 1 and np.asarray(landmarks, dtype=object).ndim == 2:
                landmarks = [landmarks]  # one image, one (K, 2) array
            if len(landmarks) != len(images):
                raise ValueError(f"landmarks: got {len(landmarks)} entries for {len(images)} images; "
                                 f"expected one (num_points, 2) array per image")

        names = [self._image_name(image, index) for index, image in enumerate(images)]
        all_pixels = [self._decode(image, name, options["do_convert_rgb"], input_data_format)  # [1, C, H, W] uint8
                      for image, name in zip(images, names)]
        geometries = self._face_geometries(all_pixels, names, landmarks, options["geometry"], options["on_no_face"])
        decoded = [(pixels, boxes, geometry) for pixels, (boxes, geometry) in zip(all_pixels, geometries)]
        # Small images of one size with the same boxes (aligned crops, the template) are cropped and resized together:
        # one `interpolate` per view and region for the group instead of one per image. Larger images go one by one:
        # stacking them would copy more than the per-image calls cost.
        groups = {}
        for index, (pixels, boxes, _) in enumerate(decoded):
            key = (tuple(pixels.shape), tuple((region, tuple(box)) for region, box in sorted(boxes.items())))
            groups.setdefault(key if pixels[0, 0].numel() <= _GROUPED_PIXELS else index, []).append(index)
        # Each group's views are written into its rows of one uint8 batch per view; each batch is then converted to
        # float in one copy and scaled in place.
        height, width = options["size"]["height"], options["size"]["width"]
        views = {}
        for indices in groups.values():
            batch = decoded[indices[0]][0] if len(indices) == 1 else torch.cat([decoded[i][0] for i in indices])
            if not views:
                views = {name: _batch((len(decoded), batch.shape[1], height, width), np.uint8)
                         for name in ("pixel_values", "pixel_values_aux")}
            channels = views["pixel_values"].shape[1]
            if batch.shape[1] != channels:
                raise ValueError(f"images: {len(decoded)} images with different channel counts ({channels} and "
                                 f"{batch.shape[1]}) cannot form one batch; give images with the same channels (or "
                                 f"do_convert_rgb=True)")
            if indices == list(range(indices[0], indices[-1] + 1)):  # a run of images: their rows of the batch
                rows = slice(indices[0], indices[-1] + 1)
                self._build_views(batch, decoded[indices[0]][1], options, *(view[rows] for view in views.values()))
            else:
                main, aux = (torch.empty((len(indices), channels, height, width), dtype=torch.uint8) for _ in "ma")
                self._build_views(batch, decoded[indices[0]][1], options, main, aux)
                views["pixel_values"][indices], views["pixel_values_aux"][indices] = main, aux
        views = {name: self._normalise(_batch(view.shape, np.float32).copy_(view), options)
                 for name, view in views.items()}
        if data_format is not None and not _channels_first(data_format, "data_format"):  # (B, H, W, C) asked for
            views = {key: value.permute(0, 2, 3, 1).contiguous() for key, value in views.items()}
        if str(return_tensors) not in ("pt", "TensorType.PYTORCH"):
            views = {key: value.numpy() for key, value in views.items()}
        elif device is not None:
            views = {key: value.to(device) for key, value in views.items()}
        features = BatchFeature(data=views, tensor_type=return_tensors)
        if return_regions:
            features["regions"] = [{**{key: tuple(round(v, 2) for v in box) for key, box in boxes.items()},
                                    "geometry": geometry} for _, boxes, geometry in decoded]
        return features

    def _options(self, given: dict) -> dict:
        """The call's options: each given one, else the instance's, else the class default; checked."""
        names = ("aux_regions", "aux_layout", "geometry", "on_no_face", "size", "resample", "do_convert_rgb",
                 "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
        options = {}
        for name in names:
            value = given[name] if given[name] is not None else getattr(self, name, None)
            options[name] = value if value is not None else getattr(type(self), name, None)
        options["aux_regions"] = list(options["aux_regions"])
        options["size"] = self._size_dict(options["size"])
        options["resample"] = self._resample_name(options["resample"])
        return options

    # -- decoding and checking inputs ------------------------------------------------------------------------------

    @staticmethod
    def _as_list(images) -> list:
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError("images: got an empty list; expected at least one image")
            return list(images)
        if hasattr(images, "ndim") and images.ndim == 4:  # a batch array or tensor (B, C, H, W) / (B, H, W, C)
            if images.shape[0] == 0:
                raise ValueError(f"images: got an empty batch of shape {tuple(images.shape)}; expected at least one "
                                 f"image")
            return [images[i] for i in range(images.shape[0])]
        return [images]

    @staticmethod
    def _image_name(image, index: int) -> str:
        if isinstance(image, (str, os.PathLike)):
            return f"image file {os.fspath(image)}"
        return f"image {index}"

    def to_rgb(self, image, name: str | None = None, input_data_format=None) -> Image.Image:
        """Any supported input → an RGB PIL image, or a `ValueError` naming the input and what was expected."""
        name = name or self._image_name(image, 0)
        if isinstance(image, (str, os.PathLike)):
            image = self._open(image, name)
        if isinstance(image, Image.Image):
            rgb = self._pil_to_rgb(image, name)
        elif hasattr(image, "detach") or isinstance(image, np.ndarray):  # torch tensor or numpy array
            rgb = Image.fromarray(self._array_to_uint8(image, name, channels_first=_channels_first(input_data_format)))
        else:
            raise ValueError(f"{name}: unsupported type {type(image).__name__}; expected a PIL image, a numpy "
                             f"array, a torch tensor or a file path")
        self._check_size(rgb.width, rgb.height, name)
        return rgb

    def _check_size(self, width: int, height: int, name: str) -> None:
        if min(width, height) < self.min_image_size:
            raise ValueError(f"{name}: {width}x{height} pixels is too small; each side must be at least "
                             f"{self.min_image_size} pixels")

    def _decode(self, image, name: str, convert_rgb: bool, input_data_format) -> torch.Tensor:
        """The pixels of one input, `(1, C, H, W)` uint8: RGB (C = 3), or with `convert_rgb=False` the channels an
        array or tensor has (a PIL image or file is always RGB)."""
        if convert_rgb or not (hasattr(image, "detach") or isinstance(image, np.ndarray)):
            array = np.array(self.to_rgb(image, name, input_data_format))  # a writable copy for torch
        else:
            array = self._array_to_uint8(image, name, channels_first=_channels_first(input_data_format),
                                         keep_channels=True)
            self._check_size(array.shape[1], array.shape[0], name)
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]

    def _open(self, path, name: str) -> Image.Image:
        if not os.path.isfile(path):
            raise ValueError(f"{name}: no such file")
        if os.path.getsize(path) == 0:
            raise ValueError(f"{name}: the file is empty (0 bytes)")
        try:
            with warnings.catch_warnings():  # the pixel limit is checked below, with our own limit and message
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
        except UnidentifiedImageError as error:
            raise ValueError(f"{name}: not an image PIL can read (is it a text or other file?)") from error
        except Image.DecompressionBombError as error:
            raise ValueError(f"{name}: exceeds max_image_pixels={self.max_image_pixels} "
                             f"(decompression-bomb guard; {error})") from error
        if image.width * image.height > self.max_image_pixels:
            raise ValueError(f"{name}: {image.width}x{image.height} = {image.width * image.height} pixels exceeds "
                             f"max_image_pixels={self.max_image_pixels} (decompression-bomb guard)")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"{name}: cannot decode image ({error})") from error
        return image

    def _pil_to_rgb(self, image: Image.Image, name: str) -> Image.Image:
        if image.width * image.height > self.max_image_pixels:
            raise ValueError(f"{name}: {image.width}x{image.height} pixels exceeds max_image_pixels="
                             f"{self.max_image_pixels} (decompression-bomb guard)")
        if image.getexif().get(0x0112, 1) != 1:  # EXIF orientation (phone photos), applied as `load_image` does
            image = ImageOps.exif_transpose(image)
        mode = image.mode
        if mode == "RGB":
            return image
        if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16/32-bit integer or float greyscale
            return Image.fromarray(self._array_to_uint8(np.asarray(image), name, sixteen_bit=mode != "F"))
        if mode == "P":
            image = image.convert("RGBA")
            mode = "RGBA"
        if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            # transparent areas on white, as transformers' convert_rgb does
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, ...

    @staticmethod
    def _array_to_uint8(array, name: str, sixteen_bit: bool = False, channels_first: bool | None = None,
                        keep_channels: bool = False) -> np.ndarray:
        """numpy/torch image → `(H, W, 3)` uint8 (`keep_channels`: `(H, W, C)` with the channels given). Accepts
        HW, HWC and CHW with 1, 3 or 4 channels (`channels_first` settles an ambiguous layout); uint8, 16-bit,
        bool, or float in [0, 1] or [0, 255]."""
        if hasattr(array, "detach"):
            array = array.detach().cpu()
            if str(array.dtype) == "torch.bfloat16":
                array = array.float()
            array = array.numpy()
        array = np.asarray(array)
        if array.ndim == 3 and (channels_first or (
                channels_first is None and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4))):
            array = array.transpose(1, 2, 0)  # CHW -> HWC
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
            raise ValueError(f"{name}: array of shape {tuple(array.shape)} is not an image; expected (H, W), "
                             f"(H, W, C) or (C, H, W) with C in 1, 3 or 4")
        if array.size == 0:
            raise ValueError(f"{name}: the image is empty (shape {tuple(array.shape)})")
        if array.dtype == np.bool_:
            array = array.astype(np.uint8) * 255
        elif array.dtype.kind == "f":
            if not np.isfinite(array).all():
                raise ValueError(f"{name}: contains NaN or infinite values")
            low, high = float(array.min()), float(array.max())
            if low < 0 or high > 255:
                raise ValueError(f"{name}: float values span [{low:.3g}, {high:.3g}]; expected [0, 1] or [0, 255] "
                                 f"(pass raw images, not normalised ones)")
            array = np.clip(np.rint(array * (255.0 if high <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
        elif array.dtype != np.uint8:
            if array.dtype.kind not in "iu":
                raise ValueError(f"{name}: unsupported dtype {array.dtype}")
            low, high = int(array.min()), int(array.max())
            if low < 0 or high > 65535:
                raise ValueError(f"{name}: integer values span [{low}, {high}]; expected 8- or 16-bit values")
            sixteen_bit = sixteen_bit or array.dtype.itemsize >= 2 and high > 255
            array = (array.astype(np.uint32) * 255 // 65535 if sixteen_bit else array).astype(np.uint8)
        if keep_channels:
            return np.ascontiguousarray(array[..., None] if array.ndim == 2 else array)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        elif array.shape[-1] == 4:  # RGBA on white
            alpha = array[..., 3:4].astype(np.float32) / 255.0
            array = np.rint(array[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        return np.ascontiguousarray(array)

    # -- geometry ---------------------------------------------------------------------------------------------------

    def _face_geometries(self, pixels: list, names: list, landmarks, geometry, on_no_face) -> list[tuple[dict, str]]:
        """Each image's boxes and the geometry that gave them. The caller's landmarks of one convention become boxes
        in one vectorised pass for the whole batch; images without landmarks go one by one."""
        found = [None] * len(pixels)
        conventions = {}  # number of points → [(image index, points)]
        for index, points in enumerate(landmarks if landmarks is not None else ()):
            if points is not None:
                points = validate_landmarks(points, f"landmarks of {names[index]}")
                conventions.setdefault(len(points), []).append((index, points))
        for members in conventions.values():
            what = [f"landmarks of {names[index]}" for index, _ in members]
            all_boxes = boxes_from_landmark_batch(np.stack([points for _, points in members]), what)
            for (index, _), name, boxes in zip(members, what, all_boxes):
                height, width = pixels[index].shape[-2:]
                check_landmark_boxes(boxes, width, height, name)
                found[index] = boxes, "landmarks"
        return [found[index] or self._face_geometry(pixels[index], geometry, on_no_face, names[index])
                for index in range(len(pixels))]

    def _face_geometry(self, pixels: torch.Tensor, geometry, on_no_face, name) -> tuple[dict, str]:
        """The boxes of one image without landmarks: the template, or the face detector's."""
        height, width = pixels.shape[-2:]
        if geometry == "template":
            return template_boxes(width, height), "template"
        if not detector_available():
            if geometry == "detector":
                FaceLandmarker.shared()  # raises ImportError naming what to install
            logger.warning_once("EmoticImageProcessor: no face detector installed (pip install 'emotic[faces]'); "
                                "treating images as aligned face crops (the canonical template)")
            return template_boxes(width, height), "template"
        rgb = pixels[0, :3] if pixels.shape[1] >= 3 else pixels[0, :1].expand(3, -1, -1)  # the detector sees RGB
        points = FaceLandmarker.shared()(rgb.permute(1, 2, 0).numpy())
        if points is not None:
            try:
                return boxes_from_landmarks(points), "detector"
            except ValueError:  # the landmarks collapsed onto a few pixels (a detection of a speck): no usable face
                pass
        if on_no_face == "error":
            raise ValueError(f"{name}: no face found (on_no_face='error')")
        logger.warning(f"EmoticImageProcessor: {name}: no face found; using the whole image as the face")
        return template_boxes(width, height), "full_image"

    # -- the two views ---------------------------------------------------------------------------------------------

    @staticmethod
    def _fill(options: dict, channels: int) -> list[int]:
        """The mean colour, one uint8 value per channel, which normalises to 0 (blank areas of the views)."""
        mean = list(options["image_mean"]) * (channels if len(options["image_mean"]) == 1 else 1)
        if len(mean) != channels:
            raise ValueError(f"image_mean has {len(mean)} values for images with {channels} channels; give one per "
                             f"channel")
        return [min(255, max(0, int(round(255 * m)))) for m in mean]

    @staticmethod
    def _crop_resize(pixels: torch.Tensor, box, out: torch.Tensor, resample: str, fill: list[int]) -> torch.Tensor:
        """Crop `box` of `(B, C, H, W)` uint8 pixels, resize it to the size of `out` (uint8) and write it there.
        Inside the image, one antialiased uint8 `interpolate` on the crop (a view, no copy); where the box reaches
        outside, `fill`."""
        height, width = pixels.shape[-2:]
        out_height, out_width = out.shape[-2:]
        x0, y0, x1, y1 = box
        left, top = int(math.floor(x0)), int(math.floor(y0))
        right, bottom = max(int(math.ceil(x1)), left + 1), max(int(math.ceil(y1)), top + 1)
        if left >= 0 and top >= 0 and right <= width and bottom <= height:
            return out.copy_(_resize(pixels[:, :, top:bottom, left:right], out_width, out_height, resample))
        # A box reaching outside the image: the part inside is resized to its share of the output, the rest is the
        # mean colour (no canvas of the box's size: a box much larger than the image costs nothing extra).
        for channel, value in enumerate(fill):
            out[:, channel].fill_(value)
        x_scale, y_scale = out_width / (right - left), out_height / (bottom - top)
        ix0, iy0, ix1, iy1 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
        ox0, oy0 = round((ix0 - left) * x_scale), round((iy0 - top) * y_scale)
        ox1, oy1 = round((ix1 - left) * x_scale), round((iy1 - top) * y_scale)
        if ix1 > ix0 and iy1 > iy0 and ox1 > ox0 and oy1 > oy0:
            out[..., oy0:oy1, ox0:ox1] = _resize(pixels[:, :, iy0:iy1, ix0:ix1], ox1 - ox0, oy1 - oy0, resample)
        return out

    @staticmethod
    def _normalise(pixels: torch.Tensor, options: dict) -> torch.Tensor:
        """Float `(B, C, H, W)` pixel values → `x * rescale_factor` then `(x - mean) / std` (each step as the options
        say), in place: one multiply-add per channel with the two folded into a scale and an offset."""
        channels = pixels.shape[1]
        scale = torch.full((channels,), float(options["rescale_factor"]) if options["do_rescale"] else 1.0)
        offset = torch.zeros(channels)
        if options["do_normalize"]:
            mean, std = (torch.tensor([float(v) for v in options[key]]) for key in ("image_mean", "image_std"))
            if len(mean) not in (1, channels) or len(std) not in (1, channels):
                raise ValueError(f"image_mean and image_std have {len(mean)} and {len(std)} values for images with "
                                 f"{channels} channels; give one per channel")
            scale, offset = (scale / std).expand(channels), (-mean / std).expand(channels)
        # one fused `shift + factor * x` pass per channel plane: faster than broadcasting (C, 1, 1) tensors, which
        # takes a slower path on CPU than a scalar does
        for channel, (factor, shift) in enumerate(zip(scale.tolist(), offset.tolist())):
            plane = pixels[:, channel]
            if factor != 1.0 or shift != 0.0:
                torch.add(offset[channel], plane, alpha=factor, out=plane)
        return pixels

    def _build_views(self, pixels: torch.Tensor, boxes: dict, options: dict, main: torch.Tensor, aux: torch.Tensor):
        """Both views of images of one size sharing `boxes`, from their `(B, C, H, W)` uint8 pixels, written into
        `main` and `aux` (`(B, C, height, width)` uint8: rows of the call's batch)."""
        height, width = main.shape[-2:]
        fills = options.setdefault("fills", {})  # one per channel count, for the whole call
        fill = fills.get(pixels.shape[1])
        if fill is None:
            fill = fills[pixels.shape[1]] = self._fill(options, pixels.shape[1])
        resample = options["resample"]
        self._crop_resize(pixels, boxes["face"], main, resample, fill)
        ordered = [region for region in REGIONS if region in options["aux_regions"]]
        count, layout = len(ordered), options["aux_layout"]
        if layout in ("concat", "updown"):  # side by side, or stacked top to bottom
            side = width if layout == "concat" else height
            edges = [round(side * i / count) for i in range(count + 1)]
            for i, region in enumerate(ordered):
                part = aux[..., edges[i]:edges[i + 1]] if layout == "concat" else aux[..., edges[i]:edges[i + 1], :]
                self._crop_resize(pixels, boxes[region], part, resample, fill)
        elif layout == "mean":
            crops = [self._crop_resize(pixels, boxes[region], torch.empty(main.shape, dtype=torch.uint8), resample,
                                       fill).float() for region in ordered]
            aux.copy_(torch.stack(crops).mean(0).round())
        else:  # mask: the face with everything but the regions set to the mean colour
            fx0, fy0, fx1, fy1 = boxes["face"]
            keep = torch.zeros(height, width, dtype=torch.bool)
            for region in ordered:
                x0, y0, x1, y1 = boxes[region]
                left = max(0, int(round((x0 - fx0) / (fx1 - fx0) * width)))
                right = min(width, int(round((x1 - fx0) / (fx1 - fx0) * width)))
                top = max(0, int(round((y0 - fy0) / (fy1 - fy0) * height)))
                bottom = min(height, int(round((y1 - fy0) / (fy1 - fy0) * height)))
                keep[top:bottom, left:right] = True
            torch.where(keep, main, torch.tensor(fill, dtype=main.dtype).view(-1, 1, 1), out=aux)


def _batch(shape, dtype) -> torch.Tensor:
    """An uninitialised tensor in memory numpy allocates. A batch's views are the largest buffers the processor writes
    (38 MB a float view at 64 images), fresh on each call; numpy asks the kernel to back arrays from 4 MB with huge
    pages (`madvise(MADV_HUGEPAGE)`, numpy's default on Linux; `NUMPY_MADVISE_HUGEPAGE=0` turns it off), so they fill
    with one page fault per 2 MB instead of one per 4 KB: writing a fresh float view takes about a third of the time
    where the kernel gives huge pages on request. torch's own allocator asks only when `THP_MEM_ALLOC_ENABLE=1` was set
    before torch started."""
    return torch.from_numpy(np.empty(tuple(shape), dtype=dtype))


def _resize(crop: torch.Tensor, out_width: int, out_height: int, resample: str) -> torch.Tensor:
    """`(B, C, h, w)` uint8 → `(B, C, out_height, out_width)` uint8, antialiased when downscaling."""
    if resample == "nearest":
        return F.interpolate(crop, size=(out_height, out_width), mode="nearest")
    return F.interpolate(crop, size=(out_height, out_width), mode=resample, antialias=True, align_corners=False)


def _channels_first(data_format, name: str = "input_data_format") -> bool | None:
    """transformers' channel layout ("channels_first"/"channels_last" or a `ChannelDimension`) → whether it is CHW;
    None: not given (an input's layout is then inferred from its shape)."""
    if data_format is None:
        return None
    value = str(getattr(data_format, "value", data_format))
    if value not in ("channels_first", "channels_last"):
        raise ValueError(f"{name}={data_format!r}; allowed: 'channels_first', 'channels_last'")
    return value == "channels_first"


__all__ = ["EmoticImageProcessor"]
