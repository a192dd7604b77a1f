"""emotic: a MAE-Face ViT encoder, its MAE pre-training head and the dual-view fusion classifier.

Read top to bottom: outputs → embeddings → attention → MLP → layer → fusion → decoder → pre-trained model →
`EmoticModel` (encoder) → `EmoticForPreTraining` (MAE) → `EmoticForImageClassification` (dual view).

The heads' losses and outputs (every ABAW track's) are `heads_emotic`'s. This file is copied verbatim into Hub
repositories for `trust_remote_code`, so it imports only torch, transformers and its siblings `configuration_emotic`
and `heads_emotic`.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_emotic import EmoticConfig
from .heads_emotic import bound_outputs, emotic_loss

# `auto_map` entries written by `save_pretrained`, so every Auto class loads a saved folder with remote code.
AUTO_MAP = {
    "AutoConfig": "configuration_emotic.EmoticConfig",
    "AutoModel": "modeling_emotic.EmoticModel",
    "AutoModelForPreTraining": "modeling_emotic.EmoticForPreTraining",
    "AutoModelForImageClassification": "modeling_emotic.EmoticForImageClassification",
}


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class EmoticModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 1 + num_kept_patches, hidden_size)`):
        Tokens after the last block and the final LayerNorm (CLS first).
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        The pooled face feature (`config.pooling`: normalised mean of patch tokens, or the CLS token).
    mask (`torch.FloatTensor` of shape `(batch_size, num_patches)`, *optional*):
        With masking: 1 for removed patches, 0 for kept ones, in the original patch order.
    ids_restore (`torch.LongTensor` of shape `(batch_size, num_patches)`, *optional*):
        With masking: the permutation that puts the shuffled patches back in order.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        With `output_hidden_states=True` (argument or config): the embeddings and the output of every block,
        each `(batch_size, 1 + num_kept_patches, hidden_size)`.
    attentions (`tuple(torch.FloatTensor)`, *optional*):
        With `output_attentions=True` (argument or config) and eager attention: each block's attention weights,
        `(batch_size, num_heads, 1 + num_kept_patches, 1 + num_kept_patches)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class EmoticForPreTrainingOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`):
        Mean squared error of the reconstructed (optionally per-patch normalised) pixels, over masked patches only.
    logits (`torch.FloatTensor` of shape `(batch_size, num_patches, patch_size**2 * num_channels)`):
        Reconstructed pixel values of every patch.
    mask (`torch.FloatTensor` of shape `(batch_size, num_patches)`):
        1 for masked (reconstructed) patches, 0 for visible ones.
    ids_restore (`torch.LongTensor` of shape `(batch_size, num_patches)`):
        The permutation that puts the shuffled patches back in order.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        Encoder hidden states, as in [`EmoticModelOutput`].
    attentions (`tuple(torch.FloatTensor)`, *optional*):
        Encoder attention weights, as in [`EmoticModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class EmoticImageClassifierOutput(ImageClassifierOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        Classification loss, with `labels`.
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Class scores before softmax.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        With `output_hidden_states=True` (argument or config): the main view's stream, each
        `(batch_size, 1 + num_patches, hidden_size)`: after the embeddings, after each block and (with fusion) after
        the fusion block, `num_hidden_layers + 1` (+ 1 with fusion) in all.
    attentions (`tuple(torch.FloatTensor)`, *optional*):
        With `output_attentions=True` (argument or config) and eager attention: the main view's self-attention in
        each of the `num_hidden_layers` blocks, `(batch_size, num_heads, 1 + num_patches, 1 + num_patches)`.
    fusion_attentions (`torch.FloatTensor` of shape `(batch_size, num_heads, 1 + num_patches, 1 + num_aux_patches)`):
        With `output_attentions=True` and eager attention: how the fusion block's main-view queries attend over the
        auxiliary view's tokens (the cross-attention of `fusion_strategy="attention"`; the main-to-auxiliary part of
        the joint attention of `"concat"`). The model's own account of which facial regions it used; None for
        `"none"` and `"mean"`.
    """

    fusion_attentions: torch.FloatTensor | None = None


# ---------------------------------------------------------------------------------------------------------------
# Position embeddings and embeddings
# ---------------------------------------------------------------------------------------------------------------


def sincos_position_embeddings(embed_dim: int, grid_size: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table with a zero row for the CLS token: `(1 + grid_size**2, embed_dim)`."""
    if embed_dim % 4 != 0:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {embed_dim}")
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4))  # [D/4]
    coords = torch.arange(grid_size, dtype=torch.float64)
    grid_w, grid_h = torch.meshgrid(coords, coords, indexing="xy")  # each [G, G]; MAE puts the w grid first

    def encode(positions):  # [G*G] -> [G*G, D/2]
        angles = positions.flatten()[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([encode(grid_w), encode(grid_h)], dim=1)  # [G*G, D]
    return torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), table]).float()


def interpolate_position_embeddings(position_embeddings: torch.Tensor, grid_height: int, grid_width: int):
    """Resize a `(1, 1 + G*G, D)` table (CLS first) to a `grid_height × grid_width` patch grid (bicubic)."""
    num_positions = position_embeddings.shape[1] - 1
    if num_positions == grid_height * grid_width and grid_height == grid_width:
        return position_embeddings
    side = int(math.sqrt(num_positions))
    dim = position_embeddings.shape[-1]
    patch_table = position_embeddings[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, D, G, G]
    patch_table = F.interpolate(
        patch_table.float(), size=(grid_height, grid_width), mode="bicubic", align_corners=False
    ).to(position_embeddings.dtype)
    patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, grid_height * grid_width, dim)
    return torch.cat([position_embeddings[:, :1], patch_table], dim=1)


def check_pixel_values(pixel_values, num_channels: int, name: str = "pixel_values") -> None:
    """A `ValueError` naming the input unless it is a non-empty `(batch_size, num_channels, height, width)` tensor
    (an unbatched image or an empty batch would otherwise fail deep inside torch)."""
    if not torch.is_tensor(pixel_values):
        raise ValueError(f"{name} must be a torch.Tensor of shape (batch_size, {num_channels}, height, width); got "
                         f"a {type(pixel_values).__name__} (turn images into tensors with EmoticImageProcessor)")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != num_channels:
        hint = "; add a batch dimension with pixel_values[None]" if pixel_values.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (batch_size, {num_channels}, height, width); got "
                         f"{tuple(pixel_values.shape)}{hint}")
    if pixel_values.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (batch_size 0); expected at least one image")


class EmoticPatchEmbeddings(nn.Module):
    """Image to patch tokens with one strided convolution: `(B, C, H, W)` → `(B, H/p * W/p, D)`."""

    def __init__(self, config: EmoticConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.num_patches = (config.image_size // config.patch_size) ** 2
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # checked by `EmoticEmbeddings`, its caller
        height, width = pixel_values.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"pixel_values height and width must be multiples of patch_size={self.patch_size}; "
                f"got {height}x{width}"
            )
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # [B, N, D]


class EmoticEmbeddings(nn.Module):
    """CLS token + patch tokens + learned position embeddings (2-D sin-cos at init), with optional MAE masking."""

    def __init__(self, config: EmoticConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = EmoticPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, self.patch_embeddings.num_patches + 1, config.hidden_size)
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        pixel_values: torch.Tensor,
        mask_ratio: float = 0.0,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        check_pixel_values(pixel_values, self.config.num_channels)
        height, width = pixel_values.shape[-2:]
        patches = self.patch_embeddings(pixel_values)  # [B, N, D]
        if interpolate_pos_encoding:
            patch_size = self.config.patch_size
            position_embeddings = interpolate_position_embeddings(
                self.position_embeddings, height // patch_size, width // patch_size
            )
        else:
            if height != self.config.image_size or width != self.config.image_size:
                raise ValueError(
                    f"pixel_values are {height}x{width} but the model expects {self.config.image_size}x"
                    f"{self.config.image_size}; pass interpolate_pos_encoding=True to run at another resolution"
                )
            position_embeddings = self.position_embeddings
        patches = patches + position_embeddings[:, 1:]

        mask = ids_restore = None
        if mask_ratio > 0 or noise is not None:
            patches, mask, ids_restore = self.random_masking(patches, mask_ratio, noise)

        cls_tokens = (self.cls_token + position_embeddings[:, :1]).expand(patches.shape[0], -1, -1)
        embeddings = torch.cat([cls_tokens, patches], dim=1)  # [B, 1 + N_kept, D]
        return self.dropout(embeddings), mask, ids_restore

    @staticmethod
    def random_masking(patches: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None):
        """MAE's per-sample random masking: keep the patches with the smallest `noise`."""
        batch_size, num_patches, dim = patches.shape  # [B, N, D]
        len_keep = int(num_patches * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(batch_size, num_patches, device=patches.device)
        elif noise.shape != (batch_size, num_patches):
            raise ValueError(f"noise must have shape {(batch_size, num_patches)}; got {tuple(noise.shape)}")
        ids_shuffle = torch.argsort(noise.to(patches.device), dim=1)  # ascending: small noise is kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        kept = torch.gather(patches, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # [B, N_kept, D]
        mask = torch.ones(batch_size, num_patches, device=patches.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # [B, N]: 1 = removed
        return kept, mask, ids_restore


# ---------------------------------------------------------------------------------------------------------------
# Attention, MLP, layer
# ---------------------------------------------------------------------------------------------------------------


def as_weights_dtype(pixel_values, embeddings: nn.Module):
    """Images in the dtype of the patch projection (a bfloat16 model takes the processor's float32 output)."""
    if torch.is_tensor(pixel_values):
        return pixel_values.to(embeddings.patch_embeddings.projection.weight.dtype)
    return pixel_values  # refused with a message by the embeddings


def drop_path_rates(config: EmoticConfig) -> list[float]:
    """Stochastic depth rising linearly from 0 at the first block to `drop_path_rate` at the last (plain floats:
    no tensor is made, so a model can be built on the meta device)."""
    count = config.num_hidden_layers
    return [config.drop_path_rate * i / (count - 1) if count > 1 else 0.0 for i in range(count)]


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (timm's `drop_path`)."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * keep / keep_prob


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain softmax attention: `query/key/value` `(B, heads, T, head_dim)` → output `(B, T, heads, head_dim)`."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # [B, h, Tq, Tk]
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # [B, Tq, h, hd]
    return attn_output, attn_weights


class EmoticAttention(nn.Module):
    """Multi-head attention with one fused qkv projection (timm/MAE layout), SDPA by default, eager as fallback.

    With `context`, queries come from `hidden_states` and keys/values from `context` (cross attention) through the
    same projection, so a fusion block keeps the encoder's parameter layout.
    """

    def __init__(self, config: EmoticConfig, hidden_size: int, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False  # SDPA treats a module without this flag as causal
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.proj_dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, context: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(B, Tq, D)` queries (and keys/values from `context`, `(B, Tk, D)`, if given) → the attention output
        `(B, Tq, D)` and its weights `(B, heads, Tq, Tk)` (None where the attention function gives none, as SDPA).
        `attention_mask`, added to the scores: `(B, 1, 1, Tk)`, 0 for keys attended to and the dtype's minimum for
        padding (the temporal head's padded frames; images have none)."""
        batch_size, query_length, hidden_size = hidden_states.shape  # [B, Tq, D]
        if context is None:
            qkv = self.qkv(hidden_states)  # [B, T, 3D]
            query, key, value = qkv[..., :hidden_size], qkv[..., hidden_size:-hidden_size], qkv[..., -hidden_size:]
        else:
            # one call of the qkv module on queries and context together (so adapters and quantized layers see it),
            # then queries from the first Tq tokens, keys and values from the context's
            qkv = self.qkv(torch.cat([hidden_states, context], dim=1))  # [B, Tq + Tk, 3D]
            query = qkv[:, :query_length, :hidden_size]
            key = qkv[:, query_length:, hidden_size:-hidden_size]
            value = qkv[:, query_length:, -hidden_size:]

        def heads(states):  # [B, T, D] -> [B, h, T, hd]
            return states.reshape(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            heads(query),
            heads(key),
            heads(value),
            attention_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch_size, query_length, hidden_size)
        return self.proj_dropout(self.proj(attn_output)), attn_weights


class EmoticMLP(nn.Module):
    def __init__(self, config: EmoticConfig, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.activation(self.fc1(hidden_states)))))


class EmoticLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: `x + drop_path(attn(norm1(x)))`, then `x + drop_path(mlp(norm2(x)))`.

    `decoder=True` builds a block of the MAE decoder's width instead of the encoder's.
    """

    def __init__(self, config: EmoticConfig, drop_path_rate: float = 0.0, decoder: bool = False):
        super().__init__()
        if decoder:
            size, heads, inner = (config.decoder_hidden_size, config.decoder_num_attention_heads,
                                  config.decoder_intermediate_size)
        else:
            size, heads, inner = config.hidden_size, config.num_attention_heads, config.intermediate_size
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.attention = EmoticAttention(config, size, heads)
        self.norm2 = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.mlp = EmoticMLP(config, size, inner)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(B, T, D)` → the block's output `(B, T, D)` and its attention weights (or None)."""
        attention, attn_weights = self.attention(self.norm1(hidden_states), **kwargs)
        hidden_states = hidden_states + drop_path(attention, self.drop_path_rate, self.training)
        hidden_states = hidden_states + drop_path(
            self.mlp(self.norm2(hidden_states)), self.drop_path_rate, self.training
        )
        return hidden_states, attn_weights


# ---------------------------------------------------------------------------------------------------------------
# Fusion of the auxiliary view into the main stream
# ---------------------------------------------------------------------------------------------------------------


class EmoticFusion(GradientCheckpointingLayer):
    """Merges auxiliary-view tokens `aux` into main-view tokens `main` (both `(B, T, D)`), per `fusion_strategy`.

    - `mean`: `(main + aux) / 2`, token by token.
    - `concat`: one pre-norm transformer block over `main‖aux` (`(B, 2T, D)`); the main half is kept.
    - `concat_linear`: token-wise channel concatenation `[main, aux]` (`(B, T, 2D)`) projected back to `D`
      (a plain `nn.Linear`, the 1×1 convolution of the authors' earlier dual-view code); it starts as the identity
      on the main tokens (auxiliary half zero), so an untrained fusion leaves the main stream unchanged.
    - `attention` (Fusion Attention): main self-attention, then "local" attention of main queries over aux
      keys/values, then an MLP, each with a skip connection.
    """

    def __init__(self, config: EmoticConfig):
        super().__init__()
        self.strategy = config.fusion_strategy
        size = config.hidden_size
        if self.strategy == "concat":
            self.block = EmoticLayer(config)
        elif self.strategy == "concat_linear":
            # Linear(2D -> D), initialised as [I | 0] (EmoticForImageClassification._init_weights)
            self.projection = nn.Linear(2 * size, size)
        elif self.strategy == "attention":
            self.norm_self = nn.LayerNorm(size, eps=config.layer_norm_eps)
            self.self_attention = EmoticAttention(config, size, config.num_attention_heads)
            self.norm_query = nn.LayerNorm(size, eps=config.layer_norm_eps)
            self.norm_context = nn.LayerNorm(size, eps=config.layer_norm_eps)
            self.cross_attention = EmoticAttention(config, size, config.num_attention_heads)
            self.norm_mlp = nn.LayerNorm(size, eps=config.layer_norm_eps)
            self.mlp = EmoticMLP(config, size, config.intermediate_size)

    def forward(self, main: torch.Tensor, aux: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fused main tokens `(B, T, D)` and the map of main queries over auxiliary tokens `(B, heads, T, T_aux)`
        (None for `mean`, and where the attention function gives no weights)."""
        if self.strategy in ("mean", "concat_linear"):
            if main.shape != aux.shape:
                raise ValueError(
                    f"fusion_strategy={self.strategy!r} needs both views to give the same tokens; main "
                    f"{tuple(main.shape)} vs aux {tuple(aux.shape)} (give pixel_values_aux the size of pixel_values)"
                )
            if self.strategy == "mean":
                return (main + aux) / 2, None
            return self.projection(torch.cat([main, aux], dim=-1)), None  # [B, T, 2D] -> [B, T, D]
        tokens = main.shape[1]
        if self.strategy == "concat":
            joint, weights = self.block(torch.cat([main, aux], dim=1), **kwargs)  # [B, 2T, D]
            return joint[:, :tokens], None if weights is None else weights[:, :, :tokens, tokens:]
        attention, _ = self.self_attention(self.norm_self(main), **kwargs)
        main = main + attention
        attention, weights = self.cross_attention(self.norm_query(main), context=self.norm_context(aux), **kwargs)
        main = main + attention
        return main + self.mlp(self.norm_mlp(main)), weights


# ---------------------------------------------------------------------------------------------------------------
# MAE decoder
# ---------------------------------------------------------------------------------------------------------------


class EmoticDecoder(nn.Module):
    """MAE decoder: visible tokens + mask tokens, unshuffled, through light blocks, to pixels of every patch."""

    def __init__(self, config: EmoticConfig):
        super().__init__()
        num_patches = (config.image_size // config.patch_size) ** 2
        self.patch_size = config.patch_size
        self.decoder_embed = nn.Linear(config.hidden_size, config.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_hidden_size))
        # fixed sin-cos, as in MAE
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, config.decoder_hidden_size), requires_grad=False
        )
        self.decoder_layers = nn.ModuleList(
            [EmoticLayer(config, decoder=True) for _ in range(config.decoder_num_hidden_layers)]
        )
        self.decoder_norm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.decoder_hidden_size, config.patch_size**2 * config.num_channels)

    def forward(self, hidden_states: torch.Tensor, ids_restore: torch.Tensor, grid_size: tuple[int, int]):
        hidden_states = self.decoder_embed(hidden_states)  # [B, 1 + N_kept, Dd]
        batch_size, num_tokens, dim = hidden_states.shape
        mask_tokens = self.mask_token.expand(batch_size, ids_restore.shape[1] + 1 - num_tokens, -1)
        patches = torch.cat([hidden_states[:, 1:], mask_tokens], dim=1)  # [B, N, Dd], shuffled order
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))  # original order
        hidden_states = torch.cat([hidden_states[:, :1], patches], dim=1)  # [B, 1 + N, Dd]
        hidden_states = hidden_states + interpolate_position_embeddings(self.decoder_pos_embed, *grid_size)
        for layer in self.decoder_layers:
            hidden_states, _ = layer(hidden_states)
        return self.decoder_pred(self.decoder_norm(hidden_states))[:, 1:]  # [B, N, p*p*C]


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class EmoticPreTrainedModel(PreTrainedModel):
    config_class = EmoticConfig
    base_model_prefix = "emotic"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["EmoticEmbeddings", "EmoticLayer", "EmoticFusion"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _input_embed_layer = "patch_embeddings"  # get_input_embeddings(): PEFT's enable_input_require_grads hooks it
    # what `output_hidden_states` / `output_attentions` capture in the encoder (transformers' output capturing): the
    # encoder blocks' outputs and attention weights, never the MAE decoder's (`decoder_layers`) nor a separate
    # auxiliary encoder's (`aux_layers`)
    _can_record_outputs = {
        "hidden_states": OutputRecorder(EmoticLayer, index=0, layer_name="layers"),
        "attentions": OutputRecorder(EmoticLayer, index=1, layer_name="layers"),
    }

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)  # timm/MAE init of every projection
        elif isinstance(module, nn.Conv2d) and not getattr(module.weight, "_is_hf_initialized", False):
            # the patch projection initialised like a linear layer (MAE); a view loses the loaded-weight flag
            init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
        elif isinstance(module, EmoticEmbeddings):
            grid = int(math.sqrt(module.patch_embeddings.num_patches))
            init.copy_(module.position_embeddings, sincos_position_embeddings(self.config.hidden_size, grid)[None])
            init.normal_(module.cls_token, std=self.config.initializer_range)
        elif isinstance(module, EmoticDecoder):
            grid = int(math.sqrt(module.decoder_pos_embed.shape[1] - 1))
            init.copy_(
                module.decoder_pos_embed, sincos_position_embeddings(self.config.decoder_hidden_size, grid)[None]
            )
            init.normal_(module.mask_token, std=self.config.initializer_range)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # transformers writes only the saved class into `auto_map`; seed all four so every Auto class works
        # for users who load the saved folder or Hub repo as remote code.
        if self._auto_class is not None:
            self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter grouping (as `timm.models.VisionTransformer.group_matcher`): regexes over this model's
        parameter names. `stem`: the embeddings (of both views); `blocks`: encoder block `i` (and the auxiliary
        encoder's block `i`) as group `i`, the fusion block with block `fusion_layer`, the block after it;
        anything unmatched (final norm, head, MAE decoder, a fusion block after the last block) comes last.
        `coarse=True`: all blocks as one group.
        Layer-wise LR decay reads its layer ids from it (`layer_ids`; timm's `param_groups_layer_decay` agrees)."""
        prefix = "" if self is self.base_model else rf"{self.base_model_prefix}\."
        stem = rf"^{prefix}embeddings\.|^aux_embeddings\."
        if coarse:
            return {"stem": stem, "blocks": rf"^{prefix}layers\.|^aux_layers\.|^fusion\."}
        blocks = [(rf"^{prefix}layers\.(\d+)\.", None), (r"^aux_layers\.(\d+)\.", None)]
        if self.config.fusion_layer < self.config.num_hidden_layers:  # after the last block it goes with the head
            blocks.append((r"^fusion\.", (self.config.fusion_layer,)))
        return {"stem": stem, "blocks": blocks}

    def layer_ids(self) -> dict[str, int]:
        """Layer id of every parameter from `group_matcher`, as timm numbers them: 0 for the embeddings, `i + 1`
        for block `i` (and the fusion block before block `fusion_layer`), `num_hidden_layers + 1` for the rest."""
        matcher = self.group_matcher()

        def layer_id(name: str) -> int:
            if re.match(matcher["stem"], name):
                return 0
            for pattern, block in matcher["blocks"]:
                match = re.match(pattern, name)
                if match:
                    return int((match.groups() or block)[0]) + 1
            return self.config.num_hidden_layers + 1

        return {name: layer_id(name) for name, _ in self.named_parameters()}

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names that get no weight decay (timm/MAE): position embeddings and tokens."""
        return {name for name, _ in self.named_parameters() if name.endswith(("position_embeddings", "cls_token",
                                                                               "mask_token"))}


class EmoticModel(EmoticPreTrainedModel):
    """The MAE-Face ViT encoder. Masks patches only when asked (`mask_ratio` or `noise`)."""

    def __init__(self, config: EmoticConfig):
        super().__init__(config)
        self.embeddings = EmoticEmbeddings(config)
        self.layers = nn.ModuleList([EmoticLayer(config, rate) for rate in drop_path_rates(config)])
        # MAE's final `norm`; with `pooling="avg"` it normalises the mean patch token (MAE-Face's `fc_norm`).
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def pool(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(B, 1 + N, D)` tokens before the final norm → `(B, D)` face feature."""
        if self.config.pooling == "avg":
            return self.layernorm(hidden_states[:, 1:].mean(dim=1))
        return self.layernorm(hidden_states[:, 0])

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> EmoticModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Normalised images (cast to the weights' dtype).
        mask_ratio (`float`, *optional*):
            Share of patches to remove (MAE). Without it and without `noise`, nothing is masked.
        noise (`torch.FloatTensor` of shape `(batch_size, num_patches)`, *optional*):
            Per-patch scores deciding which patches are kept (the smallest); makes masking deterministic. Given
            alone, masks `config.mask_ratio` of the patches.
        interpolate_pos_encoding (`bool`, defaults to `False`):
            Resize the position embeddings to the input's patch grid (other resolutions).

        `output_hidden_states` and `output_attentions` (arguments, or the config's) fill `hidden_states` and
        `attentions`; `return_dict=False` returns a tuple.
        """
        if noise is not None and mask_ratio is None:
            mask_ratio = self.config.mask_ratio
        hidden_states, mask, ids_restore = self.embeddings(
            as_weights_dtype(pixel_values, self.embeddings), mask_ratio or 0.0, noise, interpolate_pos_encoding
        )
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states)
        return EmoticModelOutput(
            last_hidden_state=self.layernorm(hidden_states),
            pooler_output=self.pool(hidden_states),
            mask=mask,
            ids_restore=ids_restore,
        )


class EmoticForPreTraining(EmoticPreTrainedModel):
    """MAE pre-training (MAE-Face): mask `config.mask_ratio` of the patches, reconstruct their pixels."""

    _no_split_modules = ["EmoticEmbeddings", "EmoticLayer", "EmoticDecoder"]

    def __init__(self, config: EmoticConfig):
        super().__init__(config)
        self.emotic = EmoticModel(config)
        self.decoder = EmoticDecoder(config)
        self.post_init()

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(B, C, H, W)` → `(B, H/p * W/p, p*p*C)`, MAE's patch layout."""
        batch_size, channels, height, width = pixel_values.shape
        p = self.config.patch_size
        patches = pixel_values.reshape(batch_size, channels, height // p, p, width // p, p)
        return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch_size, (height // p) * (width // p), p * p * channels)

    def unpatchify(self, patches: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Inverse of `patchify`: `(B, N, p*p*C)` → `(B, C, H, W)`."""
        height, width = image_size or (self.config.image_size, self.config.image_size)
        p, channels = self.config.patch_size, self.config.num_channels
        batch_size = patches.shape[0]
        if patches.shape[1] != (height // p) * (width // p):
            raise ValueError(f"{patches.shape[1]} patches do not tile a {height}x{width} image with patch size {p}")
        images = patches.reshape(batch_size, height // p, width // p, p, p, channels)
        return images.permute(0, 5, 1, 3, 2, 4).reshape(batch_size, channels, height, width)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> EmoticForPreTrainingOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Normalised images.
        noise (`torch.FloatTensor` of shape `(batch_size, num_patches)`, *optional*):
            Fixes which patches are masked (the largest `mask_ratio` share), for reproducible losses.

        `output_hidden_states` / `output_attentions` return the encoder's, as in [`EmoticModel`].
        """
        outputs = self.emotic(
            pixel_values,
            mask_ratio=self.config.mask_ratio,
            noise=noise,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **kwargs,
        )
        grid = (pixel_values.shape[-2] // self.config.patch_size, pixel_values.shape[-1] // self.config.patch_size)
        logits = self.decoder(outputs.last_hidden_state, outputs.ids_restore, grid)  # [B, N, p*p*C]

        target = self.patchify(pixel_values)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((logits - target) ** 2).mean(dim=-1)  # [B, N]
        loss = (loss * outputs.mask).sum() / outputs.mask.sum()
        return EmoticForPreTrainingOutput(
            loss=loss, logits=logits, mask=outputs.mask, ids_restore=outputs.ids_restore,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions,
        )


class EmoticForImageClassification(EmoticPreTrainedModel):
    """Dual-view expression classifier: the auxiliary view (eyes, mouth, nose) is fused into the main view.

    Both views run blocks `[0, fusion_layer)` (one batch of 2B with a shared encoder), `EmoticFusion` merges the
    auxiliary tokens into the main tokens, and only the main stream runs the remaining blocks, so the cost is about
    `1 + fusion_layer / num_hidden_layers` of one view. With `fusion_strategy="none"` it is MAE-Face fine-tuning.
    """

    def __init__(self, config: EmoticConfig):
        super().__init__(config)
        self.emotic = EmoticModel(config)
        self.uses_aux_view = config.fusion_strategy != "none"
        if self.uses_aux_view:
            if not config.share_encoder:
                self.aux_embeddings = EmoticEmbeddings(config)
                rates = drop_path_rates(config)[: config.fusion_layer]
                self.aux_layers = nn.ModuleList([EmoticLayer(config, rate) for rate in rates])
            self.fusion = EmoticFusion(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if module is getattr(self, "classifier", None) and isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=2e-5)  # MAE fine-tuning's head init
            init.zeros_(module.bias)
        elif module is getattr(getattr(self, "fusion", None), "projection", None):
            # concat_linear: [I | 0], the main half through and the auxiliary half zero, so the fused model starts
            # as the `none` model
            weight = module.weight
            init.copy_(weight, torch.eye(weight.shape[0], weight.shape[1], dtype=weight.dtype, device=weight.device))
            init.zeros_(module.bias)

    @property
    def loss_function(self):
        return emotic_loss

    def _encode_both_views(self, pixel_values, pixel_values_aux, interpolate_pos_encoding, record: bool):
        """Blocks `[0, fusion_layer)` on both views: main and aux tokens, each `(B, 1 + N, D)`, and, with `record`,
        the main stream's states (after the embeddings and each block) and attention weights.

        A shared encoder runs both views as one batch of 2B; when states are recorded it runs them one after the
        other instead (the same results), so that every state returned is the very tensor the forward goes on
        with (gradients reach it)."""
        k = self.config.fusion_layer
        batch_size = pixel_values.shape[0]
        if self.config.share_encoder and not record:
            both, _, _ = self.emotic.embeddings(
                torch.cat([pixel_values, pixel_values_aux]), interpolate_pos_encoding=interpolate_pos_encoding
            )  # [2B, 1 + N, D]
            for layer in self.emotic.layers[:k]:
                both, _ = layer(both)
            return both[:batch_size], both[batch_size:], (), ()  # slices, not chunk: a symbolic batch exports
        aux_embeddings, aux_layers = ((self.emotic.embeddings, self.emotic.layers[:k]) if self.config.share_encoder
                                      else (self.aux_embeddings, self.aux_layers))
        main, _, _ = self.emotic.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        aux, _, _ = aux_embeddings(pixel_values_aux, interpolate_pos_encoding=interpolate_pos_encoding)
        main_states, main_attentions = [main], []
        for layer, aux_layer in zip(self.emotic.layers[:k], aux_layers):
            main, weights = layer(main)
            aux, _ = aux_layer(aux)
            main_states.append(main)
            main_attentions.append(weights)
        return main, aux, tuple(main_states), tuple(main_attentions)

    def _check_views(self, pixel_values, pixel_values_aux):
        check_pixel_values(pixel_values, self.config.num_channels)
        if pixel_values_aux is None:
            raise ValueError(
                f"EmoticForImageClassification with fusion_strategy={self.config.fusion_strategy!r} needs "
                f"pixel_values_aux, the auxiliary view (eyes, mouth, nose) that EmoticImageProcessor builds beside "
                f"pixel_values: `model(**processor(images, return_tensors='pt'))`"
            )
        if not torch.is_tensor(pixel_values_aux) or pixel_values_aux.shape != pixel_values.shape:
            check_pixel_values(pixel_values_aux, self.config.num_channels, "pixel_values_aux")
            raise ValueError(
                f"pixel_values_aux must have the shape of pixel_values {tuple(pixel_values.shape)}; "
                f"got {tuple(pixel_values_aux.shape)}"
            )

    def _fused_stream(self, pixel_values, pixel_values_aux, interpolate_pos_encoding, record: bool):
        """Both views through blocks `[0, fusion_layer)`, the fusion block, the main view through the rest: the
        final tokens `(B, 1 + N, D)` and, with `record`, the main stream's states, attention weights and the
        fusion block's attention map."""
        self._check_views(pixel_values, pixel_values_aux)
        pixel_values = as_weights_dtype(pixel_values, self.emotic.embeddings)
        main, aux, states, attentions = self._encode_both_views(
            pixel_values, pixel_values_aux.to(pixel_values.dtype), interpolate_pos_encoding, record
        )
        hidden_states, fusion_map = self.fusion(main, aux)
        states += (hidden_states,) if record else ()
        for layer in self.emotic.layers[self.config.fusion_layer:]:
            hidden_states, weights = layer(hidden_states)
            if record:
                states, attentions = states + (hidden_states,), attentions + (weights,)
        return hidden_states, states, attentions, fusion_map

    def forward_features(
        self, pixel_values: torch.Tensor, pixel_values_aux: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        """timm's `forward_features`: the tokens `(B, 1 + N, D)` after the last block, before pooling (whose final
        LayerNorm `forward_head` applies). Fusion models need `pixel_values_aux`."""
        if self.uses_aux_view:
            return self._fused_stream(pixel_values, pixel_values_aux, interpolate_pos_encoding, record=False)[0]
        check_pixel_values(pixel_values, self.config.num_channels)
        hidden_states, _, _ = self.emotic.embeddings(as_weights_dtype(pixel_values, self.emotic.embeddings),
                                                     interpolate_pos_encoding=interpolate_pos_encoding)
        for layer in self.emotic.layers:
            hidden_states, _ = layer(hidden_states)
        return hidden_states

    def forward_head(self, hidden_states: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """timm's `forward_head`: pool the tokens of `forward_features` (`config.pooling`, then the final LayerNorm)
        and classify; `pre_logits=True` returns the pooled `(B, D)` feature."""
        pooled = self.emotic.pool(hidden_states)
        return pooled if pre_logits else bound_outputs(self.classifier(pooled), self.config)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_values_aux: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> EmoticImageClassifierOutput:
        r"""
        Returns an `EmoticImageClassifierOutput`. `output_hidden_states` / `output_attentions` (arguments, or the
        config's) return the main view's stream: `hidden_states` after the embeddings, after each block and (with
        fusion) after the fusion block; `attentions`, the main view's self-attention in every block; and
        `fusion_attentions`, the fusion block's map of main queries over auxiliary tokens (eager attention).

        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            The main view: the whole face, normalised (cast to the weights' dtype).
        pixel_values_aux (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            The auxiliary view (key regions of the face), built from the same images by [`EmoticImageProcessor`],
            which returns it beside `pixel_values`. Required unless `fusion_strategy="none"` (then ignored).
        labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape
            `(batch_size, num_labels)`, *optional*):
            Expressions: class indices, negative values (Aff-Wild2's -1) ignored by the loss. Action units
            (`problem_type="multi_label_classification"`): 0/1 per label, negative or NaN ignored. Valence and
            arousal (`problem_type="regression"`): one value per output, NaN ignored. A multi-task head
            (`config.tasks`): each track's columns in order (ABAW7: valence, arousal, the expression index, the 12
            units; 15 values per frame), each track's unannotated values (NaN, an expression below 0) ignored.
        """
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None \
            else output_hidden_states
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        all_hidden_states, all_attentions, fusion_attentions = None, None, None
        if not self.uses_aux_view:
            outputs = self.emotic(
                pixel_values, interpolate_pos_encoding=interpolate_pos_encoding,
                output_hidden_states=output_hidden_states, output_attentions=output_attentions,
            )
            logits = bound_outputs(self.classifier(outputs.pooler_output), self.config)
            all_hidden_states, all_attentions = outputs.hidden_states, outputs.attentions
        else:
            hidden_states, states, attentions, fusion_map = self._fused_stream(
                pixel_values, pixel_values_aux, interpolate_pos_encoding,
                record=bool(output_hidden_states or output_attentions),
            )
            logits = self.forward_head(hidden_states)  # [B, num_labels]
            if output_hidden_states:
                all_hidden_states = states
                if not isinstance(output_hidden_states, bool):
                    # indices instead of a flag (as transformers' output capturing): only those states are kept
                    count = len(states)
                    selected = [output_hidden_states] if isinstance(output_hidden_states, int) \
                        else output_hidden_states
                    keep = {i % count for i in selected if -count <= i < count}
                    all_hidden_states = tuple(state if i in keep else None for i, state in enumerate(states))
            if output_attentions:  # as transformers' capture: weights only where the attention function gives them
                all_attentions = tuple(weights for weights in attentions if weights is not None)
                fusion_attentions = fusion_map

        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config, **kwargs)
        return EmoticImageClassifierOutput(loss=loss, logits=logits, hidden_states=all_hidden_states,
                                           attentions=all_attentions, fusion_attentions=fusion_attentions)


__all__ = [
    "EmoticPreTrainedModel",
    "EmoticModel",
    "EmoticForPreTraining",
    "EmoticForImageClassification",
]
