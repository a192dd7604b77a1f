"""transformers' own common test suites on emotic's classes, written the way transformers' model test files are
(`tests/models/vit_mae/test_modeling_vit_mae.py` is the pattern): `ModelTesterMixin` for `EmoticModel` and
`EmoticForPreTraining` (fixed `noise`, so the determinism tests run) and for `EmoticForImageClassification` with
every fusion strategy and a shared and a separate auxiliary encoder (fusion models get `pixel_values_aux`, as the
image processor gives it);
`ConfigTester` for `EmoticConfig`; `ImageProcessingTestMixin` for `EmoticImageProcessor`.

The mixins come from the sdist of the installed transformers (`tests/conformance/transformers_tests.py` fetches it
once into a cache outside the repository); `make conformance` runs this file alone and prints the counts.

`ModelTesterMixin` and `ConfigTester` also run on the temporal head, `EmoticTemporalModel`, over windows of frame
features (with padded windows). Its `test_enable_input_require_grads_with_gradient_checkpointing` finds no
gradient at the input projection of a new model and passes over it: the temporal path's output layer starts at zero
(a new head predicts as its frame head), so that gradient appears from the first step on (`tests/test_temporal.py`
trains it).

Skipped here, each as a model inside transformers may skip it (ViT and ViTMAE skip the same):
- `test_inputs_embeds`, `test_inputs_embeds_matches_input_ids`: emotic takes images, not token embeddings;
- `test_resize_embeddings` (`test_resize_embeddings = False`): there is no vocabulary to resize.
"""

import sys
import unittest

import torch
from conformance.transformers_tests import ensure
from torch import nn

sys.path.insert(0, str(ensure()))

from transformers.models.auto import modeling_auto  # noqa: E402

from emotic import (  # noqa: E402
    EmoticConfig,
    EmoticForImageClassification,
    EmoticForPreTraining,
    EmoticImageProcessor,
    EmoticModel,
    EmoticTemporalConfig,
    EmoticTemporalModel,
)

# The mixins pick their inputs and labels by looking a class up in the Auto name tables (for models inside
# transformers, the tables list them). Without these entries the training, problem-type and mismatched-shape tests
# would `continue` past emotic's classes and check nothing.
modeling_auto.MODEL_MAPPING_NAMES.setdefault("emotic", "EmoticModel")
modeling_auto.MODEL_FOR_PRETRAINING_MAPPING_NAMES.setdefault("emotic", "EmoticForPreTraining")
modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.setdefault("emotic", "EmoticForImageClassification")
# the temporal head classifies every frame of a window, as a token classifier every token: listed there, the training
# tests give it per-frame labels (under the base-model names they would skip it)
modeling_auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES.setdefault("emotic_temporal", "EmoticTemporalModel")

from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING  # noqa: E402
from transformers_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_tests.test_image_processing_common import (  # noqa: E402
    ImageProcessingTester,
    ImageProcessingTestMixin,
)
from transformers_tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor  # noqa: E402


class EmoticModelTester:
    def __init__(self, parent, batch_size=13, image_size=32, patch_size=8, num_channels=3, hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, num_labels=3, mask_ratio=0.5,
                 fusion_strategy="attention", fusion_layer=1, share_encoder=True, with_aux_view=True,
                 with_noise=False):
        self.parent = parent
        self.is_training = True
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.num_labels = num_labels
        self.mask_ratio = mask_ratio
        self.fusion_strategy = fusion_strategy
        self.fusion_layer = fusion_layer
        self.share_encoder = share_encoder
        self.with_aux_view = with_aux_view
        self.with_noise = with_noise
        self.num_patches = (image_size // patch_size) ** 2
        # with noise, MAE masking keeps (1 - mask_ratio) of the patches, plus the CLS token
        kept = int(self.num_patches * (1 - mask_ratio)) if with_noise else self.num_patches
        self.seq_length = 1 + kept
        # hidden states: the embeddings, every block, and the fusion block's output when fusing
        self.expected_num_hidden_layers = num_hidden_layers + 1 + (fusion_strategy != "none" and not with_noise)

    def get_config(self):
        return EmoticConfig(
            image_size=self.image_size, patch_size=self.patch_size, num_channels=self.num_channels,
            hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, drop_path_rate=0.1,
            decoder_hidden_size=self.hidden_size, decoder_num_hidden_layers=self.num_hidden_layers,
            decoder_num_attention_heads=self.num_attention_heads, decoder_intermediate_size=self.intermediate_size,
            mask_ratio=self.mask_ratio, num_labels=self.num_labels, fusion_strategy=self.fusion_strategy,
            fusion_layer=self.fusion_layer, share_encoder=self.share_encoder,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.num_labels)
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        inputs = {"pixel_values": pixel_values}
        if self.with_aux_view:
            inputs["pixel_values_aux"] = floats_tensor(list(pixel_values.shape))
        if self.with_noise:  # fixes MAE's masking: the determinism and equivalence tests compare runs
            inputs["noise"] = floats_tensor([self.batch_size, self.num_patches])
        return config, inputs


class EmoticCommonTests(ModelTesterMixin):
    test_resize_embeddings = False  # images, no vocabulary (as ViT and ViTMAE)
    test_can_init_all_missing_weights_before_2023 = True  # run it: emotic's init covers every weight
    # inputs a model needs beside `main_input_name` (transformers' hook for them): the auxiliary view of fusion models
    additional_model_inputs = ["pixel_values_aux"]
    tester_kwargs = {}

    def setUp(self):
        self.model_tester = EmoticModelTester(self, **self.tester_kwargs)
        self.config_tester = ConfigTester(self, config_class=EmoticConfig, has_text_modality=False, hidden_size=37,
                                          num_attention_heads=1)

    @unittest.skip(reason="emotic takes images, not inputs_embeds (as ViT and ViTMAE)")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="emotic takes images, not input_ids or inputs_embeds (as ViT and ViTMAE)")
    def test_inputs_embeds_matches_input_ids(self):
        pass

    def test_model_get_set_embeddings(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            self.assertIs(model.get_input_embeddings(), model.base_model.embeddings.patch_embeddings)
            self.assertIsNone(model.get_output_embeddings())


class EmoticModelTest(EmoticCommonTests, unittest.TestCase):
    """The encoder and MAE pre-training, with fixed masking noise."""

    all_model_classes = (EmoticModel, EmoticForPreTraining)
    tester_kwargs = {"with_aux_view": False, "with_noise": True, "fusion_strategy": "none"}

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_pretraining_reconstructs_every_patch(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        outputs = EmoticForPreTraining(config).eval()(**inputs)
        tester = self.model_tester
        self.assertEqual(outputs.logits.shape, (tester.batch_size, tester.num_patches,
                                                tester.patch_size**2 * tester.num_channels))
        self.assertEqual(outputs.mask.sum().item(), tester.batch_size * (tester.num_patches - tester.seq_length + 1))


def classifier_test(name, **tester_kwargs):
    """A test class of `EmoticForImageClassification` in one configuration."""
    return type(name, (EmoticCommonTests, unittest.TestCase), {
        "all_model_classes": (EmoticForImageClassification,),
        "tester_kwargs": tester_kwargs,
        "__doc__": f"EmoticForImageClassification with {tester_kwargs}.",
    })


EmoticClassifierNoFusionTest = classifier_test("EmoticClassifierNoFusionTest", fusion_strategy="none",
                                               with_aux_view=False)
EmoticClassifierMeanTest = classifier_test("EmoticClassifierMeanTest", fusion_strategy="mean")
EmoticClassifierConcatTest = classifier_test("EmoticClassifierConcatTest", fusion_strategy="concat")
EmoticClassifierConcatLinearTest = classifier_test("EmoticClassifierConcatLinearTest", fusion_strategy="concat_linear")
EmoticClassifierAttentionTest = classifier_test("EmoticClassifierAttentionTest", fusion_strategy="attention")
EmoticClassifierAttentionSeparateEncoderTest = classifier_test(
    "EmoticClassifierAttentionSeparateEncoderTest", fusion_strategy="attention", share_encoder=False)
EmoticClassifierConcatSeparateEncoderTest = classifier_test(
    "EmoticClassifierConcatSeparateEncoderTest", fusion_strategy="concat", share_encoder=False)
EmoticClassifierMeanSeparateEncoderTest = classifier_test(
    "EmoticClassifierMeanSeparateEncoderTest", fusion_strategy="mean", share_encoder=False)


class EmoticTemporalModelTester:
    """The temporal head over windows of frame features: `features` `(batch_size, seq_length, feature_size)`."""

    def __init__(self, parent, batch_size=13, seq_length=7, feature_size=24, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=37, num_labels=3):
        self.parent = parent
        self.is_training = True
        self.batch_size, self.seq_length, self.feature_size = batch_size, seq_length, feature_size
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size, self.num_labels = (num_attention_heads, intermediate_size,
                                                                             num_labels)
        self.expected_num_hidden_layers = num_hidden_layers + 1  # the projected input, then every block

    def get_config(self):
        return EmoticTemporalConfig(
            feature_size=self.feature_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, window_size=16, window_stride=8,
            num_labels=self.num_labels)

    def prepare_config_and_inputs_for_common(self):
        features = floats_tensor([self.batch_size, self.seq_length, self.feature_size])
        mask = torch.ones(self.batch_size, self.seq_length, dtype=torch.long)
        mask[: self.batch_size // 2, -2:] = 0  # windows of shorter videos, padded
        return self.get_config(), {"features": features, "attention_mask": mask}


class EmoticTemporalModelTest(ModelTesterMixin, unittest.TestCase):
    """`EmoticTemporalModel`, the temporal head, as a model inside transformers is tested."""

    all_model_classes = (EmoticTemporalModel,)
    test_resize_embeddings = False  # frame features, no vocabulary
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = EmoticTemporalModelTester(self)
        self.config_tester = ConfigTester(self, config_class=EmoticTemporalConfig, has_text_modality=False,
                                          hidden_size=37, num_attention_heads=1)

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason="the temporal head takes frame features, not inputs_embeds")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="the temporal head takes frame features, not input_ids or inputs_embeds")
    def test_inputs_embeds_matches_input_ids(self):
        pass

    def test_model_get_set_embeddings(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = EmoticTemporalModel(config)
        self.assertIs(model.get_input_embeddings(), model.projection)  # the first layer on the features
        self.assertIsNone(model.get_output_embeddings())



class EmoticMultimodalTemporalModelTester(EmoticTemporalModelTester):
    """The temporal head taking audio as well (`modalities` vision and audio, cross-attention fusion): `audio`
    `(batch_size, seq_length, audio_size)` and `audio_present`, some frames without sound."""

    audio_size = 12

    def get_config(self):
        config = super().get_config()
        config.modalities, config.audio_size, config.modality_fusion = ["vision", "audio"], self.audio_size, \
            "cross_attention"
        return config

    def prepare_config_and_inputs_for_common(self):
        config, inputs = super().prepare_config_and_inputs_for_common()
        present = torch.ones(self.batch_size, self.seq_length, dtype=torch.bool)
        present[::3, :3] = False  # frames where nobody speaks: the missing-audio token
        return config, {**inputs, "audio": floats_tensor([self.batch_size, self.seq_length, self.audio_size]),
                        "audio_present": present}


class EmoticMultimodalTemporalModelTest(EmoticTemporalModelTest):
    """`EmoticTemporalModel` with audio fused in, as a model inside transformers is tested."""

    def setUp(self):
        super().setUp()
        self.model_tester = EmoticMultimodalTemporalModelTester(self)


class EmoticImageProcessingTester(ImageProcessingTester):
    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"height": 32, "width": 32})
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
        kwargs.setdefault("image_std", [0.5, 0.5, 0.5])
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("geometry", "template")  # random-noise test images: no face for a detector to find
        super().__init__(parent, **kwargs)

    def _get_image_processing_classes(self):
        # transformers finds a model's processor classes by the test file's folder name (`models/<type>/`); emotic's
        # are the ones `import emotic` registers with AutoImageProcessor
        return dict(IMAGE_PROCESSOR_MAPPING[EmoticConfig])


class EmoticImageProcessingTest(ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = EmoticImageProcessingTester

    def test_both_views_have_the_main_views_shape(self):
        processor = EmoticImageProcessor(**self.image_processor_dict)
        images = self.image_processor_tester.prepare_image_inputs(equal_resolution=False)
        encoding = processor(images, return_tensors="pt")
        self.assertEqual(encoding.pixel_values_aux.shape, encoding.pixel_values.shape)
        self.assertEqual(tuple(encoding.pixel_values.shape), (len(images), 3, 32, 32))
