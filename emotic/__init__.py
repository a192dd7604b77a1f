"""emotic: facial expression recognition with a MAE-Face encoder and dual-view attention fusion.

Importing `emotic` registers its classes with the transformers Auto classes, so `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining`, `AutoModelForImageClassification` and `AutoImageProcessor` load emotic folders (and
`AutoConfig` / `AutoModel` the temporal head's, `EmoticTemporalModel`) without remote code, and marks them for
`save_pretrained` to copy their code and write `auto_map` (for users loading with `trust_remote_code=True` where
emotic is not installed).
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)

# the class itself: the top-level name is a placeholder that raises without torchvision, while pipeline() imports
# this one whatever is installed
from transformers.models.auto.video_processing_auto import AutoVideoProcessor

from emotic.modeling import (
    ABAW_EXPRESSION_LABELS,
    EmoticConfig,
    EmoticForImageClassification,
    EmoticForPreTraining,
    EmoticModel,
    EmoticPreTrainedModel,
    EmoticTemporalConfig,
    EmoticTemporalModel,
)
from emotic.processing import EmoticImageProcessor

__version__ = "0.1.0"

AutoConfig.register(EmoticConfig.model_type, EmoticConfig)
AutoModel.register(EmoticConfig, EmoticModel)
AutoModelForPreTraining.register(EmoticConfig, EmoticForPreTraining)
AutoModelForImageClassification.register(EmoticConfig, EmoticForImageClassification)
AutoConfig.register(EmoticTemporalConfig.model_type, EmoticTemporalConfig)
AutoModel.register(EmoticTemporalConfig, EmoticTemporalModel)
# One class for both backend keys: it needs neither torchvision nor transformers' backend machinery.
AutoImageProcessor.register(
    EmoticConfig, image_processor_classes={"pil": EmoticImageProcessor, "torchvision": EmoticImageProcessor}
)
# emotic has no video processor, and the installed package says so. Without this entry, `pipeline()` (which tries an
# `AutoVideoProcessor` for every vision model) derives `EmoticVideoProcessor` from the folder's `AutoImageProcessor`
# auto_map, finds no local code for it and asks "Do you wish to run the custom code? [y/N]". With an empty entry the
# local answer wins: no prompt, a plain "no video processor" that pipeline() passes over. Remote code is untouched.
AutoVideoProcessor.register(EmoticConfig, video_processor_classes={})

EmoticConfig.register_for_auto_class()
EmoticModel.register_for_auto_class("AutoModel")
EmoticForPreTraining.register_for_auto_class("AutoModelForPreTraining")
EmoticForImageClassification.register_for_auto_class("AutoModelForImageClassification")
EmoticImageProcessor.register_for_auto_class("AutoImageProcessor")
EmoticTemporalConfig.register_for_auto_class()
EmoticTemporalModel.register_for_auto_class("AutoModel")

__all__ = [
    "ABAW_EXPRESSION_LABELS",
    "EmoticConfig",
    "EmoticForImageClassification",
    "EmoticForPreTraining",
    "EmoticImageProcessor",
    "EmoticModel",
    "EmoticPreTrainedModel",
    "EmoticTemporalConfig",
    "EmoticTemporalModel",
]
