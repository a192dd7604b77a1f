"""`emotic export MODEL --output_dir EXPORT_DIR`: a Hub-ready folder from a fine-tuning run.

    emotic export runs/dual-view --output_dir exported [--evaluation report/metrics.json] [--repo_id you/name]
                                                       [--include_metric] [--space SPACE_DIR]

The folder holds the weights (safetensors), `config.json` with its `auto_map`, the processor config, the remote-code
files (so the model loads as remote code where the package is not installed) and the model card, filled from the run's
`emotic_run.json` and, with `--evaluation`, the `metrics.json` of `emotic evaluate` (raw and smoothed macro-F1).
`--include_metric` adds `abaw_expression.py`, the `evaluate` metric module every emotic score is computed with, so
others can score their predictions exactly as the card's numbers were (`evaluate.load(path_to_the_script)`).
`--space SPACE_DIR` (with `--repo_id`) also writes a Gradio Space that serves `emotic app` for the model once it is
on the Hub under that id: `app.py`, `requirements.txt` and its card with the Space metadata (`sdk: gradio`); publish
it with `emotic push SPACE_DIR your-name/emotic-demo --repo_type space`.
Nothing else from the run (checkpoints, optimizer states, training arguments) is copied.
"""

import json
import shutil
import sys
from pathlib import Path

from emotic.commands import command_parser
from emotic.hub_cards import METRIC_PATHS
from emotic.hub_cards.card import build_card, track_of
from emotic.hub_cards.push import check_publishable, is_export_file

REPORT_KEYS = {"dataset", "split", "raw", "smoothed", "smoothing"}  # of `emotic evaluate`'s metrics.json, the card reads


def _check_destination(run_dir: Path | None, export_dir: Path, overwrite: bool,
                       repo_type: str = "model") -> list[Path]:
    """The files of an earlier export (of `repo_type`) that `--overwrite` replaces, or a `ValueError` before
    anything is touched: export never removes what it did not write (the run itself, a sibling experiment, a stray
    file)."""
    target = export_dir.resolve()
    if run_dir is not None and (target == run_dir.resolve() or target in run_dir.resolve().parents):
        raise ValueError(f"{export_dir} is the run folder {run_dir} or contains it; export into a separate folder")
    if export_dir.is_symlink() or (export_dir.exists() and not export_dir.is_dir()):
        raise ValueError(f"{export_dir} exists and is not a folder; choose a new or empty folder")
    if not export_dir.exists() or not any(export_dir.iterdir()):
        return []
    entries = sorted(export_dir.iterdir())
    if not overwrite:
        raise ValueError(f"{export_dir} is not empty; pass --overwrite to replace an earlier export there")
    foreign = [p.name + ("/" if p.is_dir() else "") for p in entries
               if p.is_symlink() or not p.is_file() or not is_export_file(p.name, repo_type)]
    if foreign:
        raise ValueError(f"{export_dir} holds files `emotic export` did not write ({', '.join(foreign)}); --overwrite "
                         f"only replaces an earlier export, so nothing was removed: choose an empty folder")
    return entries


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{what} {path}: cannot be read ({error.strerror or error})") from None
    except ValueError as error:
        raise ValueError(f"{what} {path}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} {path}: expected a JSON object, found {type(value).__name__}")
    return value


SPACE_APP = '''"""A Gradio Space for {repo_id}, a facial expression classifier made with emotic: upload a photo to see the
faces found, the two views the model is given, where its fusion attention looks and the 8 expression probabilities,
or a short video for its expressions over time. This is `emotic app {repo_id}`."""

from emotic.app import launch_options, load_app

demo = load_app("{repo_id}", max_video_seconds={max_video_seconds:g})

if __name__ == "__main__":
    demo.queue().launch(**launch_options(max_file_mb={max_file_mb:g}))
'''

SPACE_BODY = """# {title}

A demo of [{repo_id}](/{repo_id}), a facial expression classifier made with emotic (a dual-view
MAE-Face ViT with attention fusion). Upload a photo to see every face found with its eye, nose and mouth regions, the
main and auxiliary views the model is given, the fusion attention drawn over the auxiliary view and the 8 expression
probabilities; or a video of up to {max_video_seconds:g} s for the per-frame timeline, raw and smoothed, with the
per-frame CSV and the ABAW submission to download.

An expression is how a face looks in one frame, not what a person feels: do not use this to judge people. The
model's card lists its limitations, biases and risks.
"""


def write_space(space_dir, repo_id: str, title: str | None = None, license: str = "mit",
                max_video_seconds: float = 60.0, max_file_mb: float = 50.0, overwrite: bool = False) -> Path:
    """A Gradio Space folder that serves `emotic app` for the model `repo_id` on the Hub: `app.py`,
    `requirements.txt` (this emotic version with its `app` and `faces` extras) and the Space card."""
    from importlib.metadata import PackageNotFoundError, version

    from huggingface_hub import SpaceCard, SpaceCardData

    if not repo_id or repo_id.count("/") != 1 or any(c.isspace() for c in repo_id):
        raise ValueError(f"--space needs --repo_id as namespace/name (the Hub id the Space loads the model from); "
                         f"got {repo_id!r}")
    space_dir = Path(space_dir)
    replaced = _check_destination(None, space_dir, overwrite, repo_type="space")
    try:
        sdk_version = version("gradio")
    except PackageNotFoundError:
        sdk_version = None
    title = title or f"{repo_id.split('/')[-1]} expression demo"
    data = SpaceCardData(title=title, sdk="gradio", sdk_version=sdk_version, app_file="app.py", license=license,
                         models=[repo_id], tags=["emotic", "facial-expression-recognition"], emoji="🙂",
                         colorFrom="indigo", colorTo="pink", pinned=False,
                         short_description="What a facial expression model sees: views, attention, scores")
    card = SpaceCard(f"---\n{data.to_yaml()}\n---\n\n" + SPACE_BODY.format(
        title=title, repo_id=repo_id, max_video_seconds=max_video_seconds))
    for file in replaced:
        file.unlink()
    space_dir.mkdir(parents=True, exist_ok=True)
    (space_dir / "app.py").write_text(SPACE_APP.format(repo_id=repo_id, max_video_seconds=max_video_seconds,
                                                       max_file_mb=max_file_mb), encoding="utf-8")
    (space_dir / "requirements.txt").write_text(f"emotic[app,faces]=={version('emotic')}\n", encoding="utf-8")
    card.save(space_dir / "README.md")
    check_publishable(space_dir, local_paths=[space_dir], repo_type="space")
    return space_dir


def export(run_dir, export_dir, evaluation=None, repo_id: str | None = None, license: str = "mit",
           base_model: str | None = None, overwrite: bool = False, include_metric: bool = False) -> Path:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from emotic.modeling.modeling_emotic import EmoticForImageClassification

    run_dir, export_dir = Path(run_dir), Path(export_dir)
    for name, words in (("config.json", "config.json"), ("model.safetensors", "weights (model.safetensors)"),
                        ("preprocessor_config.json", "processor config (preprocessor_config.json)")):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir} has no {words}; expected the output folder of `emotic finetune`")
    architectures = _read_json(run_dir / "config.json", "the model config").get("architectures") or []
    if architectures != ["EmoticForImageClassification"]:
        raise ValueError(f"{run_dir} holds {architectures or 'an unknown model'}; export a fine-tuned "
                         f"EmoticForImageClassification (the output of `emotic finetune`)")
    replaced = _check_destination(run_dir, export_dir, overwrite)
    run = _read_json(run_dir / "emotic_run.json", "the run record") if (run_dir / "emotic_run.json").is_file() \
        else None
    report = _read_json(Path(evaluation), "--evaluation (metrics.json of `emotic evaluate`)") if evaluation else None
    if report is not None and not REPORT_KEYS <= set(report):
        raise ValueError(f"--evaluation {evaluation}: not a metrics.json of `emotic evaluate` (it has no "
                         f"{sorted(REPORT_KEYS - set(report))})")

    model = AutoModelForImageClassification.from_pretrained(run_dir)
    if not isinstance(model, EmoticForImageClassification):
        raise ValueError(f"{run_dir} loads as {type(model).__name__}, not EmoticForImageClassification")
    processor = AutoImageProcessor.from_pretrained(run_dir)
    scored = report and report.get("track", track_of(None, None))  # older reports scored expressions
    if report is not None and scored != track_of(None, model.config):
        raise ValueError(f"--evaluation {evaluation}: scores the {scored.upper()} track; this model serves the "
                         f"{track_of(None, model.config).upper()} track")
    card = build_card(model.config, processor, run, report, repo_id=repo_id, license=license,
                      base_model=base_model, num_parameters=model.num_parameters(), include_metric=include_metric)
    for file in replaced:  # only now, with everything to write in hand: the files of the earlier export
        file.unlink()
    export_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(export_dir)  # safetensors, config with auto_map, modeling code
    processor.save_pretrained(export_dir)  # processor config and its code
    card.save(export_dir / "README.md")
    if include_metric:  # the track's metric module: abaw_expression.py, abaw_action_units.py, ..., abaw_multitask.py
        module = METRIC_PATHS[track_of(run, model.config)]
        shutil.copyfile(module / f"{module.name}.py", export_dir / f"{module.name}.py")
    check_publishable(export_dir, local_paths=[run_dir, export_dir])
    return export_dir


def main(argv=None) -> int:
    parser = command_parser("emotic export", __doc__)
    parser.add_argument("model", metavar="MODEL",
                        help="a fine-tuned model folder (the --output_dir of `emotic finetune`)")
    parser.add_argument("--output_dir", required=True, metavar="EXPORT_DIR", help="the Hub-ready folder to write")
    parser.add_argument("--evaluation", default=None, help="metrics.json written by `emotic evaluate`")
    parser.add_argument("--repo_id", default=None, help="named in the card's usage snippets (else set by push)")
    parser.add_argument("--license", default="mit", help="licence of the weights in the card's metadata")
    parser.add_argument("--base_model", default=None, help="Hub id of the pre-trained encoder, if it is on the Hub")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export in EXPORT_DIR (a folder holding anything else is refused)")
    parser.add_argument("--include_metric", action="store_true",
                        help="add abaw_expression.py, the `evaluate` metric module emotic scores with")
    parser.add_argument("--space", default=None, metavar="SPACE_DIR",
                        help="also write a Gradio Space serving `emotic app` for the model at --repo_id")
    parser.add_argument("--space_title", default=None, help="the Space's title (default: from --repo_id)")
    args = parser.parse_args(argv)
    try:
        if args.space is not None:  # checked before anything is written
            if not args.repo_id:
                raise ValueError("--space needs --repo_id: the Hub id the Space loads the model from")
            if Path(args.space).resolve() == Path(args.output_dir).resolve():
                raise ValueError("--space and --output_dir are the same folder; a Space and a model are two "
                                 "repositories: give them two folders")
            _check_destination(Path(args.model), Path(args.space), args.overwrite, repo_type="space")
        folder = export(args.model, args.output_dir, args.evaluation, args.repo_id, args.license, args.base_model,
                        args.overwrite, args.include_metric)
        space = write_space(args.space, args.repo_id, args.space_title, args.license, overwrite=args.overwrite) \
            if args.space is not None else None
    except ValueError as error:
        print(f"emotic export: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.model} to {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    if space is not None:
        print(f"wrote the Space for {args.repo_id} to {space}: " + ", ".join(sorted(p.name for p in space.iterdir()))
              + f"; publish it with: emotic push {space} NAMESPACE/NAME --repo_type space")
    return 0


if __name__ == "__main__":
    sys.exit(main())
