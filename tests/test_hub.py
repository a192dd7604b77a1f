"""Model cards, `emotic export` and `emotic push`, end to end against a loopback Hub (tests/minihub.py): the pushed
model loads in a fresh process without the package, through remote code, with identical logits."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

from emotic.hub_cards.card import build_card
from emotic.training.synthetic import write_synthetic_affwild2

from conftest import TOKEN, emotic_cli, hub_env

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short fine-tuning run on generated data, and its `emotic evaluate` report."""
    from emotic.inference import evaluate
    from emotic.training import finetune

    root = tmp_path_factory.mktemp("trained")
    write_synthetic_affwild2(root / "data", num_videos=4, frames_per_video=16, size=64, validation_videos=1, seed=7)
    finetune.main(["--affwild2_root", str(root / "data"), "--output_dir", str(root / "run"), "--model_size", "tiny",
                   "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--disable_tqdm", "true",
                   "--report_to", "none", "--drop_path_rate", "0.0"])
    evaluate.main([str(root / "run"), str(root / "data"), "--output-dir", str(root / "report"), "--geometry",
                   "template", "--smoothing_windows", "1,3,5", "--quiet"])
    return root


def card_yaml(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_pushed_model_loads_without_the_package_with_identical_logits_pipeline_and_card(hub, trained, tmp_path):
    export_dir = tmp_path / "export"
    result = emotic_cli("export", trained / "run", "--output_dir", export_dir, "--include_metric",
                        "--evaluation", trained / "report" / "metrics.json", env={**os.environ, "HF_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "configuration_emotic.py",
            "heads_emotic.py", "modeling_emotic.py", "image_processing_emotic.py", "face_geometry.py",
            "abaw_expression.py"} <= {
        p.name for p in export_dir.iterdir()}
    assert not list(export_dir.glob("*.bin")) and not list(export_dir.glob("checkpoint-*"))
    assert "AutoModelForImageClassification" in json.loads((export_dir / "config.json").read_text())["auto_map"]

    env = hub_env(hub, tmp_path)
    result = emotic_cli("push", export_dir, "testuser/emotic-tiny", "--private", "--commit-message", "first upload",
                        env=env)
    assert result.returncode == 0, result.stderr

    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from emotic.processing.face_geometry import set_face_detector

    frame = next((trained / "data" / "cropped_aligned").glob("*/00005.jpg"))
    local = AutoModelForImageClassification.from_pretrained(trained / "run").eval()
    # the repository's code finds faces with dlib's HOG: BlazeFace's model ships with the emotic package, not with
    # the model (checked in the script below); the same detector gives the same logits
    set_face_detector("hog")
    try:
        inputs = AutoImageProcessor.from_pretrained(trained / "run")(str(frame), return_tensors="pt")
    finally:
        set_face_detector(None)
    with torch.no_grad():
        expected = local(**inputs).logits.numpy()
    np.save(tmp_path / "expected.npy", expected)
    metrics = json.loads((trained / "report" / "metrics.json").read_text())

    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["emotic"] = None  # the package cannot be imported: only the repository's code can run
        import numpy as np, torch
        from huggingface_hub import HfApi, ModelCard
        from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline
        repo = "testuser/emotic-tiny"
        model = AutoModelForImageClassification.from_pretrained(repo, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        processor = AutoImageProcessor.from_pretrained(repo, trust_remote_code=True)
        detector = sys.modules[type(processor).__module__.rsplit(".", 1)[0] + ".face_geometry"].face_detector()
        assert detector == "hog", detector
        with torch.no_grad():
            logits = model(**processor({str(frame)!r}, return_tensors="pt")).logits.numpy()
        expected = np.load({str(tmp_path / 'expected.npy')!r})
        scores = pipeline("image-classification", model=repo, trust_remote_code=True)({str(frame)!r}, top_k=8)
        card = ModelCard.load(repo)
        results = [(r.metric_name, r.metric_value) for r in card.data.eval_results]
        import evaluate
        from huggingface_hub import hf_hub_download
        abaw = evaluate.load(hf_hub_download(repo, "abaw_expression.py"))  # the metric published with the model
        score = abaw.compute(predictions=[4, 0, 6, 6, 2], references=[4, 1, 6, 2, 2])
        print(json.dumps({{"max_abs_diff": float(np.abs(logits - expected).max()),
                          "pipeline_total": sum(s["score"] for s in scores), "labels": [s["label"] for s in scores],
                          "results": results, "private": HfApi().model_info(repo).private,
                          "commit": HfApi().list_repo_commits(repo)[0].title, "card": card.text,
                          "metric": [score["macro_f1"], score["accuracy"]]}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    pulled = json.loads(result.stdout.strip().splitlines()[-1])
    assert pulled["max_abs_diff"] == 0.0
    assert abs(pulled["pipeline_total"] - 1) < 1e-5 and set(pulled["labels"]) == set(local.config.id2label.values())
    results = dict(pulled["results"])
    assert results["Macro-F1 (per frame)"] == round(metrics["raw"]["macro_f1"], 4)
    window = metrics["smoothing"]["window"]
    assert results[f"Macro-F1 (smoothed, mean window {window})"] == round(metrics["smoothed"]["macro_f1"], 4)
    assert results["Accuracy (per frame)"] == round(metrics["raw"]["accuracy"], 4)
    assert pulled["private"] is True and pulled["commit"] == "first upload"
    assert 'from_pretrained("testuser/emotic-tiny", trust_remote_code=True)' in pulled["card"]
    assert 'hf_hub_download("testuser/emotic-tiny", "abaw_expression.py")' in pulled["card"]
    from sklearn.metrics import f1_score

    expected_f1 = f1_score([4, 1, 6, 2, 2], [4, 0, 6, 6, 2], labels=range(8), average="macro", zero_division=0)
    assert pulled["metric"] == pytest.approx([expected_f1, 0.6])


def test_card_metadata_parses_and_carries_every_field(trained):
    from transformers import AutoConfig, AutoImageProcessor

    run = json.loads((trained / "run" / "emotic_run.json").read_text())
    report = json.loads((trained / "report" / "metrics.json").read_text())
    config = AutoConfig.from_pretrained(trained / "run")
    assert run["synthetic"] is True and report["synthetic"] is True  # what the card goes by
    card = build_card(config, AutoImageProcessor.from_pretrained(trained / "run"), run, report,
                      repo_id="someone/emotic-demo", license="apache-2.0", base_model="someone/mae-face-vit-base",
                      num_parameters=123_456)
    metadata = card_yaml(str(card))
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "image-classification"
    assert {"facial-expression-recognition", "mae-face", "synthetic-data"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["emotic-synth"] and metadata["license"] == "apache-2.0"
    assert metadata["base_model"] == "someone/mae-face-vit-base"
    (index,) = metadata["model-index"]
    assert index["name"] == "emotic-demo"
    metrics = {m["name"]: m["value"] for result in index["results"] for m in result["metrics"]}
    assert set(metrics) == {"Macro-F1 (per frame)", f"Macro-F1 (smoothed, mean window "
                            f"{report['smoothing']['window']})", "Accuracy (per frame)"}
    body = card.text
    for needed in ("arXiv:2403.13039", "ma2023maeface", "Not a facial-expression model", "## Intended use",
                   "## Limitations, biases and risks", "A facial expression is not an emotion",
                   f"| learning_rate | {run['hyperparameters']['learning_rate']} |", "trust_remote_code=True",
                   'pipeline("image-classification", model="someone/emotic-demo")', "AutoModelForImageClassification",
                   f"{run['data']['train']['frames']} training frames", "0.12 M"):
        assert needed in body, needed


def test_a_run_without_evaluation_gets_a_card_that_says_so(trained):
    from transformers import AutoConfig, AutoImageProcessor

    run = json.loads((trained / "run" / "emotic_run.json").read_text())
    run["eval"] = {}
    card = build_card(AutoConfig.from_pretrained(trained / "run"), AutoImageProcessor.from_pretrained(trained / "run"),
                      run)
    metadata = card_yaml(str(card))
    assert "model-index" not in metadata
    assert "This run was not evaluated" in card.text and "macro-F1 (per frame" not in card.text
    assert "<namespace>/<repo>" in card.text  # the usage snippets wait for push to name the repository


def test_push_refuses_an_incomplete_or_unsafe_folder(trained, tmp_path, capsys, monkeypatch):
    from emotic.hub_cards import push
    from emotic.hub_cards.export import export

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a refusal must come first
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = export(trained / "run", tmp_path / "export")

    def refusal():
        assert push.main([str(folder), "testuser/never"]) == 2
        return capsys.readouterr().err

    for name, words in (("model.safetensors", "weights (*.safetensors)"), ("config.json", "config (config.json)"),
                        ("README.md", "model card (README.md)")):
        os.replace(folder / name, tmp_path / name)
        assert words in refusal()
        os.replace(tmp_path / name, folder / name)
    (folder / "notes.txt").write_text(f"token={TOKEN}\n")
    message = refusal()
    assert "notes.txt: an access token" in message and TOKEN not in message
    (folder / "notes.txt").unlink()
    torch.save({"x": torch.zeros(1)}, folder / "extra.bin")
    assert "pickled files ['extra.bin']" in refusal()


def test_export_writes_no_token_and_no_local_path(trained, tmp_path, monkeypatch):
    from emotic.hub_cards.export import export

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = export(trained / "run", tmp_path / "export", evaluation=trained / "report" / "metrics.json")
    for file in folder.iterdir():
        if file.suffix in (".json", ".md", ".py"):
            text = file.read_text()
            assert TOKEN not in text and str(trained) not in text and str(tmp_path) not in text, file.name
    with pytest.raises(ValueError, match="not empty"):
        export(trained / "run", folder)


def test_finetune_push_to_hub_publishes_through_export_and_push(hub, trained, tmp_path):
    result = emotic_cli(
        "finetune", "--affwild2_root", trained / "data", "--output_dir", tmp_path / "run", "--model_size", "tiny",
        "--max_steps", "2", "--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--report_to", "none",
        "--push_to_hub", "true", "--hub_model_id", "testuser/from-finetune", env=hub_env(hub, tmp_path))
    assert result.returncode == 0, result.stderr
    script = ("from huggingface_hub import HfApi, ModelCard; import json; "
              "print(json.dumps([sorted(HfApi().list_repo_files('testuser/from-finetune')), "
              "len(HfApi().list_repo_commits('testuser/from-finetune')), "
              "ModelCard.load('testuser/from-finetune').text]))")
    pulled = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=hub_env(hub, tmp_path), timeout=120)
    files, commits, card = json.loads(pulled.stdout.strip().splitlines()[-1])
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "modeling_emotic.py"} <= \
        set(files)
    assert not any(name.endswith(".bin") or name.startswith("checkpoint-") for name in files)
    assert commits == 2  # the repository's creation, then one upload
    assert 'from_pretrained("testuser/from-finetune")' in card and "## Evaluation" in card


def test_push_to_a_branch_leaves_main_alone(hub, trained, tmp_path):
    from emotic.hub_cards.export import export

    folder = export(trained / "run", tmp_path / "export", repo_id="testuser/branched")
    env = hub_env(hub, tmp_path)
    result = emotic_cli("push", folder, "testuser/branched", "--revision", "candidate", env=env)
    assert result.returncode == 0, result.stderr
    script = ("from huggingface_hub import HfApi; import json; api = HfApi(); "
              "print(json.dumps([api.list_repo_files('testuser/branched', revision='candidate'), "
              "api.list_repo_files('testuser/branched')]))")
    pulled = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    on_branch, on_main = json.loads(pulled.stdout.strip().splitlines()[-1])
    assert "model.safetensors" in on_branch and "README.md" in on_branch
    assert "model.safetensors" not in on_main
