"""EmoticConfig: MAE-Face defaults, ABAW labels, validation that names what is allowed, JSON round trip."""

import pytest

from emotic import ABAW_EXPRESSION_LABELS, EmoticConfig


def test_defaults_are_mae_face_vit_b16_with_the_eight_abaw_expressions():
    config = EmoticConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert (config.intermediate_size, config.patch_size, config.image_size) == (3072, 16, 224)
    assert config.layer_norm_eps == 1e-6 and config.drop_path_rate == 0.1 and config.pooling == "avg"
    assert (config.decoder_hidden_size, config.decoder_num_hidden_layers, config.decoder_num_attention_heads) == (
        512, 8, 16)
    assert config.mask_ratio == 0.75 and config.norm_pix_loss is True
    assert config.fusion_layer == 4 and config.share_encoder is True
    assert [config.id2label[i] for i in range(8)] == [
        "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"]
    assert config.label2id["Other"] == 7 and ABAW_EXPRESSION_LABELS[0] == "Neutral"


def test_caller_labels_replace_the_abaw_default():
    assert EmoticConfig(num_labels=3).num_labels == 3
    config = EmoticConfig(id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    assert config.num_labels == 2 and config.id2label[1] == "pos"


def test_fusion_layer_defaults_to_a_third_of_the_depth():
    assert EmoticConfig(num_hidden_layers=6).fusion_layer == 2


@pytest.mark.parametrize(
    "overrides, allowed",
    [
        (dict(num_attention_heads=5), "must divide hidden_size=768"),
        (dict(fusion_layer=13), "allowed: integers 0..12"),
        (dict(fusion_layer=-1), "allowed: integers 0..12"),
        (dict(fusion_strategy="updown"), "allowed: ['none', 'mean', 'concat', 'concat_linear', 'attention']"),
        (dict(pooling="max"), "allowed: ['avg', 'cls']"),
        (dict(smoothing_mode="median"), "allowed: ['mean', 'gaussian', 'mode']"),
        (dict(smoothing_window=4), "smoothing_window=4; allowed: an odd integer >= 1"),
        (dict(smoothing_window=True), "smoothing_window=True; allowed: an odd integer >= 1"),
        (dict(patch_size=15), "must divide image_size=224"),
        (dict(mask_ratio=1.0), "0 <= mask_ratio < 1"),
        (dict(class_weights=[1.0, 2.0]), "expected 8 non-negative numbers"),
        (dict(hidden_size=0), "hidden_size=0 must be a positive integer"),
    ],
)
def test_invalid_values_raise_value_error_naming_what_is_allowed(overrides, allowed):
    with pytest.raises(ValueError, match="EmoticConfig") as error:
        EmoticConfig(**overrides)
    assert allowed in str(error.value)


def test_json_round_trip_keeps_every_field(tmp_path, tiny_config):
    config = tiny_config(fusion_strategy="concat", fusion_layer=2, smoothing_window=9, smoothing_mode="gaussian",
                         class_weights=[1.0] * 8, label_smoothing=0.1, share_encoder=False)
    config.save_pretrained(tmp_path)
    loaded = EmoticConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.id2label == config.id2label and isinstance(next(iter(loaded.id2label)), int)


def test_docstring_example_runs():
    from emotic import EmoticForImageClassification

    config = EmoticConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                          image_size=32, patch_size=8, fusion_layer=1)
    assert EmoticForImageClassification(config).config.id2label[4] == "Happiness"
