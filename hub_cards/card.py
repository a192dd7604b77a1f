"""The model card: YAML metadata (with a `model-index` of the measured metrics) and a body filled from a training
run (`emotic_run.json`) and, optionally, an `emotic evaluate` report (`metrics.json`). Numbers come only from those
files: a run without evaluation gets a card that says so and an empty `model-index`."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from emotic.modeling.heads_emotic import head_track
from emotic.tracks import EXPRESSION, SCORES, TRACKS

TEMPLATE = Path(__file__).with_name("model_card_template.md")
REPO_ID_PLACEHOLDER = "<namespace>/<repo>"  # replaced by `emotic push` with the repository pushed to
TAGS = ["facial-expression-recognition", "emotion-recognition", "abaw", "aff-wild2", "mae-face", "vision-transformer",
        "emotic", "custom_code"]


def _dataset_slug(name: str, synthetic: bool) -> str:
    if synthetic:
        return "emotic-synth"
    if "aff-wild2" in name.lower():
        return "aff-wild2"
    return name.lower().replace(" ", "-")


MARKDOWN_SPECIAL = "\\`*_[]<>|$~"


def plain_markdown(text) -> str:
    """`text` (a folder's or dataset's name, say) escaped so that Markdown shows it as it is: never emphasis, a link,
    HTML, a table cell's end or math."""
    return "".join(f"\\{character}" if character in MARKDOWN_SPECIAL else character for character in str(text))


def card_scores(name: str) -> list[tuple[str, str, str]]:
    """(key in the metrics, name, `model-index` type) of each score the card of a track other than the expressions'
    lists: its headline scores (`emotic.tracks`); the expression card has its own layout (raw and smoothed)."""
    return [(key, *SCORES[key]) for key in TRACKS[name].headline]


def track_of(run: dict | None, config=None) -> str:
    """The ABAW track of a run (its record's `track`; older records are EXPR), else of a model's problem type."""
    if run and run.get("track"):
        return run["track"]
    return head_track(config) if config is not None else EXPRESSION


def evaluation_summary(run: dict | None, report: dict | None) -> dict | None:
    """The numbers the card shows: an `emotic evaluate` report (raw and smoothed) if given, else the run's own
    held-out evaluation (raw only), else None. Action-unit and valence-arousal runs carry their track's scores."""
    if report and not TRACKS[report.get("track", EXPRESSION)].single_label:  # its scores, raw, from `emotic evaluate`
        track = report["track"]
        units_result = report["raw"].get("au") or report["raw"]
        tuned = any(value != 0.5 for value in units_result.get("thresholds") or [])  # evaluate used the stored ones
        scores = [(key, label.replace("threshold 0.5", "thresholds in config.label_thresholds") if tuned else label,
                   kind, report["raw"][key]) for key, label, kind in card_scores(track)]
        units = units_result.get("per_au_f1")
        return {"track": track, "dataset": (run or {}).get("dataset") or report["dataset"], "split": report["split"],
                "num_frames": report["counts"]["frames"], "source": "`emotic evaluate`", "scores": scores,
                "tuned_au_score": None, "per_class_f1": units, "smoothed_macro_f1": None}
    if report:
        smoothing = report["smoothing"]
        return {
            "track": EXPRESSION, "dataset": (run or {}).get("dataset") or report["dataset"],
            "split": report["split"], "num_frames": report["raw"]["num_frames"],
            "raw_macro_f1": report["raw"]["macro_f1"], "raw_accuracy": report["raw"]["accuracy"],
            "smoothed_macro_f1": report["smoothed"]["macro_f1"], "smoothed_accuracy": report["smoothed"]["accuracy"],
            "smoothing_window": smoothing["window"], "smoothing_mode": smoothing["mode"],
            "per_class_f1": report["raw"]["per_class_f1"], "source": "`emotic evaluate`",
        }
    if run and run.get("eval"):
        evaluation, track = run["eval"], track_of(run)
        common = {"track": track, "dataset": run["dataset"], "split": "held-out split of the run",
                  "num_frames": evaluation["num_frames"], "source": "the fine-tuning run"}
        if not TRACKS[track].single_label:
            scores = [(key, label, kind, evaluation[key]) for key, label, kind in card_scores(track)]
            tuned = (evaluation.get("tuned") or {}).get("au_score")
            per_au_f1 = evaluation.get("per_au_f1") or (evaluation.get("au") or {}).get("per_au_f1")
            return {**common, "scores": scores, "tuned_au_score": tuned, "per_class_f1": per_au_f1,
                    "smoothed_macro_f1": None}
        return {
            **common, "raw_macro_f1": evaluation["macro_f1"], "raw_accuracy": evaluation["accuracy"],
            "smoothed_macro_f1": None, "smoothed_accuracy": None, "smoothing_window": None, "smoothing_mode": None,
            "per_class_f1": evaluation["per_class_f1"],
        }
    return None


def build_card(config, processor, run: dict | None = None, report: dict | None = None, repo_id: str | None = None,
               license: str = "mit", base_model: str | None = None, num_parameters: int | None = None,
               model_name: str | None = None, include_metric: bool = False) -> ModelCard:
    """Render the card of an `EmoticForImageClassification` with `config` and its image `processor` (which decides
    the auxiliary view); `include_metric`: the repository holds the metric module `abaw_expression.py`."""
    evaluation = evaluation_summary(run, report)
    dataset = (run or {}).get("dataset") or (evaluation or {}).get("dataset")
    # generated data (`emotic synth`) say so in the run record and in the evaluation report
    synthetic = bool((run or {}).get("synthetic") or (report or {}).get("synthetic"))
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else "emotic-expression-classifier")
    repo_id = repo_id or REPO_ID_PLACEHOLDER
    track = evaluation["track"] if evaluation else track_of(run, config)
    eval_results = []
    if evaluation:
        common = dict(task_type="image-classification", task_name=TRACKS[track].card_task,
                      dataset_type=_dataset_slug(evaluation["dataset"], synthetic), dataset_name=evaluation["dataset"],
                      dataset_split=evaluation["split"])
    if evaluation and not TRACKS[track].single_label:
        eval_results += [EvalResult(metric_type=kind, metric_name=label, metric_value=round(value, 4), **common)
                         for _, label, kind, value in evaluation["scores"]]
    elif evaluation:
        eval_results.append(EvalResult(metric_type="f1", metric_name="Macro-F1 (per frame)",
                                       metric_value=round(evaluation["raw_macro_f1"], 4),
                                       metric_args={"average": "macro"}, **common))
        if evaluation["smoothed_macro_f1"] is not None:
            eval_results.append(EvalResult(
                metric_type="f1", metric_name=f"Macro-F1 (smoothed, {evaluation['smoothing_mode']} window "
                                              f"{evaluation['smoothing_window']})",
                metric_value=round(evaluation["smoothed_macro_f1"], 4),
                metric_args={"average": "macro", "smoothing_window": evaluation["smoothing_window"],
                             "smoothing_mode": evaluation["smoothing_mode"]}, **common))
        eval_results.append(EvalResult(metric_type="accuracy", metric_name="Accuracy (per frame)",
                                       metric_value=round(evaluation["raw_accuracy"], 4), **common))
    card_data = ModelCardData(
        # a multi-task head's outputs are three tracks': the image-classification pipeline's one softmax over them
        # means nothing, so the Hub is not told to run it
        library_name="transformers", pipeline_tag=None if TRACKS[track].multitask else "image-classification",
        license=license,
        tags=TAGS + (["synthetic-data", "not-for-use"] if synthetic else []),
        datasets=[_dataset_slug(dataset, synthetic)] if dataset else None, base_model=base_model,
        metrics=list(TRACKS[track].card_metrics),
        model_name=model_name,
        eval_results=eval_results or None,
    )
    run_view = None
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if run:
        train = (run.get("data") or {}).get("train") or {}
        counts = {k if k in labels else labels[int(k)]: v for k, v in (train.get("class_counts") or {}).items()
                  if k in labels or 0 <= int(k) < len(labels)}  # per class (EXPR) or per action unit (AU)
        # names of folders and datasets are shown as they are, never read as Markdown
        run_view = {"dataset": plain_markdown(run.get("dataset", "unknown")),
                    "base_model": plain_markdown(run.get("model", {}).get("base_model")),
                    "train_frames": train.get("frames"), "train_videos": train.get("videos"),
                    "class_counts": ", ".join(f"{k} {v}" for k, v in counts.items()),
                    "hyperparameters": run.get("hyperparameters") or {}}
    if evaluation:
        evaluation = {**evaluation, "dataset": plain_markdown(evaluation["dataset"]),
                      "split": plain_markdown(evaluation["split"])}
    return ModelCard.from_template(
        card_data, template_path=str(TEMPLATE), title=plain_markdown(model_name), config=config, processor=processor,
        labels=labels, run=run_view, evaluation=evaluation, synthetic=synthetic, repo_id=repo_id,
        include_metric=include_metric,
        track=track,
        num_parameters=f"{num_parameters / 1e6:.2f} M" if num_parameters else "unknown",
    )
