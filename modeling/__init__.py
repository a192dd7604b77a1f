"""emotic.modeling: the configs, the frame models, the temporal head and the checkpoint converter."""

from .configuration_emotic import ABAW_EXPRESSION_LABELS, EmoticConfig
from .configuration_emotic_temporal import EmoticTemporalConfig
from .modeling_emotic import (
    EmoticForImageClassification,
    EmoticForPreTraining,
    EmoticModel,
    EmoticPreTrainedModel,
)
from .modeling_emotic_temporal import EmoticTemporalModel

__all__ = [
    "ABAW_EXPRESSION_LABELS",
    "EmoticConfig",
    "EmoticForImageClassification",
    "EmoticForPreTraining",
    "EmoticModel",
    "EmoticPreTrainedModel",
    "EmoticTemporalConfig",
    "EmoticTemporalModel",
]
