"""`emotic export RUN_DIR EXPORT_DIR`: a Hub-ready folder from a fine-tuning run.

    emotic export runs/dual-view exported/ [--evaluation report/metrics.json] [--repo-id you/name] [--license mit]

The folder holds the weights (safetensors), `config.json` with its `auto_map`, the processor config, the remote-code
files (so the model loads as remote code where the package is not installed) and the model card, filled from the run's
`emotic_run.json` and, with `--evaluation`, the `metrics.json` of `emotic evaluate` (raw and smoothed macro-F1).
Nothing else from the run (checkpoints, optimizer states, training arguments) is copied.
"""

import json
import shutil
import sys
from pathlib import Path

from emotic.cli import command_parser
from emotic.hub_cards.card import build_card
from emotic.hub_cards.push import check_publishable


def export(run_dir, export_dir, evaluation=None, repo_id: str | None = None, license: str = "mit",
           base_model: str | None = None, overwrite: bool = False) -> Path:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    import emotic  # noqa: F401  (registers the emotic classes: installed code, never remote code)
    from emotic.modeling.modeling_emotic import EmoticForImageClassification

    run_dir, export_dir = Path(run_dir), Path(export_dir)
    for name, words in (("config.json", "config.json"), ("model.safetensors", "weights (model.safetensors)"),
                        ("preprocessor_config.json", "processor config (preprocessor_config.json)")):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir} has no {words}; expected the output folder of `emotic finetune`")
    architectures = json.loads((run_dir / "config.json").read_text()).get("architectures") or []
    if architectures != ["EmoticForImageClassification"]:
        raise ValueError(f"{run_dir} holds {architectures or 'an unknown model'}; export a fine-tuned "
                         f"EmoticForImageClassification (the output of `emotic finetune`)")
    if export_dir.exists() and any(export_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"{export_dir} is not empty; pass --overwrite to replace it")
        shutil.rmtree(export_dir)
    run = json.loads((run_dir / "emotic_run.json").read_text()) if (run_dir / "emotic_run.json").is_file() else None
    report = json.loads(Path(evaluation).read_text()) if evaluation else None

    model = AutoModelForImageClassification.from_pretrained(run_dir)
    if not isinstance(model, EmoticForImageClassification):
        raise ValueError(f"{run_dir} loads as {type(model).__name__}, not EmoticForImageClassification")
    processor = AutoImageProcessor.from_pretrained(run_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(export_dir)  # safetensors, config with auto_map, modeling code
    processor.save_pretrained(export_dir)  # processor config and its code
    card = build_card(model.config, run, report, repo_id=repo_id, license=license, base_model=base_model,
                      num_parameters=model.num_parameters())
    card.save(export_dir / "README.md")
    check_publishable(export_dir, local_paths=[run_dir, export_dir])
    return export_dir


def main(argv=None) -> int:
    parser = command_parser("emotic export", __doc__)
    parser.add_argument("run_dir", help="the output folder of `emotic finetune`")
    parser.add_argument("export_dir")
    parser.add_argument("--evaluation", default=None, help="metrics.json written by `emotic evaluate`")
    parser.add_argument("--repo-id", default=None, help="named in the card's usage snippets (else set by push)")
    parser.add_argument("--license", default="mit", help="licence of the weights in the card's metadata")
    parser.add_argument("--base-model", default=None, help="Hub id of the pre-trained encoder, if it is on the Hub")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        folder = export(args.run_dir, args.export_dir, args.evaluation, args.repo_id, args.license, args.base_model,
                        args.overwrite)
    except ValueError as error:
        print(f"emotic export: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.run_dir} to {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
