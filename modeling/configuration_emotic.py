"""Configuration of emotic: the MAE-Face ViT encoder, its MAE decoder and the dual-view fusion, in one config.

This file is copied verbatim into Hub repositories for `trust_remote_code`, so it imports only transformers and its
sibling `heads_emotic` (the tracks a head serves).
"""

import numbers
from typing import Literal, get_args

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

from .heads_emotic import ABAW_EXPRESSION_LABELS, HEADS, MULTITASK_TRACKS, multitask_labels

# The closed choices of the config; the command-line arguments and the converter reuse them (`get_args` lists them).
FusionStrategy = Literal["none", "mean", "concat", "concat_linear", "attention"]
Pooling = Literal["avg", "cls"]
SmoothingMode = Literal["mean", "gaussian", "mode"]
RegressionLoss = Literal["mse", "ccc"]
def check_smoothing_window(window, name: str = "smoothing_window") -> int:
    """The one rule of a smoothing window: an odd integer >= 1, a window centred on the frame (1 = no smoothing)."""
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1 or window % 2 == 0:
        raise ValueError(f"{name}={window!r}; allowed: an odd integer >= 1 (a window centred on the frame, 1 = none)")
    return int(window)


def default_labels(config, kwargs) -> None:
    """Before `PreTrainedConfig.__post_init__`: the head's labels default to the 8 ABAW expressions (a multi-task
    head's, to its tracks' outputs) unless the caller chose labels, by map or by count."""
    if config.id2label is None and kwargs.get("num_labels") is None:
        config.id2label = dict(enumerate(multitask_labels(config.tasks) if config.tasks else ABAW_EXPRESSION_LABELS))
        config.label2id = {label: index for index, label in config.id2label.items()}


def check_head(config, require) -> None:
    """The rules of a head's options, shared by `EmoticConfig` and `EmoticTemporalConfig` (whose heads serve the
    same tracks): `require(ok, message)` raises the config's `ValueError`. A multi-task head's per-label options
    count the labels of their track (the expressions, the action units)."""
    for name, choices in (("smoothing_mode", SmoothingMode), ("regression_loss", RegressionLoss)):
        value = getattr(config, name)
        require(value in get_args(choices), f"{name}={value!r}; allowed: {list(get_args(choices))}")
    require(0.0 <= config.label_smoothing < 1.0, f"label_smoothing={config.label_smoothing!r}; allowed: [0, 1)")
    try:
        check_smoothing_window(config.smoothing_window)
    except ValueError as error:
        require(False, str(error))
    # per-label options count the labels of their track (the expressions, the action units) in a multi-task head
    classes, units, class_name, unit_name = config.num_labels, config.num_labels, "label", "label"
    if config.tasks is not None:
        require(isinstance(config.tasks, (list, tuple)) and len(config.tasks) >= 2
                and all(isinstance(t, str) and t in HEADS for t in config.tasks)
                and len(set(config.tasks)) == len(config.tasks),
                f"tasks={config.tasks!r}; expected two or more different tracks of {list(HEADS)}, in output "
                f"order (ABAW7's multi-task challenge: {MULTITASK_TRACKS})")
        config.tasks = list(config.tasks)
        expected = multitask_labels(config.tasks)
        require([config.id2label[i] for i in range(config.num_labels)] == expected,
                f"a multi-task head over {config.tasks} has the {len(expected)} outputs {expected}; got "
                f"{config.num_labels} labels {[config.id2label[i] for i in range(config.num_labels)]}")
        require(config.problem_type is None, f"problem_type={config.problem_type!r}: a multi-task head takes "
                                             f"each track's own loss; leave problem_type unset")
        classes, units = len(HEADS["expr"].labels), len(HEADS["au"].labels)
        class_name, unit_name = "expression", "action unit"
    if config.class_weights is not None:
        require(len(config.class_weights) == classes and all(w >= 0 for w in config.class_weights),
                f"class_weights has {len(config.class_weights)} entries; expected {classes} "
                f"non-negative numbers, one per {class_name}")
    for name, low, high, what in (("pos_weight", 0.0, float("inf"), "positive numbers"),
                                  ("label_thresholds", 0.0, 1.0, "numbers strictly between 0 and 1")):
        values = getattr(config, name)
        if values is not None:
            require(isinstance(values, (list, tuple)) and len(values) == units
                    and all(isinstance(v, numbers.Real) and low < v < high for v in values),
                    f"{name}={values!r}; expected {units} {what}, one per {unit_name}")
    if config.regression_range is not None:
        bounds = config.regression_range
        require(isinstance(bounds, (list, tuple)) and len(bounds) == 2
                and all(isinstance(v, numbers.Real) for v in bounds) and bounds[0] < bounds[1],
                f"regression_range={bounds!r}; expected [low, high] with low < high")


class EmoticConfig(PreTrainedConfig):
    r"""
    Configuration of [`EmoticModel`], [`EmoticForPreTraining`] and [`EmoticForImageClassification`]. Like
    `ViTMAEConfig`, it holds the encoder, the MAE decoder and (here) the dual-view fusion in one place. The defaults
    are MAE-Face's ViT-B/16 (768 wide, 12 layers, 12 heads, LayerNorm eps 1e-6, drop path 0.1, mean pooling) with
    the 8 ABAW expression labels.

    Args:
        hidden_size (`int`, defaults to 768): width of the encoder.
        num_hidden_layers (`int`, defaults to 12): number of encoder blocks.
        num_attention_heads (`int`, defaults to 12): heads per encoder attention; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 3072): width of the encoder MLP.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation.
        hidden_dropout_prob (`float`, defaults to 0.0): dropout after attention and MLP projections.
        attention_probs_dropout_prob (`float`, defaults to 0.0): dropout on attention probabilities.
        drop_path_rate (`float`, defaults to 0.1): stochastic depth, rising linearly to this rate over the blocks.
        initializer_range (`float`, defaults to 0.02): std of the normal init of linear layers.
        layer_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon (MAE-Face and timm use 1e-6, not 1e-12).
        image_size (`int`, defaults to 224): input resolution the position embeddings are made for.
        patch_size (`int`, defaults to 16): side of a square patch.
        num_channels (`int`, defaults to 3): input channels.
        qkv_bias (`bool`, defaults to `True`): bias in the fused qkv projection.
        pooling (`str`, defaults to `"avg"`): `"avg"` = mean of the patch tokens, then the final LayerNorm
            (MAE-Face's `global_pool`, its `fc_norm`); `"cls"` = final LayerNorm on every token, then the CLS token.
        decoder_hidden_size (`int`, defaults to 512): width of the MAE decoder.
        decoder_num_hidden_layers (`int`, defaults to 8): MAE decoder blocks.
        decoder_num_attention_heads (`int`, defaults to 16): heads of the MAE decoder.
        decoder_intermediate_size (`int`, defaults to 2048): MLP width of the MAE decoder.
        mask_ratio (`float`, defaults to 0.75): share of patches masked in pre-training.
        norm_pix_loss (`bool`, defaults to `True`): regress per-patch normalised pixels (the MAE recipe).
        fusion_strategy (`str`, defaults to `"attention"`): how the auxiliary view enters the main stream:
            `"none"` (plain MAE-Face fine-tuning, the baseline), `"mean"` (token-wise mean of both streams),
            `"concat"` (one transformer block of joint attention over main‖aux tokens, main tokens kept),
            `"concat_linear"` (each main token concatenated with the auxiliary token at its position along the
            channels, projected back to the width: the dual-view authors' "concatenate" fusion; starts as the main
            tokens unchanged) or `"attention"` (Fusion Attention: main self-attention, main→aux cross attention,
            MLP, each with a skip).
        fusion_layer (`int`, *optional*): both views run blocks `[0, fusion_layer)`; fusion happens after them;
            only the main view runs the rest. 0 fuses right after the patch embedding, `num_hidden_layers` after
            the last block. Defaults to `num_hidden_layers // 3` (4 for ViT-B): low-level features of the
            auxiliary view, before the deep blocks, as the paper describes.
        share_encoder (`bool`, defaults to `True`): the auxiliary view uses the main encoder's embeddings and first
            blocks (one batch of 2B); `False` gives it its own copy of them.
        class_weights (`list[float]`, *optional*): per-class weights of the cross-entropy loss.
        label_smoothing (`float`, defaults to 0.0): label smoothing of the cross-entropy loss.
        pos_weight (`list[float]`, *optional*): with `problem_type="multi_label_classification"` (action units), the
            weight of each label's positive term in the binary cross-entropy (`BCEWithLogitsLoss`'s `pos_weight`;
            negatives over positives in the training data balances a rare label).
        label_thresholds (`list[float]`, *optional*): per-label decision thresholds on the sigmoid probabilities of a
            multi-label model (chosen on validation data by `emotic finetune`); 0.5 each when unset.
        regression_loss (`str`, defaults to `"mse"`): with `problem_type="regression"` (valence and arousal): `"mse"`
            or `"ccc"` (1 - the concordance correlation coefficient of each output over the batch, averaged).
        regression_range (`list[float]`, *optional*): `[low, high]`: regression outputs are squashed into this range
            by a scaled tanh (`[-1, 1]` for valence and arousal); unbounded when unset.
        tasks (`list[str]`, *optional*): a multi-task head (ABAW7's multi-task challenge: `["va", "expr", "au"]`):
            the tracks it serves, in output order, over one trunk. Its outputs are each track's (valence, arousal; the
            8 expression logits; the 12 action-unit logits), its labels each track's columns (valence, arousal; the
            expression index; the 12 units: 15 for ABAW7, the order of its annotation files), and its loss the sum of
            the tracks' losses, each leaving out its unannotated values. `class_weights` are then the expressions'
            (8), `pos_weight` and `label_thresholds` the action units' (12), `regression_range` bounds valence and
            arousal. Leave `problem_type` unset.
        smoothing_window (`int`, defaults to 1): odd number of frames over which `emotic predict` smooths the
            per-frame probabilities of a video (1 = none); `emotic evaluate --save_smoothing` stores the best one.
        smoothing_mode (`str`, defaults to `"mean"`): `"mean"`, `"gaussian"` or `"mode"` (majority vote).

    The auxiliary view's regions and layout are the image processor's (`EmoticImageProcessor`), which builds it.

    Example:

    ```python
    >>> from emotic import EmoticConfig, EmoticForImageClassification
    >>> config = EmoticConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    ...                       image_size=32, patch_size=8, fusion_layer=1)
    >>> model = EmoticForImageClassification(config)
    >>> model.config.id2label[4]
    'Happiness'
    ```
    """

    model_type = "emotic"

    # encoder (MAE-Face ViT-B/16)
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    pooling: Pooling = "avg"
    # MAE decoder
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    # dual-view fusion
    fusion_strategy: FusionStrategy = "attention"
    fusion_layer: int | None = None
    share_encoder: bool = True
    # classification loss
    class_weights: list | None = None
    label_smoothing: float = 0.0
    # multi-label (action units) and regression (valence, arousal) heads: `problem_type` says which
    pos_weight: list | None = None
    label_thresholds: list | None = None
    regression_loss: RegressionLoss = "mse"
    regression_range: list | None = None
    # a multi-task head: the tracks it serves, in output order
    tasks: list | None = None
    # video inference (`emotic predict`): sliding-window smoothing of per-frame probabilities
    smoothing_window: int = 1
    smoothing_mode: SmoothingMode = "mean"

    def __post_init__(self, **kwargs):
        # Default to the 8 ABAW expressions unless the caller chose labels (by map or by count).
        default_labels(self, kwargs)
        super().__post_init__(**kwargs)
        self.validate_emotic()

    def validate_emotic(self):
        """Raise a `ValueError` naming the field, its value and what is allowed."""

        def require(ok, message):
            if not ok:
                raise ValueError(f"EmoticConfig: {message}")

        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
                     "patch_size", "num_channels", "decoder_hidden_size", "decoder_num_attention_heads",
                     "decoder_intermediate_size"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, f"{name}={value!r} must be a positive integer")
        require(self.decoder_num_hidden_layers >= 0, "decoder_num_hidden_layers must be >= 0")
        require(isinstance(self.hidden_act, str) and self.hidden_act in ACT2FN,
                f"hidden_act={self.hidden_act!r}; allowed: {sorted(ACT2FN)}")
        if self.fusion_layer is None:
            self.fusion_layer = self.num_hidden_layers // 3
        require(self.hidden_size % self.num_attention_heads == 0,
                f"num_attention_heads={self.num_attention_heads} must divide hidden_size={self.hidden_size}; "
                f"allowed: {[h for h in range(1, self.hidden_size + 1) if self.hidden_size % h == 0]}")
        require(self.decoder_hidden_size % self.decoder_num_attention_heads == 0,
                f"decoder_num_attention_heads={self.decoder_num_attention_heads} must divide "
                f"decoder_hidden_size={self.decoder_hidden_size}")
        require(self.image_size % self.patch_size == 0,
                f"patch_size={self.patch_size} must divide image_size={self.image_size}")
        for name, choices in (("pooling", Pooling), ("fusion_strategy", FusionStrategy)):
            value = getattr(self, name)
            require(value in get_args(choices), f"{name}={value!r}; allowed: {list(get_args(choices))}")
        require(isinstance(self.fusion_layer, int) and 0 <= self.fusion_layer <= self.num_hidden_layers,
                f"fusion_layer={self.fusion_layer!r} is out of range; allowed: integers 0..{self.num_hidden_layers} "
                f"(num_hidden_layers)")
        require(0.0 <= self.mask_ratio < 1.0, f"mask_ratio={self.mask_ratio!r}; allowed: 0 <= mask_ratio < 1")
        require(0.0 <= self.drop_path_rate < 1.0, f"drop_path_rate={self.drop_path_rate!r}; allowed: [0, 1)")
        check_head(self, require)


__all__ = ["EmoticConfig", "FusionStrategy", "Pooling", "RegressionLoss", "SmoothingMode", "check_head",
           "check_smoothing_window", "default_labels"]
