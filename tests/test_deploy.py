"""The paths the ecosystem walks with an emotic model: PEFT LoRA, dynamic int8 quantization, torch.export, ONNX
(dynamo exporter, checked in onnxruntime), bfloat16 weights on the processor's float32 output, flex attention,
big-model (meta device) construction, and output flags from the config."""

import json

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
import torch
from conftest import TINY
from PIL import Image
from transformers import AutoModelForImageClassification

from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor

STRATEGIES = ["none", "mean", "concat", "concat_linear", "attention"]


def model_of(strategy="attention", seed=0, **fields):
    torch.manual_seed(seed)
    return EmoticForImageClassification(EmoticConfig(**{**TINY, "fusion_strategy": strategy, "fusion_layer": 2,
                                                        **fields})).eval()


def real_photos():
    """Real faces shipped inside installed packages, as the processor's two views (face found by the detector)."""
    photos = [Image.fromarray(skimage.data.astronaut()),
              Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")]
    return EmoticImageProcessor(size=32)(photos + [photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                                                   for photo in photos], return_tensors="pt")


def test_lora_adapters_on_encoder_and_fusion_all_learn_and_the_merged_model_reloads(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = model_of("attention").train()
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "proj"],
                                                  modules_to_save=["classifier"]))
    adapters = {name: p for name, p in peft_model.named_parameters() if "lora_" in name}
    assert any("fusion.cross_attention.qkv" in name for name in adapters)  # the fusion's own projections too
    views = real_photos()
    labels = torch.tensor([4, 0, 4, 0])
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # LoRA's B starts at zero: A gets a gradient from the second step on
        optimizer.zero_grad()
        peft_model(**views, labels=labels).loss.backward()
        optimizer.step()
    silent = [name for name, p in adapters.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, f"adapters without a gradient: {silent}"

    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(**views).logits
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**views).logits, expected, rtol=1e-4, atol=1e-5)


def test_input_require_grads_reach_lora_under_gradient_checkpointing():
    from peft import LoraConfig, get_peft_model

    model = model_of("attention").train()
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()  # needs get_input_embeddings(): the patch embeddings
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["qkv"], init_lora_weights=False))
    peft_model(**real_photos(), labels=torch.tensor([1, 2, 3, 4])).loss.backward()
    grads = [p.grad for name, p in peft_model.named_parameters() if "lora_A" in name and "layers.0." in name]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_dynamic_int8_quantization_of_every_linear_layer_keeps_logits_within_5_percent(strategy):
    model = model_of(strategy, hidden_size=64, intermediate_size=128)
    views = real_photos()
    with torch.no_grad():
        reference = model(**views).logits
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        logits = quantized(**views).logits
    assert sum(isinstance(m, torch.nn.Linear) for m in quantized.modules()) == 0  # every Linear was replaced
    spread = (reference.max() - reference.min()).item()
    assert (logits - reference).abs().max().item() <= 0.05 * spread


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_torch_export_with_a_named_dynamic_batch(strategy):
    from torch.export import Dim, export

    model = model_of(strategy)
    batch = Dim("batch", min=1, max=64)
    example = (torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    program = export(model, example, dynamic_shapes=({0: batch}, {0: batch}), strict=False)
    for size in (1, 5):
        inputs = (torch.randn(size, 3, 32, 32), torch.randn(size, 3, 32, 32))
        with torch.no_grad():
            torch.testing.assert_close(program.module()(*inputs).logits, model(*inputs).logits, rtol=1e-4,
                                       atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_onnx_export_with_a_dynamic_batch_matches_pytorch_in_onnxruntime(strategy, tmp_path):
    import onnxruntime
    from torch.export import Dim

    model = model_of(strategy)
    batch = Dim("batch", min=1, max=64)
    example = (torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    torch.onnx.export(model, example, str(tmp_path / "model.onnx"), dynamo=True,
                      input_names=["pixel_values", "pixel_values_aux"], output_names=["logits"],
                      dynamic_shapes=({0: batch}, {0: batch}))
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for size in (1, 5):
        main, aux = torch.randn(size, 3, 32, 32), torch.randn(size, 3, 32, 32)
        (logits,) = session.run(["logits"], {"pixel_values": main.numpy(), "pixel_values_aux": aux.numpy()})
        with torch.no_grad():
            expected = model(main, aux).logits.numpy()
        assert logits.shape == expected.shape and np.abs(logits - expected).max() <= 1e-4


@pytest.mark.parametrize("strategy", ["none", "attention"])
def test_export_onnx_writes_a_graph_onnxruntime_runs_like_pytorch_and_never_overwrites(strategy, tmp_path, capsys):
    from emotic import EmoticImageProcessor
    from emotic.hub_cards import export_onnx

    model_of(strategy).save_pretrained(tmp_path / "model")
    EmoticImageProcessor(size=32).save_pretrained(tmp_path / "model")
    assert export_onnx.main([str(tmp_path / "model"), "--output_dir", str(tmp_path / "onnx")]) == 0
    assert "ONNX Runtime matches PyTorch" in capsys.readouterr().out
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()][0] == "pixel_values" and session.get_inputs()[0].shape[0] == "batch"
    views = export_onnx.parity_views(EmoticImageProcessor.from_pretrained(tmp_path / "onnx"), 3, 32)
    (logits,) = session.run(["logits"], {i.name: views[i.name] for i in session.get_inputs()})
    with torch.no_grad():
        expected = AutoModelForImageClassification.from_pretrained(tmp_path / "model")(
            **{k: torch.from_numpy(v) for k, v in views.items()}).logits.numpy()
    assert np.abs(logits - expected).max() <= 1e-4
    before = (tmp_path / "onnx" / "model.onnx").stat().st_mtime_ns
    assert export_onnx.main([str(tmp_path / "model"), "--output_dir", str(tmp_path / "onnx")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "onnx" / "model.onnx").stat().st_mtime_ns == before


def test_predict_with_the_onnxruntime_backend_writes_what_pytorch_does(tmp_path):
    """`emotic predict --backend onnxruntime` on an `export-onnx` folder: the same labels and, within ONNX Runtime's
    float tolerance, the same probabilities as PyTorch, over a video and loose images; the records name the backend;
    a model folder without a graph, or a dtype the graph cannot run, is refused by name."""
    import csv

    from emotic import EmoticImageProcessor
    from emotic.hub_cards import export_onnx
    from emotic.inference import predict, runtime
    from emotic.training.synthetic import synthetic_video, write_video

    model_of("attention").save_pretrained(tmp_path / "model")
    EmoticImageProcessor(size=32).save_pretrained(tmp_path / "model")
    assert export_onnx.main([str(tmp_path / "model"), "--output_dir", str(tmp_path / "onnx")]) == 0
    frames = [image for image, _, _ in synthetic_video(np.random.default_rng(0), 20, 64)]
    write_video(tmp_path / "clip.mp4", frames)
    for index in (0, 7):
        frames[index].save(tmp_path / f"face{index}.png")
    inputs = [str(tmp_path / "clip.mp4"), str(tmp_path / "face0.png"), str(tmp_path / "face7.png")]
    for backend, folder in (("pytorch", "model"), ("onnxruntime", "onnx")):
        assert predict.main([str(tmp_path / folder), *inputs, "--output_dir", str(tmp_path / backend), "--backend",
                             backend, "--geometry", "template", "--smoothing_window", "5", "--quiet"]) == 0
    for name in ("clip", "images"):
        rows = {}
        for backend in ("pytorch", "onnxruntime"):
            with open(tmp_path / backend / "frames" / f"{name}.csv", newline="") as handle:
                rows[backend] = list(csv.reader(handle))[1:]
        assert len(rows["pytorch"]) == len(rows["onnxruntime"]) > 0
        for ours, theirs in zip(rows["pytorch"], rows["onnxruntime"]):
            # location, frame, time, status, geometry, raw and smoothed label; then the probabilities
            assert ours[:7] == theirs[:7]
            assert np.abs(np.array(ours[7:], float) - np.array(theirs[7:], float)).max() <= 1e-4
    settings = json.loads((tmp_path / "onnxruntime" / "predict_settings.json").read_text())
    assert settings["precision"] == "float32 (onnxruntime)"
    with pytest.raises(SystemExit):
        predict.main([str(tmp_path / "model"), inputs[1], "--output_dir", str(tmp_path / "x"), "--backend",
                      "onnxruntime"])
    with pytest.raises(ValueError, match="has no model.onnx"):
        runtime.load_model(str(tmp_path / "model"), backend="onnxruntime")
    with pytest.raises(ValueError, match="leave --dtype, --quantize and --device at their defaults"):
        runtime.load_model(str(tmp_path / "onnx"), dtype="bfloat16", backend="onnxruntime")


def test_pipeline_takes_the_dtype_the_auto_rule_picks(tmp_path):
    """`pipeline(..., dtype=resolve_dtype("auto", "cpu"))`: the model in the dtype this machine's rule gives
    (bfloat16 where the CPU computes it natively and measures it faster than float32), scores of the usual form on
    a real photo."""
    from transformers import pipeline

    from emotic.inference.runtime import BFLOAT16_GAIN, cpu_bfloat16_speedup, cpu_computes_bfloat16, resolve_dtype

    model_of("attention").save_pretrained(tmp_path)
    EmoticImageProcessor(size=32).save_pretrained(tmp_path)
    dtype = resolve_dtype("auto", "cpu")
    faster = cpu_computes_bfloat16() and cpu_bfloat16_speedup() >= BFLOAT16_GAIN  # measured once, then kept
    assert dtype == (torch.bfloat16 if faster else torch.float32) and cpu_bfloat16_speedup() > 0
    classify = pipeline("image-classification", model=str(tmp_path), dtype=dtype, trust_remote_code=False)
    assert classify.model.dtype == dtype
    scores = classify(Image.fromarray(skimage.data.astronaut()), top_k=8)
    assert len(scores) == 8 and abs(sum(s["score"] for s in scores) - 1) < 1e-2


def test_a_bfloat16_model_takes_the_processors_float32_output(tmp_path):
    model_of("attention").save_pretrained(tmp_path)
    model = AutoModelForImageClassification.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    reference = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    views = real_photos()
    assert views["pixel_values"].dtype == torch.float32
    with torch.no_grad():
        logits = model(**views).logits
        expected = reference(**views).logits
    assert logits.dtype == torch.bfloat16
    spread = (expected.max() - expected.min()).item()
    assert (logits.float() - expected).abs().max().item() <= 0.05 * spread


@pytest.mark.parametrize("implementation", ["sdpa", "flex_attention"])
def test_attention_implementations_give_the_eager_logits(implementation, tmp_path):
    model_of("attention").save_pretrained(tmp_path)
    views = real_photos()
    logits = {}
    for name in ("eager", implementation):
        model = AutoModelForImageClassification.from_pretrained(tmp_path, attn_implementation=name).eval()
        assert model.config._attn_implementation == name
        with torch.no_grad():
            logits[name] = model(**views).logits
    torch.testing.assert_close(logits[implementation], logits["eager"], rtol=1e-4, atol=1e-5)


def test_a_model_builds_on_the_meta_device():
    with torch.device("meta"):
        model = EmoticForImageClassification(EmoticConfig(**{**TINY, "drop_path_rate": 0.1}))
    assert all(p.device.type == "meta" for p in model.parameters())
    assert [layer.drop_path_rate for layer in model.emotic.layers] == pytest.approx([0.0, 1 / 30, 2 / 30, 0.1])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_output_flags_saved_in_the_config_are_honoured(strategy, tmp_path):
    model_of(strategy).save_pretrained(tmp_path)
    model = AutoModelForImageClassification.from_pretrained(tmp_path, output_hidden_states=True,
                                                            output_attentions=True, attn_implementation="eager")
    outputs = model(**real_photos())
    fused = strategy != "none"
    assert len(outputs.hidden_states) == TINY["num_hidden_layers"] + 1 + fused
    assert len(outputs.attentions) == TINY["num_hidden_layers"]
    assert outputs.attentions[0].shape == (4, TINY["num_attention_heads"], 17, 17)
    if strategy in ("concat", "attention"):  # main queries over the auxiliary view's tokens
        assert outputs.fusion_attentions.shape == (4, TINY["num_attention_heads"], 17, 17)
    else:
        assert outputs.fusion_attentions is None
    if strategy == "attention":  # a cross-attention map: each main query's weights over aux tokens sum to 1
        torch.testing.assert_close(outputs.fusion_attentions.sum(-1), torch.ones(4, 4, 17))


@pytest.mark.parametrize("strategy", ["none", "attention"])
def test_torch_compile_captures_the_whole_forward_in_one_graph(strategy):
    model = model_of(strategy)
    views = real_photos()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break is an error
    with torch.no_grad():
        torch.testing.assert_close(compiled(**views).logits, model(**views).logits, rtol=1e-4, atol=1e-5)
