"""Configuration of emotic's temporal head: a small Transformer over windows of a frame model's per-frame features.

This file is copied verbatim into Hub repositories for `trust_remote_code`, so it imports only transformers and
its sibling `configuration_emotic`.
"""

import math
import numbers

from dataclasses import field
from typing import Literal

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

from .configuration_emotic import RegressionLoss, SmoothingMode, check_head, default_labels


MODALITIES = ("vision", "audio", "text")
MODALITY_FUSIONS = ("cross_attention", "gated_sum")
ModalityFusion = Literal[MODALITY_FUSIONS]


class EmoticTemporalConfig(PreTrainedConfig):
    r"""
    Configuration of [`EmoticTemporalModel`]: a Transformer encoder over windows of consecutive frames' features
    (the pooled, fused feature an [`EmoticForImageClassification`] head classifies, as `emotic features` writes it),
    with a per-frame head for the same ABAW tracks as the frame model's. The defaults follow the ABAW winners'
    temporal models (a 4-layer Transformer of width 256 over 100-frame windows).

    Args:
        feature_size (`int`, defaults to 768): width of the input features, the frame model's `hidden_size`.
        hidden_size (`int`, defaults to 256): width of the temporal Transformer.
        num_hidden_layers (`int`, defaults to 4): Transformer blocks.
        num_attention_heads (`int`, defaults to 4): heads per attention; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 1024): MLP width.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation.
        hidden_dropout_prob (`float`, defaults to 0.1): dropout on the projected features and after attention and
            MLP projections.
        attention_probs_dropout_prob (`float`, defaults to 0.0): dropout on attention probabilities.
        initializer_range (`float`, defaults to 0.02): std of the normal init of the position embeddings.
        layer_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
        qkv_bias (`bool`, defaults to `True`): bias in the fused qkv projection.
        kernel_size (`int`, defaults to 5): frames each frame's input projection sees (a temporal convolution
            before the Transformer, odd; 1 = each frame alone).
        window_size (`int`, defaults to 100): the most frames one forward pass takes (its position embeddings);
            videos are cut into windows of this length.
        window_stride (`int`, defaults to 50): frames between the starts of consecutive windows when a whole video
            is run (`EmoticTemporalModel.video_logits`, `emotic predict --temporal_model`); where windows overlap,
            a frame's logits are the mean of its windows'. At most `window_size` (no frame left out).
        frozen_frame_head (`bool`, defaults to `False`): `frame_head` is the frame model's `classifier`, copied in
            and kept fixed in training (`emotic finetune-temporal` does so when the frame model has this head); the
            commands that run the head with a frame model then check that model's classifier against it, so a head is
            never run on another model's features.
        frame_signature (`list[float]`, *optional*): what identifies the frame model whose features the head was
            trained on (`emotic.training.frame_features.frame_model_signature`: its features of two fixed probe
            images, projected to 32 values), recorded by `emotic features` and `emotic finetune-temporal`; the
            commands that run the head with a frame model compare that model's own with it.
        modalities (`list[str]`, defaults to `["vision"]`): what the head takes per frame: `vision` (the frame
            model's features, always first), and `audio` (a speech encoder's features, `emotic features
            --audio_model`), `text` (a text encoder's features of the words spoken around the frame). Each modality
            besides vision is projected to `hidden_size`, a learned token standing in wherever it is missing (a video
            without sound, a frame where nobody speaks), and fused into the vision stream before the Transformer.
        audio_size (`int`, *optional*), text_size (`int`, *optional*): widths of the audio and text features (the
            encoders' hidden sizes); required where the modality is taken.
        modality_fusion (`str`, defaults to `"cross_attention"`): how the other modalities enter: `cross_attention`
            (each frame's vision token attends over the window's audio and text tokens, one pre-norm attention with a
            skip connection) or `gated_sum` (each modality's token added to the frame's, scaled per channel by a
            sigmoid gate of both).
        modality_dropout (`float`, defaults to 0.1): in training, the probability that a window's audio (text) is
            replaced by the missing token throughout, so that one head serves every combination of modalities.
        audio_settings (`dict`, *optional*), text_settings (`dict`, *optional*): how the features were computed
            (the model, layer and windows: `emotic features` records them); the commands that compute features for
            the head compute them so, and refuse features made otherwise.
        class_weights, label_smoothing, pos_weight, label_thresholds, regression_loss, regression_range, tasks,
        problem_type, id2label: the head and its loss, as in [`EmoticConfig`] (expressions, action units,
            valence-arousal, or a multi-task head); `emotic finetune-temporal` copies them from the frame model.
        smoothing_window (`int`, defaults to 1), smoothing_mode (`str`, defaults to `"mean"`): smoothing of the
            head's per-frame outputs by `emotic predict` (1 = none), as in [`EmoticConfig`].

    Example:

    ```python
    >>> from emotic import EmoticTemporalConfig, EmoticTemporalModel
    >>> config = EmoticTemporalConfig(feature_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...                               intermediate_size=64, window_size=16, window_stride=8)
    >>> EmoticTemporalModel(config).config.id2label[4]
    'Happiness'
    ```
    """

    model_type = "emotic_temporal"

    feature_size: int = 768
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    kernel_size: int = 5
    window_size: int = 100
    window_stride: int = 50
    frozen_frame_head: bool = False
    frame_signature: list | None = None
    modalities: list = field(default_factory=lambda: ["vision"])
    audio_size: int | None = None
    text_size: int | None = None
    modality_fusion: ModalityFusion = "cross_attention"
    modality_dropout: float = 0.1
    audio_settings: dict | None = None
    text_settings: dict | None = None
    # the head: as EmoticConfig's (`check_head`)
    class_weights: list | None = None
    label_smoothing: float = 0.0
    pos_weight: list | None = None
    label_thresholds: list | None = None
    regression_loss: RegressionLoss = "mse"
    regression_range: list | None = None
    tasks: list | None = None
    smoothing_window: int = 1
    smoothing_mode: SmoothingMode = "mean"

    def __post_init__(self, **kwargs):
        default_labels(self, kwargs)
        super().__post_init__(**kwargs)
        self.validate_temporal()

    def validate_temporal(self):
        """Raise a `ValueError` naming the field, its value and what is allowed."""

        def require(ok, message):
            if not ok:
                raise ValueError(f"EmoticTemporalConfig: {message}")

        for name in ("feature_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "kernel_size", "window_size", "window_stride"):
            value = getattr(self, name)
            require(isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0,
                    f"{name}={value!r} must be a positive integer")
        require(self.hidden_size % self.num_attention_heads == 0,
                f"num_attention_heads={self.num_attention_heads} must divide hidden_size={self.hidden_size}")
        require(isinstance(self.hidden_act, str) and self.hidden_act in ACT2FN,
                f"hidden_act={self.hidden_act!r}; allowed: {sorted(ACT2FN)}")
        require(self.kernel_size % 2 == 1, f"kernel_size={self.kernel_size}; allowed: an odd number of frames")
        require(self.window_stride <= self.window_size,
                f"window_stride={self.window_stride} is longer than window_size={self.window_size}: the frames "
                f"between windows would get no prediction; allowed: 1..{self.window_size}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            require(isinstance(value, numbers.Real) and 0.0 <= value < 1.0, f"{name}={value!r}; allowed: [0, 1)")
        modalities = self.modalities
        require(isinstance(modalities, (list, tuple)) and len(modalities) > 0 and modalities[0] == "vision"
                and len(set(modalities)) == len(modalities) and set(modalities) <= set(MODALITIES),
                f"modalities={modalities!r}; expected 'vision' first, then any of {list(MODALITIES[1:])}, each once")
        for name in MODALITIES[1:]:
            size = getattr(self, f"{name}_size")
            if name in modalities:
                require(isinstance(size, numbers.Integral) and not isinstance(size, bool) and size > 0,
                        f"{name}_size={size!r}; expected the width of the {name} features (a positive integer), as "
                        f"modalities takes {name}")
        require(self.modality_fusion in MODALITY_FUSIONS,
                f"modality_fusion={self.modality_fusion!r}; allowed: {list(MODALITY_FUSIONS)}")
        require(isinstance(self.modality_dropout, numbers.Real) and 0.0 <= self.modality_dropout < 1.0,
                f"modality_dropout={self.modality_dropout!r}; allowed: [0, 1)")
        signature = self.frame_signature
        require(signature is None or (isinstance(signature, (list, tuple)) and len(signature) > 0 and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in signature)),
                f"frame_signature={signature!r}; expected a list of finite numbers, or None")
        check_head(self, require)


__all__ = ["MODALITIES", "MODALITY_FUSIONS", "EmoticTemporalConfig"]
