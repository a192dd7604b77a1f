"""emotic: facial expression recognition with a MAE-Face encoder and dual-view attention fusion.

Importing `emotic` registers its classes with the transformers Auto classes, so `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining` and `AutoModelForImageClassification` load emotic folders without remote code, and
marks them for `save_pretrained` to copy their code and write `auto_map` (for `trust_remote_code=True` users).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForPreTraining

from emotic.modeling import (
    ABAW_EXPRESSION_LABELS,
    EmoticConfig,
    EmoticForImageClassification,
    EmoticForPreTraining,
    EmoticModel,
    EmoticPreTrainedModel,
)

__version__ = "0.1.0"

AutoConfig.register(EmoticConfig.model_type, EmoticConfig)
AutoModel.register(EmoticConfig, EmoticModel)
AutoModelForPreTraining.register(EmoticConfig, EmoticForPreTraining)
AutoModelForImageClassification.register(EmoticConfig, EmoticForImageClassification)

EmoticConfig.register_for_auto_class()
EmoticModel.register_for_auto_class("AutoModel")
EmoticForPreTraining.register_for_auto_class("AutoModelForPreTraining")
EmoticForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "ABAW_EXPRESSION_LABELS",
    "EmoticConfig",
    "EmoticForImageClassification",
    "EmoticForPreTraining",
    "EmoticModel",
    "EmoticPreTrainedModel",
]
