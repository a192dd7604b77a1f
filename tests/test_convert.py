"""The MAE-Face converter: parity with timm and transformers implementations, reporting, and bad checkpoints."""

import argparse
import functools
import subprocess
import sys

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from transformers import AutoModelForImageClassification, ViTMAEConfig, ViTMAEForPreTraining

from emotic import EmoticForImageClassification, EmoticForPreTraining
from emotic.modeling.convert_mae_face import convert, main


def timm_vit(embed_dim=32, depth=2, num_heads=4, img_size=32, patch_size=8, num_classes=8, seed=0):
    """timm's ViT as MAE-Face builds it: global average pooling with fc_norm, LayerNorm eps 1e-6."""
    torch.manual_seed(seed)
    model = VisionTransformer(
        img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        mlp_ratio=4, qkv_bias=True, global_pool="avg", num_classes=num_classes,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
    )
    with torch.no_grad():  # make every tensor matter: timm zero-inits the head and cls/pos tokens are small
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


def save_mae_face_checkpoint(model, path, **extra):
    """MAE-Face's release format: the state dict under "model", beside training entries."""
    torch.save({"model": model.state_dict(), **extra}, path)
    return path


def assert_same_features_and_logits(reference, converted, pixels):
    with torch.no_grad():
        reference_features = reference.forward_head(reference.forward_features(pixels), pre_logits=True)
        reference_logits = reference(pixels)
        output = converted.emotic(pixels)
        logits = converted(pixels).logits
    assert (reference_features - output.pooler_output).abs().max() <= 1e-5
    assert (reference_logits - logits).abs().max() <= 1e-5


def test_timm_checkpoint_in_mae_face_format_gives_the_same_features_and_logits(tmp_path):
    reference = timm_vit()
    checkpoint = save_mae_face_checkpoint(reference, tmp_path / "mae_face.pth", epoch=99,
                                          args=argparse.Namespace(model="vit_base_patch16"))
    assert main(["--checkpoint", str(checkpoint), "--output-dir", str(tmp_path / "out"), "--num-attention-heads",
                 "4", "--fusion-strategy", "none"]) == 0
    converted = AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
    assert converted.config.fusion_strategy == "none" and converted.config.layer_norm_eps == 1e-6
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert_same_features_and_logits(reference, converted, pixels)


def test_real_size_vit_b16_checkpoint_gives_the_same_features_and_logits(tmp_path):
    reference = timm_vit(embed_dim=768, depth=12, num_heads=12, img_size=224, patch_size=16)
    checkpoint = save_mae_face_checkpoint(reference, tmp_path / "mae_face_vit_base.pth")
    converted, report = convert(checkpoint, fusion_strategy="none")
    converted.eval()
    config = converted.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.patch_size, config.image_size) == (768, 12, 12, 3072, 16, 224)
    assert report.missing == [] and report.unused == {}
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    assert_same_features_and_logits(reference, converted, pixels)


def test_vit_mae_folder_converts_to_the_same_pretraining_loss(tmp_path):
    torch.manual_seed(0)
    config = ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                          image_size=32, patch_size=8, decoder_hidden_size=16, decoder_num_hidden_layers=2,
                          decoder_num_attention_heads=2, decoder_intermediate_size=32, mask_ratio=0.75,
                          norm_pix_loss=True)
    reference = ViTMAEForPreTraining(config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    reference.save_pretrained(tmp_path / "vit_mae")
    converted, report = convert(tmp_path / "vit_mae", task="pretraining")
    converted.eval()
    assert isinstance(converted, EmoticForPreTraining) and report.missing == [] and report.unused == {}
    assert converted.config.layer_norm_eps == config.layer_norm_eps  # ViTMAE's 1e-12 carried over
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, actual = reference(pixels, noise=noise), converted(pixels, noise=noise)
    assert (expected.loss - actual.loss).abs() <= 1e-5
    assert torch.equal(expected.mask, actual.mask)
    assert (expected.logits - actual.logits).abs().max() <= 1e-5


def test_mae_pretraining_checkpoint_with_decoder_and_optimizer_is_tolerated_and_reported(tmp_path):
    torch.manual_seed(0)
    source = EmoticForPreTraining(EmoticForPreTraining.config_class(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
        patch_size=8, decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=64))
    timm_names, _ = _emotic_pretraining_to_mae_names(source)
    optimizer = torch.optim.AdamW(source.parameters())
    checkpoint = tmp_path / "mae_pretrain.pth"
    torch.save({"model": timm_names, "optimizer": optimizer.state_dict(), "epoch": 799,
                "args": argparse.Namespace(mask_ratio=0.75)}, checkpoint)

    classifier, report = convert(checkpoint, num_attention_heads=4)
    assert isinstance(classifier, EmoticForImageClassification)
    assert {"optimizer", "epoch", "args", "decoder_embed.weight", "mask_token", "decoder_pos_embed",
            "decoder_blocks.0.attn.qkv.weight", "decoder_pred.bias"} <= set(report.unused)
    assert "MAE-Face's global pooling starts its fc_norm fresh" in report.unused["norm.weight"]
    assert "emotic.layernorm.weight" in report.missing and "classifier.weight" in report.missing
    assert "emotic.layers.1.attention.qkv.weight" not in report.missing

    pretraining, report = convert(checkpoint, task="pretraining", num_attention_heads=4,
                                  decoder_num_attention_heads=2)
    assert report.missing == [] and set(report.unused) == {"optimizer", "epoch", "args"}
    noise = torch.rand(2, 16)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (pretraining(pixels, noise=noise).loss - source.eval()(pixels, noise=noise).loss).abs() <= 1e-6


def _emotic_pretraining_to_mae_names(model):
    """Write an EmoticForPreTraining state dict in MAE's own naming (the inverse of the converter)."""
    renamed = {}
    for key, tensor in model.state_dict().items():
        key = (key.replace("emotic.embeddings.patch_embeddings.projection", "patch_embed.proj")
               .replace("emotic.embeddings.position_embeddings", "pos_embed")
               .replace("emotic.embeddings.cls_token", "cls_token")
               .replace("emotic.layers.", "blocks.").replace("decoder.decoder_layers.", "decoder_blocks.")
               .replace("emotic.layernorm", "norm").replace(".attention.", ".attn."))
        renamed[key.removeprefix("decoder.")] = tensor
    return renamed, model


def test_bare_state_dict_with_ddp_prefix_and_a_missing_tensor_is_reported_by_name(tmp_path):
    reference = timm_vit()
    state_dict = {f"module.{key}": value for key, value in reference.state_dict().items()}
    del state_dict["module.blocks.1.mlp.fc2.weight"]
    state_dict["module.blocks.0.ls1.gamma"] = torch.ones(32)  # LayerScale: not part of MAE-Face
    torch.save(state_dict, tmp_path / "bare.pth")
    model, report = convert(tmp_path / "bare.pth", num_attention_heads=4)
    assert report.missing == sorted(["emotic.layers.1.mlp.fc2.weight"] + [
        key for key in model.state_dict() if key.startswith("fusion.")])
    assert report.unused == {"blocks.0.ls1.gamma": "unknown key"}
    printed = report.format()
    assert "emotic.layers.1.mlp.fc2.weight" in printed and "blocks.0.ls1.gamma: unknown key" in printed


def test_head_for_another_label_set_is_reported_not_loaded(tmp_path):
    checkpoint = save_mae_face_checkpoint(timm_vit(num_classes=1000), tmp_path / "imagenet.pth")
    model, report = convert(checkpoint, num_attention_heads=4, fusion_strategy="none")
    assert model.config.num_labels == 8
    assert report.unused["head.weight"] == "a head with 1000 outputs; the model has 8 labels"
    assert report.missing == ["classifier.bias", "classifier.weight"]
    model, report = convert(checkpoint, num_labels=1000, num_attention_heads=4, fusion_strategy="none")
    assert "head.weight" not in report.unused and report.missing == []


def test_separate_aux_encoder_starts_from_the_same_weights(tmp_path):
    checkpoint = save_mae_face_checkpoint(timm_vit(depth=3), tmp_path / "ck.pth")
    model, report = convert(checkpoint, num_attention_heads=4, share_encoder=False, fusion_layer=2)
    assert not any(key.startswith("aux_") for key in report.missing)
    assert torch.equal(model.aux_layers[1].mlp.fc1.weight, model.emotic.layers[1].mlp.fc1.weight)
    assert torch.equal(model.aux_embeddings.cls_token, model.emotic.embeddings.cls_token)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "cannot be read as a torch state dict with weights_only=True"),
    (b"this is a text file, not a checkpoint\n", "cannot be read as a torch state dict with weights_only=True"),
])
def test_unreadable_checkpoints_are_clear_errors(tmp_path, content, message, capsys):
    path = tmp_path / "ck.pth"
    if content is not None:
        path.write_bytes(content)
    assert main(["--checkpoint", str(path), "--output-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error and str(path) in error


class NotAWeight:  # an arbitrary pickled class must not be executed
    pass


def test_checkpoint_with_arbitrary_objects_is_refused_by_weights_only_loading(tmp_path):
    torch.save({"model": {"cls_token": torch.zeros(1)}, "payload": NotAWeight()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"evil\.pth: cannot be read .* weights_only=True"):
        convert(tmp_path / "evil.pth")


def test_checkpoint_that_is_not_a_vit_names_what_is_missing(tmp_path):
    torch.save({"model": {"conv1.weight": torch.zeros(8, 3, 3, 3)}}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="the checkpoint has no 'cls_token'; expected a ViT in timm/MAE naming"):
        convert(tmp_path / "resnet.pth")


def test_command_line_entry_point_runs_as_a_module(tmp_path):
    checkpoint = save_mae_face_checkpoint(timm_vit(), tmp_path / "ck.pth")
    result = subprocess.run(
        [sys.executable, "-m", "emotic.modeling.convert_mae_face", "--checkpoint", str(checkpoint), "--output-dir",
         str(tmp_path / "out"), "--num-attention-heads", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded 32 tensors" in result.stdout and "fusion.self_attention.qkv.weight" in result.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "modeling_emotic.py").is_file()


def test_a_checkpoint_without_any_decoder_converts_for_pretraining_with_a_fresh_one(tmp_path):
    from emotic import EmoticConfig, EmoticModel

    encoder = EmoticModel(EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8))
    state = {"cls_token": encoder.embeddings.cls_token, "pos_embed": encoder.embeddings.position_embeddings,
             "patch_embed.proj.weight": encoder.embeddings.patch_embeddings.projection.weight,
             "patch_embed.proj.bias": encoder.embeddings.patch_embeddings.projection.bias}
    for i, layer in enumerate(encoder.layers):
        for part, module in (("norm1", layer.norm1), ("norm2", layer.norm2), ("attn.qkv", layer.attention.qkv),
                             ("attn.proj", layer.attention.proj), ("mlp.fc1", layer.mlp.fc1),
                             ("mlp.fc2", layer.mlp.fc2)):
            state[f"blocks.{i}.{part}.weight"], state[f"blocks.{i}.{part}.bias"] = module.weight, module.bias
    torch.save({"model": {k: v.detach().clone() for k, v in state.items()}}, tmp_path / "encoder.pth")
    model, report = convert(tmp_path / "encoder.pth", task="pretraining", num_attention_heads=2)
    assert any(key.startswith("decoder.") for key in report.missing)  # the decoder starts fresh, and says so
    assert torch.equal(model.emotic.layers[1].mlp.fc2.weight, encoder.layers[1].mlp.fc2.weight)
