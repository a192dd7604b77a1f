"""A frame model and a temporal head end to end (`emotic predict MODEL INPUT --temporal_model T`): per video, the
frame model's features of every frame (`emotic features`' rows: frames without a face carry their neighbour's), then
`EmoticTemporalModel.video_logits` over them (windows every `window_stride` frames, overlapping logits averaged),
and the temporal head's outputs in predict's files. A video's features are held in memory while its windows run
(`hidden_size` float32 values a frame: 3 KB at ViT-B's 768, 150 MB for a 50,000-frame video)."""

import numpy as np
import torch

from emotic.inference.features import FeatureExtractor
from emotic.inference.predict import FramePredictor, predict_sequence
from emotic.modeling.heads_emotic import head_outputs, head_parts


def make_predictor(model, processor, temporal_model: str | None, backend: str = "pytorch", batch_size: int = 32,
                   geometry: str | None = None):
    """What `emotic predict` and `emotic evaluate` run: the frame model alone (`FramePredictor`), or with the temporal
    head `temporal_model` (`TemporalPredictor`, on the PyTorch frame model's features). `predictor.model.config` is
    the config of the head whose outputs are written: its labels, thresholds and smoothing."""
    if temporal_model is None:
        return FramePredictor(model, processor, batch_size, geometry).quiet()
    if backend != "pytorch":
        raise ValueError("--temporal_model runs on the PyTorch frame model's features; leave --backend at pytorch")
    temporal = load_temporal_model(temporal_model, model)
    return TemporalPredictor(model, processor, temporal, batch_size, geometry).quiet()


def load_temporal_model(name_or_path: str, frame_model, device=None):
    """The temporal head of a folder or Hub id (installed code; never remote code), on the frame model's device
    and dtype; a `ValueError` unless it is an `EmoticTemporalModel` over features of the frame model's width."""
    from transformers import AutoConfig, AutoModel

    from emotic.modeling.modeling_emotic_temporal import EmoticTemporalModel

    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise ValueError(f"--temporal_model {name_or_path}: not a model folder or Hub id that loads ({error})") \
            from None
    if getattr(config, "model_type", None) != "emotic_temporal":
        raise ValueError(f"--temporal_model {name_or_path} is a {type(config).__name__} model; expected an emotic "
                         f"temporal head (the --output_dir of `emotic finetune-temporal`)")
    width = frame_model.config.hidden_size
    if config.feature_size != width:
        raise ValueError(f"--temporal_model {name_or_path} takes features of {config.feature_size} values per frame; "
                         f"the frame model gives {width} (hidden_size): a temporal head runs on features of the "
                         f"frame model it was trained on")
    model = AutoModel.from_pretrained(name_or_path, dtype=frame_model.dtype)
    if not isinstance(model, EmoticTemporalModel):
        raise ValueError(f"--temporal_model {name_or_path} loaded as {type(model).__name__}; expected "
                         f"EmoticTemporalModel")
    if config.frozen_frame_head and not same_head(model.frame_head, frame_model.classifier):
        raise ValueError(f"--temporal_model {name_or_path} was trained on the features of another frame model: its "
                         f"frame head is not this model's classifier; run it with the model its features came from")
    return model.to(device or frame_model.device).eval()


def same_head(frame_head, classifier, tolerance: float = 0.05) -> bool:
    """Whether a temporal head's frozen `frame_head` is this frame model's `classifier`, up to the rounding of a
    lower precision or int8 quantization (relative difference of the weights below `tolerance`; another model's
    head differs by about its own size)."""

    def weight(layer):
        value = layer.weight() if callable(layer.weight) else layer.weight  # a quantized layer's is a method
        return (value.dequantize() if value.is_quantized else value).detach().float().cpu()

    ours, theirs = weight(frame_head), weight(classifier)
    return ours.shape == theirs.shape and bool((ours - theirs).norm() <= tolerance * theirs.norm())


class TemporalPredictor:
    """`FramePredictor`'s interface (batches of (locations, statuses, outputs), `parts`, `model`, `quiet`) for a
    frame model and a temporal head: the outputs are the temporal head's (`model` is the temporal head, whose config
    says the labels, thresholds and smoothing). The outputs of every frame come from the head, so the frames
    without a face are already filled (`fills_frames`)."""

    fills_frames = True

    def __init__(self, frame_model, processor, temporal_model, batch_size: int = 32, geometry: str | None = None):
        self.extractor = FeatureExtractor(frame_model, processor, batch_size, geometry)
        self.model = temporal_model.eval()
        self.parts = head_parts(temporal_model.config)
        self.batch_size = batch_size

    def quiet(self):
        self.extractor.quiet()
        return self

    def __call__(self, frames):
        rows = list(predict_sequence(self.extractor, frames, 1, "mean"))  # frames without a face: carried
        if not rows:
            return
        locations, statuses, _, filled = zip(*rows)
        logits = self.model.video_logits(torch.from_numpy(np.stack(filled).astype(np.float32)))
        outputs = head_outputs(logits.float(), self.parts).cpu().numpy()
        for start in range(0, len(rows), self.batch_size):
            end = start + self.batch_size
            yield list(locations[start:end]), list(statuses[start:end]), outputs[start:end]
