"""Saving and loading: round trips, encoder ↔ classifier cross-loading, Auto classes, and remote code."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)

from emotic import EmoticConfig, EmoticForImageClassification, EmoticForPreTraining, EmoticImageProcessor, EmoticModel


def images(batch=2, seed=0):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("strategy", ["none", "attention", "concat"])
def test_classifier_round_trip_gives_identical_logits(tmp_path, tiny_config, strategy):
    torch.manual_seed(0)
    model = EmoticForImageClassification(tiny_config(fusion_strategy=strategy, share_encoder=strategy != "concat"))
    model.eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is EmoticForImageClassification
    with torch.no_grad():
        assert torch.equal(model(images(), images(seed=1)).logits, loaded(images(), images(seed=1)).logits)


def test_pretraining_round_trip_gives_identical_loss(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = EmoticForPreTraining(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(loaded) is EmoticForPreTraining
    noise = torch.rand(2, 16)
    with torch.no_grad():
        assert torch.equal(model(images(), noise=noise).loss, loaded(images(), noise=noise).loss)


def test_auto_classes_resolve_to_emotic_when_the_package_is_imported(tmp_path, tiny_config):
    EmoticForImageClassification(tiny_config()).save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is EmoticConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is EmoticModel
    assert type(AutoModelForPreTraining.from_pretrained(tmp_path)) is EmoticForPreTraining


def test_saved_folder_carries_code_and_an_auto_map_with_all_four_auto_classes(tmp_path, tiny_config):
    EmoticForImageClassification(tiny_config()).save_pretrained(tmp_path)
    assert (tmp_path / "configuration_emotic.py").is_file() and (tmp_path / "modeling_emotic.py").is_file()
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_emotic.EmoticConfig",
        "AutoModel": "modeling_emotic.EmoticModel",
        "AutoModelForPreTraining": "modeling_emotic.EmoticForPreTraining",
        "AutoModelForImageClassification": "modeling_emotic.EmoticForImageClassification",
    }


@pytest.mark.parametrize("strategy, head", [
    ("none", {"classifier.weight", "classifier.bias"}),
    ("attention", None),  # the head is the classifier and the fusion block
])
def test_encoder_and_classifier_checkpoints_cross_load_reporting_only_the_head(tmp_path, tiny_config, strategy, head):
    torch.manual_seed(0)
    encoder = EmoticModel(tiny_config(fusion_strategy=strategy))
    encoder.save_pretrained(tmp_path / "encoder")
    classifier, info = AutoModelForImageClassification.from_pretrained(tmp_path / "encoder", output_loading_info=True)
    head = head or {key for key in classifier.state_dict() if key.startswith(("classifier.", "fusion."))}
    assert set(info["missing_keys"]) == head
    assert info["unexpected_keys"] == set() or not info["unexpected_keys"]
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(classifier.emotic.state_dict()[name], tensor), name

    classifier.save_pretrained(tmp_path / "classifier")
    reloaded, info = AutoModel.from_pretrained(tmp_path / "classifier", output_loading_info=True)
    assert set(info["unexpected_keys"]) == head and not info["missing_keys"]
    assert type(reloaded) is EmoticModel


def test_pipeline_loads_a_folder_without_asking_about_remote_code_when_emotic_is_installed(tmp_path, tiny_config,
                                                                                             monkeypatch):
    """pipeline() tries an AutoVideoProcessor for every vision model; from the folder's auto_map it derives an
    `EmoticVideoProcessor` reference. With emotic installed nothing may stop to ask "[y/N]" (a notebook would wait)."""
    import builtins

    from transformers import AutoVideoProcessor, pipeline

    EmoticForImageClassification(tiny_config()).save_pretrained(tmp_path)
    EmoticImageProcessor(size=32, geometry="template").save_pretrained(tmp_path)
    questions = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": questions.append(prompt) or "n")
    classify = pipeline("image-classification", model=str(tmp_path))  # no trust_remote_code argument
    assert questions == []
    assert type(classify.model) is EmoticForImageClassification and type(classify.image_processor) is \
        EmoticImageProcessor
    assert len(classify(torch.rand(3, 32, 32).numpy().transpose(1, 2, 0), top_k=2)) == 2
    with pytest.raises(ValueError, match="Could not load any video processor"):  # a plain answer, not a question
        AutoVideoProcessor.from_pretrained(tmp_path)
    assert questions == []


REMOTE_LOAD = textwrap.dedent("""
    import sys
    sys.modules["emotic"] = None  # emotic cannot be imported in this process
    try:
        import emotic  # noqa: F401
        raise SystemExit("emotic was importable")
    except ImportError:
        pass
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForPreTraining

    folder = sys.argv[1]
    inputs = torch.load(sys.argv[2], weights_only=True)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    encoder = AutoModel.from_pretrained(folder, trust_remote_code=True)
    pretraining = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True)
    for loaded in (config, model, encoder, pretraining):
        assert type(loaded).__module__.startswith("transformers_modules."), type(loaded).__module__
    with torch.no_grad():
        logits = model(inputs["main"], inputs["aux"]).logits
    torch.save(logits, sys.argv[3])
    print("remote classes:", type(model).__name__, type(encoder).__name__, type(pretraining).__name__)

    from transformers import AutoImageProcessor, pipeline
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
    image = (torch.rand(3, 64, 48) * 255).to(torch.uint8)
    views = processor(image, return_tensors="pt")
    torch.save({"image": image, **{k: views[k] for k in ("pixel_values", "pixel_values_aux")}}, sys.argv[4])
    classify = pipeline("image-classification", model=folder, trust_remote_code=True)
    result = classify([image.permute(1, 2, 0).numpy()] * 2, top_k=8, batch_size=2)
    assert len(result) == 2 and abs(sum(r["score"] for r in result[0]) - 1) < 1e-5
    print("remote pipeline labels:", sorted(r["label"] for r in result[0]))
""")


def test_saved_folder_loads_with_trust_remote_code_where_emotic_cannot_be_imported(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = EmoticForImageClassification(tiny_config(fusion_strategy="attention")).eval()
    processor = EmoticImageProcessor(size=32, geometry="template")
    folder = tmp_path / "remote-model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert {"image_processing_emotic.py", "face_geometry.py"} <= {path.name for path in folder.iterdir()}
    inputs = {"main": images(), "aux": images(seed=1)}
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_LOAD, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "logits.pt"),
         str(tmp_path / "views.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "EmoticForImageClassification EmoticModel EmoticForPreTraining" in result.stdout
    assert "remote pipeline labels: ['Anger', 'Disgust', 'Fear', 'Happiness'" in result.stdout
    with torch.no_grad():
        expected = model(inputs["main"], inputs["aux"]).logits
    assert torch.equal(torch.load(tmp_path / "logits.pt", weights_only=True), expected)
    remote_views = torch.load(tmp_path / "views.pt", weights_only=True)
    local_views = processor(remote_views["image"], return_tensors="pt")
    for key in ("pixel_values", "pixel_values_aux"):
        assert torch.equal(remote_views[key], local_views[key])


def test_weights_are_safetensors_with_the_documented_key_names(tmp_path, tiny_config):
    EmoticForImageClassification(tiny_config(fusion_strategy="none")).save_pretrained(tmp_path)
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert {"emotic.embeddings.cls_token", "emotic.embeddings.position_embeddings",
            "emotic.embeddings.patch_embeddings.projection.weight", "emotic.layers.0.attention.qkv.weight",
            "emotic.layers.3.mlp.fc2.bias", "emotic.layernorm.weight", "classifier.weight"} <= keys
