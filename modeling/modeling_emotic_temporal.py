"""emotic's temporal head: a Transformer over windows of a frame model's per-frame features, with a per-frame head.

The two-stage recipe of the ABAW winners: a frame model is fine-tuned (then frozen), `emotic features` writes its
pooled features per frame, and this model learns from windows of them what a frame alone does not show (an
expression rising and falling, a face hidden for a few frames). Its blocks are the frame encoder's (`EmoticLayer`),
its head and losses the frame model's (`emotic_loss`, for every ABAW track).

This file is copied verbatim into Hub repositories for `trust_remote_code`, so it imports only torch,
transformers and its siblings.
"""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.utils.output_capturing import capture_outputs

from .configuration_emotic_temporal import EmoticTemporalConfig
from .heads_emotic import bound_outputs, emotic_loss
from .modeling_emotic import EmoticAttention, EmoticLayer, EmoticPreTrainedModel

AUTO_MAP = {"AutoConfig": "configuration_emotic_temporal.EmoticTemporalConfig",
            "AutoModel": "modeling_emotic_temporal.EmoticTemporalModel"}


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """First frames of the windows that cover `length` frames: every `stride` frames, and a last one ending at the
    last frame (`[length - window, length)`) where the stride does not reach it; one window of the whole video when
    it is shorter than `window`."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def check_features(features, config: EmoticTemporalConfig, name: str = "features") -> None:
    """A `ValueError` naming `features` unless it is a `(batch_size, frames, feature_size)` float tensor of at most
    `window_size` frames."""
    if not torch.is_tensor(features) or features.dim() != 3 or not features.is_floating_point():
        shape = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
        raise ValueError(f"{name} of shape {shape}; expected a float tensor (batch_size, frames, "
                         f"{config.feature_size}): per frame, the features of the frame model")
    if features.shape[-1] != config.feature_size:
        raise ValueError(f"{name} of {features.shape[-1]} values per frame; this temporal model takes "
                         f"{config.feature_size} (config.feature_size): features of a frame model with "
                         f"hidden_size={config.feature_size}")
    if features.shape[1] > config.window_size:
        raise ValueError(f"{name} of {features.shape[1]} frames; this model's windows hold at most "
                         f"{config.window_size} (config.window_size): cut longer videos into windows, as "
                         f"`video_logits` does")


def check_modality(values, present, name: str, size: int | None, features) -> None:
    """A `ValueError` naming `name` unless `values` (if given) is `(batch_size, frames, size)` like `features` and
    `present` (if given) `(batch_size, frames)`; `size` None: the head does not take this modality."""
    if values is None and present is None:
        return
    if size is None:
        raise ValueError(f"{name} given to a temporal head that does not take it (config.modalities); train one with "
                         f"{name} features to use them")
    if values is not None and (not torch.is_tensor(values) or values.dim() != 3 or not values.is_floating_point()
                               or tuple(values.shape[:2]) != tuple(features.shape[:2]) or values.shape[-1] != size):
        shape = tuple(values.shape) if hasattr(values, "shape") else type(values).__name__
        raise ValueError(f"{name} of shape {shape}; expected a float tensor {(*features.shape[:2], size)}: per frame "
                         f"of features, {size} values (config.{name}_size: the width of the {name} encoder the head "
                         f"was trained with)")
    if present is not None and tuple(present.shape) != tuple(features.shape[:2]):
        raise ValueError(f"{name}_present of shape {tuple(present.shape)}; expected {tuple(features.shape[:2])}, "
                         f"one flag per frame of features")


class EmoticModalityFusion(nn.Module):
    """The other modalities (`config.modalities` after vision) fused into the vision stream `(B, T, hidden_size)`:
    each modality's per-frame features LayerNorm-ed and projected to `hidden_size` (its `projections`), a learned
    token (`missing_tokens`) wherever it is absent (not given, or `present` False), the window's positions added; then
    `cross_attention` (vision queries over every modality token of the window, pre-norm, with a skip connection) or
    `gated_sum` (each modality's token times a sigmoid gate of it and the vision token, added). In training, each
    window's modality is replaced by its missing token with probability `modality_dropout`, so that the head learns
    to do without it."""

    def __init__(self, config: EmoticTemporalConfig):
        super().__init__()
        self.names = [name for name in config.modalities if name != "vision"]
        self.fusion, self.dropout = config.modality_fusion, config.modality_dropout
        size = config.hidden_size
        self.norms = nn.ModuleDict({name: nn.LayerNorm(getattr(config, f"{name}_size"), eps=config.layer_norm_eps)
                                    for name in self.names})
        self.projections = nn.ModuleDict({name: nn.Linear(getattr(config, f"{name}_size"), size)
                                          for name in self.names})
        self.missing_tokens = nn.Parameter(torch.zeros(len(self.names), size))  # one per modality, in `names` order
        if self.fusion == "cross_attention":
            self.norm_query = nn.LayerNorm(size, eps=config.layer_norm_eps)
            self.norm_context = nn.LayerNorm(size, eps=config.layer_norm_eps)
            self.attention = EmoticAttention(config, size, config.num_attention_heads)
        else:
            self.gates = nn.ModuleDict({name: nn.Linear(2 * size, size) for name in self.names})

    def tokens(self, name: str, values, present, like: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """`(B, T, hidden_size)`: the modality's projected features where present, its missing token elsewhere."""
        batch, frames = like.shape[:2]
        keep = torch.zeros(batch, frames, dtype=torch.bool, device=like.device) if values is None else \
            torch.ones(batch, frames, dtype=torch.bool, device=like.device) if present is None else \
            present.to(device=like.device).bool()
        if self.training and self.dropout > 0:  # modality dropout: the whole window without it
            keep = keep & (torch.rand(batch, 1, device=like.device) >= self.dropout)
        missing = self.missing_tokens[self.names.index(name)].to(like.dtype).expand(batch, frames, -1)
        if values is None:
            return missing + positions
        projected = self.projections[name](self.norms[name](values.to(like.dtype)))
        return torch.where(keep[..., None], projected, missing) + positions

    def forward(self, hidden_states: torch.Tensor, modalities: dict, positions: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`modalities`: name -> (values or None, present or None); `attention_mask`: the additive padding mask over
        the window's frames `(B, 1, 1, T)`, repeated for each modality's tokens."""
        tokens = [self.tokens(name, *modalities.get(name, (None, None)), hidden_states, positions)
                  for name in self.names]
        if self.fusion == "gated_sum":
            for name, token in zip(self.names, tokens):
                gate = torch.sigmoid(self.gates[name](torch.cat([hidden_states, token], dim=-1)))
                hidden_states = hidden_states + gate * token
            return hidden_states
        mask = None if attention_mask is None else attention_mask.repeat(1, 1, 1, len(tokens))
        attended, _ = self.attention(self.norm_query(hidden_states), context=self.norm_context(torch.cat(tokens, 1)),
                                     attention_mask=mask)
        return hidden_states + attended


class EmoticTemporalPreTrainedModel(PreTrainedModel):
    config_class = EmoticTemporalConfig
    base_model_prefix = "temporal"
    main_input_name = "features"
    _input_embed_layer = "projection"  # get_input_embeddings(): the first layer on the features (PEFT hooks it)
    supports_gradient_checkpointing = True
    _no_split_modules = ["EmoticLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True
    # its blocks are the encoder's, in `layers`: the encoder's recorders capture their outputs and attention weights
    _can_record_outputs = EmoticPreTrainedModel._can_record_outputs

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, EmoticTemporalModel):
            init.normal_(module.position_embeddings, std=self.config.initializer_range)
            init.zeros_(module.classifier.weight)  # the temporal path adds nothing until trained
            init.zeros_(module.classifier.bias)
        if isinstance(module, EmoticModalityFusion):
            init.normal_(module.missing_tokens, std=self.config.initializer_range)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:  # both Auto classes in `auto_map`, for users loading it as remote code
            self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)


class EmoticTemporalModel(EmoticTemporalPreTrainedModel):
    """Per-frame predictions from a window of frame features, as the frame model's plus what the frames around add:

        logits = frame_head(features) + classifier(Transformer(projection(LayerNorm(features)) + positions))

    `frame_head` is a linear layer on each frame's own features, the frame model's head (`emotic finetune-temporal`
    copies its `classifier` in and keeps it fixed: `config.frozen_frame_head`); the temporal path is LayerNorm, a
    temporal convolution over `kernel_size` frames to `hidden_size` (`projection`), learned position embeddings,
    `num_hidden_layers` pre-norm Transformer blocks attending over the window, a final LayerNorm and a linear
    `classifier` that starts at zero, so that training starts from the frame model's predictions and learns what time
    adds. (Measured on generated videos: without the frame head the model must re-learn the frame classifier and lost
    to its frame model; without the convolution it did not learn to take a hidden frame's neighbours.) The outputs are
    the frame model's: 8 expression logits, 12 action-unit logits, valence-arousal (bounded by `regression_range`), or
    a multi-task head's."""

    def __init__(self, config: EmoticTemporalConfig):
        super().__init__(config)
        self.feature_norm = nn.LayerNorm(config.feature_size, eps=config.layer_norm_eps)
        # a temporal convolution: each frame's projection sees its `kernel_size` nearest frames (padding: zeros)
        self.projection = nn.Conv1d(config.feature_size, config.hidden_size, config.kernel_size,
                                    padding=config.kernel_size // 2)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.window_size, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList([EmoticLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.frame_head = nn.Linear(config.feature_size, config.num_labels)
        self.fusion = EmoticModalityFusion(config) if len(config.modalities) > 1 else None
        self.post_init()

    @property
    def loss_function(self):
        return emotic_loss

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        audio_present: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        text_present: torch.Tensor | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        r"""
        features (`torch.FloatTensor` of shape `(batch_size, frames, feature_size)`):
            Consecutive frames' features (at most `config.window_size` frames), as `emotic features` writes them.
        attention_mask (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*):
            1 for real frames, 0 for padding (a window of a video shorter than the others in the batch): padding is
            attended to by no frame and left out of the loss.
        labels (*optional*): per frame, what the frame model's labels are per image: `(batch_size, frames)` class
            indices for expressions (negative: not annotated), `(batch_size, frames, num_labels)` values for action
            units and valence-arousal (NaN or, for units, negative: not annotated), `(batch_size, frames, 15)` for
            ABAW7's multi-task head.
        audio, text (`torch.FloatTensor` of shape `(batch_size, frames, audio_size or text_size)`, *optional*):
            per frame, the audio (text) features, for a head whose `config.modalities` takes them; not given: the
            modality's missing token on every frame (the head degrades to what it learned without it).
        audio_present, text_present (`torch.BoolTensor` of shape `(batch_size, frames)`, *optional*): False where
            the frame has no audio (nobody speaks): the missing token there. Default: present wherever given.

        Returns a `TokenClassifierOutput`: `logits` `(batch_size, frames, num_labels)` (valence-arousal bounded by
        `regression_range`); `output_hidden_states` / `output_attentions` capture each block's output and weights.
        """
        check_features(features, self.config)
        modalities = {"audio": (audio, audio_present), "text": (text, text_present)}
        for name, (values, present) in modalities.items():
            check_modality(values, present, name, getattr(self.config, f"{name}_size")
                           if name in self.config.modalities else None, features)
        dtype = self.projection.weight.dtype
        frames = features.shape[1]
        features = features.to(dtype)
        normed = self.feature_norm(features)
        additive = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != tuple(features.shape[:2]):
                raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)}; expected "
                                 f"{tuple(features.shape[:2])}, one value per frame of features")
            keep = attention_mask.to(device=features.device).bool()
            normed = normed * keep[..., None]  # padding enters the convolution as zeros, as beyond the ends
            additive = torch.zeros(keep.shape, dtype=normed.dtype, device=normed.device)
            additive = additive.masked_fill(~keep, torch.finfo(normed.dtype).min)[:, None, None, :]
        hidden_states = self.projection(normed.transpose(1, 2)).transpose(1, 2)  # [B, T, hidden_size]
        positions = self.position_embeddings[:, :frames]
        hidden_states = self.dropout(hidden_states + positions)
        if self.fusion is not None:
            hidden_states = self.fusion(hidden_states, modalities, positions, additive)
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states, attention_mask=additive)
        logits = bound_outputs(self.frame_head(features) + self.classifier(self.layernorm(hidden_states)),
                               self.config)

        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if tuple(labels.shape[:2]) != tuple(logits.shape[:2]):
                raise ValueError(f"labels of shape {tuple(labels.shape)}; expected one label (or row of values) per "
                                 f"frame of features, shape {tuple(logits.shape[:2])}[, values]")
            valid = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device) if attention_mask is None \
                else attention_mask.to(logits.device).bool()
            loss = self.loss_function(labels[valid], logits[valid], self.config)
        return TokenClassifierOutput(loss=loss, logits=logits)

    @torch.inference_mode()
    def video_logits(self, features, stride: int | None = None, batch_size: int = 64, **modalities) -> torch.Tensor:
        """Per-frame logits `(frames, num_labels)` of a whole video's features `(frames, feature_size)`: windows of
        `window_size` frames every `stride` (`config.window_stride`), the last one ending at the last frame; where
        windows overlap, a frame's logits are the mean of its windows'. A video shorter than a window runs as one.
        `modalities`: the video's `audio` `(frames, audio_size)`, `audio_present` `(frames,)` and the like for text,
        windowed alike."""
        features = torch.as_tensor(features)
        if features.dim() != 2 or features.shape[0] == 0:
            raise ValueError(f"features of shape {tuple(features.shape)}; expected (frames, "
                             f"{self.config.feature_size}) with at least one frame: one video's features")
        stride = stride or self.config.window_stride
        if not 1 <= stride <= self.config.window_size:
            raise ValueError(f"stride={stride}; allowed: 1..{self.config.window_size} (config.window_size)")
        length = features.shape[0]
        window = min(self.config.window_size, length)
        starts = window_starts(length, window, stride)
        features = features.to(device=self.device, dtype=torch.float32)
        modalities = {name: torch.as_tensor(values).to(self.device) for name, values in modalities.items()
                      if values is not None}
        for name, values in modalities.items():
            if values.shape[0] != length:
                raise ValueError(f"{name} of {values.shape[0]} frames for a video of {length} frames of features; "
                                 f"expected one row per frame")
        total = torch.zeros(length, self.config.num_labels, device=self.device)
        counts = torch.zeros(length, 1, device=self.device)
        for first in range(0, len(starts), batch_size):
            chunk = starts[first:first + batch_size]
            windows = torch.stack([features[start:start + window] for start in chunk])
            extra = {name: torch.stack([values[start:start + window] for start in chunk])
                     for name, values in modalities.items()}
            logits = self(windows, **extra).logits.float()
            for start, values in zip(chunk, logits):
                total[start:start + window] += values
                counts[start:start + window] += 1
        return total / counts


__all__ = ["EmoticModalityFusion", "EmoticTemporalModel", "EmoticTemporalPreTrainedModel", "window_starts"]
