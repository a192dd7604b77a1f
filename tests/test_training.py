"""Pre-training and fine-tuning runs: learning, resume after SIGKILL, two processes, the saved folder."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import emotic_cli, free_port
from emotic.training.trainer import last_complete_checkpoint, layer_decay_parameter_groups
from emotic.training.synthetic import write_synthetic_affwild2

FAST = ["--model_size", "tiny", "--per_device_train_batch_size", "16", "--disable_tqdm", "true",
        "--learning_rate", "2e-3", "--drop_path_rate", "0.0", "--report_to", "none"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_affwild2(root, num_videos=10, frames_per_video=32, size=64, validation_videos=2, seed=3)
    return root


def run(args, timeout=600, env=None):
    return emotic_cli(*args, timeout=timeout, env={**os.environ, **env} if env else None)


def test_finetune_learns_and_leaves_a_folder_that_auto_classes_and_pipeline_load(synthetic, tmp_path):
    from emotic.training import finetune

    results = finetune.main(["--affwild2_root", str(synthetic), "--output_dir", str(tmp_path / "run"),
                             "--num_train_epochs", "4", *FAST])
    assert set(results) >= {"macro_f1", "accuracy", "per_class_f1", "confusion_matrix"}
    summary = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert summary["eval"]["macro_f1"] == results["macro_f1"]
    assert summary["model"]["fusion_strategy"] == "attention" and summary["model"]["class_weights"]
    assert set(summary["geometries"]["train"]) == {"template"}  # what the auxiliary views were built from
    assert str(tmp_path) not in json.dumps(summary)  # no local paths in what the card will read
    state = json.loads((sorted((tmp_path / "run").glob("checkpoint-*"))[-1] / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0]

    from transformers import AutoModelForImageClassification, pipeline

    model = AutoModelForImageClassification.from_pretrained(tmp_path / "run")
    assert model.config.fusion_strategy == "attention"
    saved = json.loads((tmp_path / "run" / "preprocessor_config.json").read_text())
    assert saved["geometry"] == "auto"  # trained on aligned frames (template), served on photos (detector)
    frame = next((synthetic / "cropped_aligned").glob("*/00003.jpg"))
    scores = pipeline("image-classification", model=str(tmp_path / "run"), trust_remote_code=False)(
        str(frame), top_k=8)
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-5


def test_lora_finetuning_trains_adapters_and_leaves_a_merged_model_and_the_adapter(synthetic, tmp_path):
    """`--lora_rank`: only the attention projections change in the encoder (merged back into them), the fusion block
    and the head train fully, far fewer parameters train, and the folder loads like any emotic model."""
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification, set_seed

    from emotic import EmoticForImageClassification
    from emotic.training import finetune
    from emotic.training.arguments import build_config

    finetune.main(["--affwild2_root", str(synthetic), "--output_dir", str(tmp_path / "run"), "--num_train_epochs", "2",
                   "--lora_rank", "4", "--class_weights", "false", *FAST])
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())["model"]
    assert record["lora_rank"] == 4 and record["parameters"]["trainable"] < record["parameters"]["total"] / 3
    adapter = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["modules_to_save"]) == {"classifier", "emotic.layernorm", "fusion"}
    assert any(key.endswith("lora_A.weight") for key in load_file(tmp_path / "run" / "adapter" /
                                                                  "adapter_model.safetensors"))

    merged = AutoModelForImageClassification.from_pretrained(tmp_path / "run").state_dict()
    assert not any("lora" in key or "base_layer" in key for key in merged)  # a plain emotic model
    set_seed(42)  # the run's default seed: the same random initial weights
    initial = EmoticForImageClassification(build_config("tiny", drop_path_rate=0.0)).state_dict()
    for block in range(4):
        prefix = f"emotic.layers.{block}."
        assert torch.equal(merged[prefix + "mlp.fc1.weight"], initial[prefix + "mlp.fc1.weight"])  # frozen
        assert not torch.equal(merged[prefix + "attention.qkv.weight"], initial[prefix + "attention.qkv.weight"])
    assert not torch.equal(merged["classifier.weight"], initial["classifier.weight"])
    assert not torch.equal(merged["fusion.mlp.fc1.weight"], initial["fusion.mlp.fc1.weight"])


@pytest.mark.minutes(6)
def test_finetune_on_generated_faces_reaches_macro_f1_0_9_and_lora_comes_within_0_05(tmp_path):
    """What fine-tuning must reach: a tiny dual-view model (the tiny encoder, 4 blocks of width 64, at 48 px: patch 8,
    36 tokens a view) learns the generated expressions well enough to score macro-F1 >= 0.9 on 48 held-out people,
    on a CPU in minutes. Frames are drawn at Aff-Wild2's 112 px: the main view is resized to 48 px while the auxiliary
    view crops the eyes and mouth from the full-resolution frame, which is what the dual view is for.

    Beside it, in a second process (one thread each), LoRA rank 8 from the same random start on the same data, seed
    and epochs (adapters on the encoder's attention; the fusion block and head trained fully), at the higher learning
    rate adapters want (5e-3; 2e-2 diverges): it must reach the same bar within 0.05 (macro-F1 >= 0.85) training
    under a third of the parameters. Measured here (seeds 42 and 1): full 0.929 and 0.942, LoRA 0.911 and 0.904; at the
    tiny preset's 64 px, which costs about 1.8x the compute, full 0.95 and LoRA 0.91."""
    from emotic.inference import evaluate
    from emotic.training import finetune

    data = tmp_path / "data"
    write_synthetic_affwild2(data, num_videos=240, frames_per_video=40, size=112, validation_videos=48, seed=0)
    recipe = [*FAST, "--affwild2_root", str(data), "--image_size", "48", "--num_train_epochs", "16",
              "--layer_decay", "0.9", "--per_device_train_batch_size", "32", "--save_strategy", "no",
              "--eval_strategy", "no"]  # later wins
    lora = subprocess.Popen([sys.executable, "-m", "emotic.cli", "finetune", *recipe, "--learning_rate", "5e-3",
                             "--lora_rank", "8", "--output_dir", str(tmp_path / "lora")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        results = finetune.main([*recipe, "--output_dir", str(tmp_path / "run"), "--dataloader_num_workers", "1"])
        assert results["num_frames"] > 1700  # the held-out videos' labelled frames with an image
        assert results["macro_f1"] >= 0.9, results["per_class_f1"]
        # the ABAW protocol on the same videos: every labelled frame, then sliding-window smoothing
        assert evaluate.main([str(tmp_path / "run"), str(data), "--output-dir", str(tmp_path / "report"),
                              "--geometry", "template", "--smoothing_windows", "1,3,5,9", "--quiet"]) == 0
        metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
        assert metrics["raw"]["macro_f1"] >= 0.9 and metrics["smoothed"]["macro_f1"] >= metrics["raw"]["macro_f1"]
        output = lora.communicate(timeout=1800)[0]
    finally:
        lora.kill()
    assert lora.returncode == 0, output[-3000:]
    record = json.loads((tmp_path / "lora" / "emotic_run.json").read_text())
    trained = {"full": json.loads((tmp_path / "run" / "emotic_run.json").read_text())["model"]["parameters"],
               "lora": record["model"]["parameters"]}
    print(f"macro-F1 on held-out people: full fine-tuning {results['macro_f1']:.4f} training "
          f"{trained['full']['trainable']:,} parameters, LoRA rank 8 {record['eval']['macro_f1']:.4f} training "
          f"{trained['lora']['trainable']:,} of {trained['lora']['total']:,}")
    assert trained["lora"]["trainable"] < trained["full"]["trainable"] / 3
    assert record["eval"]["macro_f1"] >= 0.9 - 0.05, record["eval"]["per_class_f1"]


# the VA, AU and multi-task tests' recipe: the tiny encoder at 48 px (36 patches a view), 8 epochs
AFFECT_RECIPE = [*FAST, "--image_size", "48", "--num_train_epochs", "8", "--per_device_train_batch_size", "32",
                 "--layer_decay", "0.9", "--save_strategy", "no", "--eval_strategy", "no"]


@pytest.fixture(scope="module")
def affect_data(tmp_path_factory):
    """Generated videos with their valence-arousal and action-unit annotations: 80 people, 32 frames each, drawn at
    Aff-Wild2's 112 px (the auxiliary view crops eyes and mouth from the full frame), 16 of them held out."""
    root = tmp_path_factory.mktemp("affect")
    write_synthetic_affwild2(root, num_videos=80, frames_per_video=32, size=112, validation_videos=16, seed=0)
    return root


@pytest.mark.minutes(1.5)
@pytest.mark.parametrize("task", ["va", "au"])
def test_finetune_on_generated_va_and_au_clearly_beats_a_constant_predictor(affect_data, tmp_path, task):
    """`--task va` (CCC loss, outputs in [-1, 1]) and `--task au` (BCE with per-AU pos_weight) learn what the drawn
    faces show in 8 epochs at 48 px: held-out VA score (mean CCC) above 0.5, where any constant predictor scores 0;
    mean AU F1 above that of predicting every unit present (the best constant for F1) by 0.15. Measured here: VA 0.71
    (CCC valence 0.67, arousal 0.75), AU 0.66 at 0.5 (0.72 at the tuned thresholds) against 0.30 for every unit
    present; at the tiny preset's 64 px, at about 1.6x the time, VA 0.76 and AU 0.69."""
    from transformers import AutoModelForImageClassification

    from emotic.training import finetune
    from emotic.training.metrics import action_unit_metrics, valence_arousal_metrics
    from emotic.training.affwild2 import affwild2_annotations, read_affwild2

    results = finetune.main(["--task", task, "--affwild2_root", str(affect_data), "--output_dir", str(tmp_path / "run"),
                             *AFFECT_RECIPE])
    held_out, _ = read_affwild2(affwild2_annotations(affect_data, task, "Validation_Set"),
                                affect_data / "cropped_aligned", task=task)
    labels = np.array(held_out["label"])
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "run")
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert record["track"] == task and record["eval"]["num_frames"] == len(labels) > 200
    if task == "va":
        constant = valence_arousal_metrics(np.tile(labels.mean(0), (len(labels), 1)), labels)["va_score"]
        print(f"VA: CCC valence {results['ccc_valence']:.3f}, arousal {results['ccc_arousal']:.3f}, "
              f"score {results['va_score']:.3f} (a constant predictor: {constant:.3f})")
        assert abs(constant) < 1e-12 and results["va_score"] > 0.5
        assert model.config.problem_type == "regression" and model.config.regression_range == [-1.0, 1.0]
        assert model.config.regression_loss == "ccc" and model.config.id2label == {0: "valence", 1: "arousal"}
    else:
        all_present = action_unit_metrics(np.ones_like(labels), labels)["au_score"]
        print(f"AU: mean F1 {results['au_score']:.3f} at 0.5, {results['tuned']['au_score']:.3f} at thresholds "
              f"chosen on the same frames (every unit present: {all_present:.3f})")
        assert results["au_score"] > all_present + 0.15
        assert model.config.problem_type == "multi_label_classification" and model.config.num_labels == 12
        assert model.config.label_thresholds == results["tuned"]["thresholds"]  # stored with the model
        assert len(model.config.pos_weight) == 12 and max(model.config.pos_weight) > 2  # rare units weigh more

    # the exported card's model-index carries the track's score, as the run measured it
    import yaml

    from emotic.hub_cards.export import export

    exported = export(tmp_path / "run", tmp_path / "export", repo_id=f"someone/emotic-{task}", include_metric=True)
    module = {"va": "abaw_valence_arousal.py", "au": "abaw_action_units.py"}[task]
    assert (exported / module).is_file() and not (exported / "abaw_expression.py").exists()
    card = (exported / "README.md").read_text()
    assert f'hf_hub_download("someone/emotic-{task}", "{module}")' in card
    (index,) = yaml.safe_load(card.split("---\n")[1])["model-index"]
    (result,) = index["results"]
    metrics = {m["name"]: (m["type"], m["value"]) for m in result["metrics"]}
    if task == "va":
        assert result["task"]["name"] == "Valence-arousal estimation"
        assert metrics["Mean CCC of valence and arousal (per frame)"] == ("ccc", round(results["va_score"], 4))
        assert "valence, arousal = model(**inputs).logits[0].tolist()" in card and "1 - CCC of each output" in card
    else:
        assert result["task"]["name"] == "Facial action unit detection"
        assert metrics["Mean F1 over the 12 action units (per frame, threshold 0.5)"] == (
            "f1", round(results["au_score"], 4))
        assert f"| AU12 | {results['per_au_f1']['AU12']:.4f} |" in card and "config.label_thresholds" in card


@pytest.mark.minutes(1.5)
def test_finetune_multitask_learns_every_track_on_partly_annotated_frames_and_predict_writes_abaw7s_file(
        affect_data, tmp_path):
    """`--task multitask` (ABAW7): one trunk, one head over valence-arousal, the expressions and the action units,
    trained on the generated multi-task files, where 15% of the frames lack one track. In 8 epochs at 48 px every
    track is learned, each scored over its annotated frames only (measured: VA 0.68, EXPR macro-F1 0.57, AU 0.65 at
    0.5, P_MTL 1.90; in two runs at 64 px VA 0.67-0.73, EXPR 0.53-0.60, AU 0.64-0.68, P_MTL 1.84-2.01); `emotic
    predict` then writes ABAW7's submission, one row per frame."""
    import csv

    import yaml
    from transformers import AutoModelForImageClassification

    from emotic.cli import main as emotic
    from emotic.hub_cards.export import export
    from emotic.training import finetune
    from emotic.training.metrics import action_unit_metrics
    from emotic.training.affwild2 import affwild2_annotations, read_multitask_annotations

    run = tmp_path / "run"
    results = finetune.main(["--task", "multitask", "--affwild2_root", str(affect_data), "--output_dir", str(run),
                             *AFFECT_RECIPE])
    held_out, report = read_multitask_annotations(affwild2_annotations(affect_data, "multitask", "Validation_Set"),
                                                  affect_data / "cropped_aligned")
    labels = np.array(held_out["label"])
    annotated = {"va": np.isfinite(labels[:, :2]).all(1).sum(), "expr": (labels[:, 2] >= 0).sum(),
                 "au": np.isfinite(labels[:, 3:]).all(1).sum()}
    assert min(annotated.values()) < len(labels)  # each track misses some frames the others have
    assert (results["va_frames"], results["expr_frames"], results["au_frames"]) == \
        (annotated["va"], annotated["expr"], annotated["au"])
    all_present = action_unit_metrics(np.ones((len(labels), 12)), labels[:, 3:])["au_score"]
    print(f"multi-task: P {results['mtl_score']:.3f} = VA {results['va_score']:.3f} + EXPR {results['expr_score']:.3f}"
          f" + AU {results['au_score']:.3f} (every unit present: {all_present:.3f})")
    assert results["va_score"] > 0.5 and results["expr_score"] > 0.4 and results["au_score"] > all_present + 0.15
    assert results["mtl_score"] == pytest.approx(results["va_score"] + results["expr_score"] + results["au_score"])
    model = AutoModelForImageClassification.from_pretrained(run)
    assert model.config.tasks == ["va", "expr", "au"] and model.config.num_labels == 22
    assert len(model.config.class_weights) == 8 and len(model.config.pos_weight) == 12
    assert model.config.label_thresholds == results["tuned"]["thresholds"]

    videos = sorted({video for video in held_out["video"]})[:2]
    assert emotic(["predict", str(run), *(str(affect_data / "cropped_aligned" / v) for v in videos),
                   "--output_dir", str(tmp_path / "predictions"), "--geometry", "template", "--quiet",
                   "--compound_submission"]) == 0
    with open(tmp_path / "predictions" / "submission.txt", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["image", "valence", "arousal", "expression", *(model.config.id2label[i] for i in range(10, 22))]
    frames = sum(len(list((affect_data / "cropped_aligned" / v).glob("*.jpg"))) for v in videos)
    assert len(rows) - 1 == frames and all(len(row) == 16 for row in rows)
    assert all(-1 <= float(row[1]) <= 1 and 0 <= int(row[3]) < 8 and set(row[4:]) <= {"0", "1"} for row in rows[1:])
    compound = (tmp_path / "predictions" / "submission_compound.txt").read_text().splitlines()
    assert len(compound) == 1 + frames  # the compound track, zero-shot from the head's expression probabilities

    exported = export(run, tmp_path / "export", repo_id="someone/emotic-mtl", include_metric=True)
    assert (exported / "abaw_multitask.py").is_file()
    card = (exported / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert "pipeline_tag" not in metadata  # one softmax over three tracks' outputs means nothing
    (result,) = metadata["model-index"][0]["results"]
    metrics = {m["name"]: m["value"] for m in result["metrics"]}
    assert metrics["ABAW multi-task score P_VA + P_EXPR + P_AU (per frame)"] == round(results["mtl_score"], 4)
    assert "valence, arousal = outputs[:2].tolist()" in card


def test_pretraining_loss_falls(synthetic, tmp_path):
    from emotic.training import pretrain

    result = pretrain.main(["--face_dirs", str(synthetic / "cropped_aligned"), "--model_size", "tiny",
                            "--output_dir", str(tmp_path / "mae"), "--num_train_epochs", "3",
                            "--learning_rate", "1.5e-3", "--per_device_train_batch_size", "16",
                            "--logging_steps", "5", "--disable_tqdm", "true"])
    losses = result["losses"]
    assert len(losses) >= 4 and np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2])
    from transformers import AutoModelForPreTraining

    assert type(AutoModelForPreTraining.from_pretrained(tmp_path / "mae")).__name__ == "EmoticForPreTraining"


def test_layer_decay_scales_blocks_from_the_top_and_spares_norms_and_tokens(tiny_config):
    from emotic import EmoticForImageClassification

    model = EmoticForImageClassification(tiny_config(fusion_layer=2))
    groups = layer_decay_parameter_groups(model, weight_decay=0.05, learning_rate=1.0, layer_decay=0.5)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["classifier.weight"])] == (1.0, 0.05)
    assert lr_of[id(params["emotic.layers.3.mlp.fc1.weight"])] == (0.5, 0.05)
    assert lr_of[id(params["emotic.layers.0.mlp.fc1.weight"])] == (0.5**4, 0.05)
    assert lr_of[id(params["emotic.embeddings.position_embeddings"])] == (0.5**5, 0.0)
    assert lr_of[id(params["emotic.embeddings.cls_token"])][1] == 0.0
    assert lr_of[id(params["emotic.layers.2.norm1.weight"])][1] == 0.0
    assert lr_of[id(params["emotic.layers.2.attention.qkv.bias"])][1] == 0.0


@pytest.mark.parametrize("build", ["encoder", "pretraining", "shared", "separate", "fuse_first", "fuse_last"])
def test_layer_ids_follow_timms_group_matcher_and_layer_decay(tiny_config, build):
    """The model's `group_matcher` is timm's convention: timm's own grouping and layer-decay code give the layer ids
    and learning-rate scales ours do, for every emotic model shape."""
    from timm.models import group_parameters
    from timm.optim import param_groups_layer_decay

    from emotic import EmoticForImageClassification, EmoticForPreTraining, EmoticModel

    model = {"encoder": lambda: EmoticModel(tiny_config()),
             "pretraining": lambda: EmoticForPreTraining(tiny_config()),
             "shared": lambda: EmoticForImageClassification(tiny_config(fusion_layer=2)),
             "separate": lambda: EmoticForImageClassification(tiny_config(fusion_layer=2, share_encoder=False)),
             "fuse_first": lambda: EmoticForImageClassification(tiny_config(fusion_layer=0)),
             "fuse_last": lambda: EmoticForImageClassification(tiny_config(fusion_layer=4))}[build]()
    ids = model.layer_ids()
    assert ids == group_parameters(model, model.group_matcher(), reverse=True)
    assert min(ids.values()) == 0 and max(ids.values()) == model.config.num_hidden_layers + 1
    ours = {id(p): (round(g["lr_scale"], 12), g["weight_decay"]) for g in
            layer_decay_parameter_groups(model, weight_decay=0.05, learning_rate=1.0, layer_decay=0.5)
            for p in g["params"]}
    timms = {id(p): (round(g["lr_scale"], 12), g["weight_decay"]) for g in
             param_groups_layer_decay(model, 0.05, model.no_weight_decay(), layer_decay=0.5) for p in g["params"]}
    assert ours == timms and len(ours) == sum(p.requires_grad for p in model.parameters())


def test_incomplete_checkpoint_folders_are_skipped(tmp_path):
    good = tmp_path / "checkpoint-10"
    good.mkdir()
    for name in ("model.safetensors", "optimizer.pt"):
        (good / name).write_bytes(b"x")
    (good / "trainer_state.json").write_text("{}")
    cut = tmp_path / "checkpoint-20"  # killed while writing the state
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(b"x")
    (cut / "trainer_state.json").write_text('{"global_st')
    (tmp_path / "checkpoint-30").mkdir()  # killed before anything was written
    assert last_complete_checkpoint(tmp_path) == str(good)
    assert last_complete_checkpoint(tmp_path / "missing") is None


@pytest.mark.minutes(1)
def test_run_killed_mid_way_and_restarted_finishes_with_the_weights_of_an_uninterrupted_run(synthetic, tmp_path):
    command = ["finetune", "--affwild2_root", str(synthetic), "--max_steps", "24", "--save_strategy", "steps",
               "--save_steps", "6", "--eval_strategy", "no", "--save_total_limit", "3", *FAST]
    reference = run([*command, "--output_dir", str(tmp_path / "reference")])
    assert reference.returncode == 0, reference.stderr[-3000:]

    output = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "emotic.cli", *command, "--output_dir", str(output)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (output / "checkpoint-12" / "trainer_state.json").exists():
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "model.safetensors").exists()
    # a checkpoint folder cut short by the kill must be skipped, not loaded
    (output / "checkpoint-18").mkdir(exist_ok=True)
    (output / "checkpoint-18" / "trainer_state.json").write_text("{")

    resumed = run([*command, "--output_dir", str(output)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "checkpoint-18" not in resumed.stdout.split("resuming from")[1][:60]
    expected, actual = load_file(tmp_path / "reference" / "model.safetensors"), load_file(output / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert max((expected[k] - actual[k]).abs().max().item() for k in expected) <= 1e-6


def test_fsdp_on_cpu_processes_is_said_to_run_unsharded(synthetic, tmp_path):
    """Accelerate runs `--use_fsdp` on CPU processes as plain data parallelism: the run says so, records what ran,
    and its model loads."""
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2", "--num_processes",
         "2", "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
         "--dynamo_backend", "no",
         "-m", "emotic.training.finetune", "--affwild2_root", str(synthetic), "--output_dir", str(tmp_path / "run"),
         "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", *FAST],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        # TMPDIR: torch elastic's per-launch log folder lands in this test's folder, not left in /tmp
        env={**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "FSDP was asked for (--use_fsdp) but Accelerate runs MULTI_CPU here" in result.stderr
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())["hyperparameters"]
    assert record["distributed_type"] == "MULTI_CPU" and record["num_processes"] == 2

    from transformers import AutoModelForImageClassification

    assert AutoModelForImageClassification.from_pretrained(tmp_path / "run").config.fusion_strategy == "attention"


def test_two_processes_evaluate_gathered_predictions_like_one_process(synthetic, tmp_path):
    output = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
         "--dynamo_backend", "no",
         "-m", "emotic.training.finetune", "--affwild2_root", str(synthetic), "--output_dir", str(output),
         "--max_steps", "4", "--eval_strategy", "no", "--save_strategy", "no", *FAST],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        # TMPDIR: torch elastic's per-launch log folder lands in this test's folder, not left in /tmp
        env={**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    distributed = json.loads((output / "emotic_run.json").read_text())
    assert distributed["hyperparameters"]["num_processes"] == 2

    from transformers import AutoModelForImageClassification, AutoImageProcessor

    from emotic.training.affwild2 import read_affwild2
    from emotic.training.transforms import ViewTransform
    from emotic.training.metrics import expression_metrics

    model = AutoModelForImageClassification.from_pretrained(output).eval()
    processor = AutoImageProcessor.from_pretrained(output)
    evaluation, _ = read_affwild2(synthetic / "annotations" / "Validation_Set", synthetic / "cropped_aligned")
    labels = list(evaluation["label"])
    assert len(evaluation) % 2 == 1  # an uneven split: Accelerate pads one shard, the gather must drop the pad
    evaluation.set_transform(ViewTransform(processor, geometry="template"))  # as the run evaluated
    predictions = []
    with torch.no_grad():
        for start in range(0, len(evaluation), 32):
            batch = evaluation[start:start + 32]
            predictions += model(batch["pixel_values"], batch["pixel_values_aux"]).logits.argmax(-1).tolist()
    single = expression_metrics(predictions, labels)
    assert distributed["eval"]["num_frames"] == single["num_frames"] == len(evaluation)
    assert distributed["eval"]["confusion_matrix"] == single["confusion_matrix"]
    assert distributed["eval"]["macro_f1"] == pytest.approx(single["macro_f1"], abs=1e-12)


def test_the_run_record_says_the_precision_accelerate_launch_used(synthetic, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
         "--mixed_precision", "bf16", "--dynamo_backend", "no", "--cpu",
         "-m", "emotic.training.finetune", "--affwild2_root", str(synthetic), "--output_dir", str(tmp_path / "run"),
         "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", *FAST],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())["hyperparameters"]
    assert record["mixed_precision"] == "bf16"  # no --bf16 flag: the launcher's setting is what ran
    assert record["num_processes"] == 1 and record["distributed_type"] == "NO"


@pytest.mark.parametrize("extra, words", [
    (["--hub_strategy", "every_save"], "--hub_strategy every_save: the finished model is published once"),
    (["--hub_always_push", "true"], "--hub_always_push checkpoints are never pushed"),
    (["--remove_unused_columns", "true"], "--remove_unused_columns the images are decoded from the `image` column"),
    (["--label_smoothing_factor", "0.1"], "use --label_smoothing"),
    (["--prediction_loss_only", "true"], "--prediction_loss_only the held-out macro-F1 needs the predictions"),
])
def test_trainer_options_emotic_does_not_honour_are_refused(synthetic, tmp_path, extra, words):
    from emotic.training import finetune

    with pytest.raises(ValueError, match="emotic does not honour these Trainer options") as error:
        finetune.main(["--affwild2_root", str(synthetic), "--output_dir", str(tmp_path / "run"), *FAST,
                       "--push_to_hub", "true", *extra])
    assert words in str(error.value)
    assert not (tmp_path / "run").exists()


def test_layer_decay_is_maes_for_a_pretrained_encoder_and_none_for_random_weights(tmp_path):
    """MAE's layer decay keeps what pre-training taught the lower blocks; an encoder from random weights has nothing
    to keep, and decaying its lower blocks' learning rate only slows it (FER+, tiny, from scratch)."""
    from emotic.training.arguments import EmoticTrainingArguments, resolve_layer_decay

    def resolved(pretrained, **given):
        return resolve_layer_decay(EmoticTrainingArguments(output_dir=str(tmp_path), **given), pretrained)

    assert resolved(pretrained=True) == 0.65 and resolved(pretrained=False) == 1.0
    assert resolved(pretrained=False, layer_decay=0.8) == resolved(pretrained=True, layer_decay=0.8) == 0.8


def test_class_weight_power_softens_the_inverse_frequency_weights():
    """FER+'s long tail (116 disgust against 8,733 neutral faces): 0.5 gives the square roots of the inverse class
    frequencies, 0 no weighting, 1 (the default) the inverse frequencies themselves."""
    from emotic.tracks import inverse_frequency_weights
    from emotic.training.finetune import ModelArguments, build_model

    labels = [0] * 60 + [1] * 30 + [2] * 5 + [4] * 5
    full = inverse_frequency_weights(labels, 8)
    for power in (1.0, 0.5, 0.0):
        model, _ = build_model(ModelArguments(model_size="tiny", class_weight_power=power), labels)
        assert model.config.class_weights == pytest.approx([w ** power for w in full], rel=1e-5)
