"""emotic.modeling: the configs, the frame models, the temporal head, the heads of every ABAW track they share and the
checkpoint converter."""

from .configuration_emotic import EmoticConfig
from .configuration_emotic_temporal import EmoticTemporalConfig
from .heads_emotic import ABAW_EXPRESSION_LABELS
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
