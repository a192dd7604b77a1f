"""emotic: facial expression recognition with a MAE-Face encoder and dual-view attention fusion.

Importing `emotic` registers its classes with the transformers Auto classes, so `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining`, `AutoModelForImageClassification` and `AutoImageProcessor` load emotic folders without
remote code, and marks them for `save_pretrained` to copy their code and write `auto_map` (for users loading with
`trust_remote_code=True` where emotic is not installed).
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)

from emotic.modeling import (
    ABAW_EXPRESSION_LABELS,
    EmoticConfig,
    EmoticForImageClassification,
    EmoticForPreTraining,
    EmoticModel,
    EmoticPreTrainedModel,
)
from emotic.processing import EmoticImageProcessor

__version__ = "0.1.0"

AutoConfig.register(EmoticConfig.model_type, EmoticConfig)
AutoModel.register(EmoticConfig, EmoticModel)
AutoModelForPreTraining.register(EmoticConfig, EmoticForPreTraining)
AutoModelForImageClassification.register(EmoticConfig, EmoticForImageClassification)
# One class for both backend keys: it needs neither torchvision nor transformers' backend machinery.
AutoImageProcessor.register(
    EmoticConfig, image_processor_classes={"pil": EmoticImageProcessor, "torchvision": EmoticImageProcessor}
)

EmoticConfig.register_for_auto_class()
EmoticModel.register_for_auto_class("AutoModel")
EmoticForPreTraining.register_for_auto_class("AutoModelForPreTraining")
EmoticForImageClassification.register_for_auto_class("AutoModelForImageClassification")
EmoticImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "ABAW_EXPRESSION_LABELS",
    "EmoticConfig",
    "EmoticForImageClassification",
    "EmoticForPreTraining",
    "EmoticImageProcessor",
    "EmoticModel",
    "EmoticPreTrainedModel",
]
