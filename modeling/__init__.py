"""emotic.modeling: the config, the models and the checkpoint converter."""

from .configuration_emotic import ABAW_EXPRESSION_LABELS, EmoticConfig
from .modeling_emotic import (
    EmoticForImageClassification,
    EmoticForPreTraining,
    EmoticModel,
    EmoticPreTrainedModel,
)

__all__ = [
    "ABAW_EXPRESSION_LABELS",
    "EmoticConfig",
    "EmoticForImageClassification",
    "EmoticForPreTraining",
    "EmoticModel",
    "EmoticPreTrainedModel",
]
