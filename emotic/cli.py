"""The `emotic` command: `emotic synth|pretrain|finetune|predict|evaluate|export|push|export-onnx|app|ablate|demo
...`; each forwards its arguments."""

import sys

COMMANDS = {
    "synth": ("emotic.training.synthetic", "write a generated dataset in Aff-Wild2's layout"),
    "pretrain": ("emotic.training.pretrain", "MAE pre-training on face folders"),
    "finetune": ("emotic.training.finetune", "fine-tune the dual-view classifier"),
    "predict": ("emotic.inference.predict", "expressions of videos, frame folders and images, smoothed over time"),
    "evaluate": ("emotic.inference.evaluate", "metrics and a report of a model on a labelled dataset"),
    "export": ("emotic.hub_cards.export", "a Hub-ready folder (weights, config, code, card) from a run"),
    "push": ("emotic.hub_cards.push", "upload an exported folder to the Hub in one commit"),
    "export-onnx": ("emotic.hub_cards.export_onnx", "the classifier as an ONNX graph, checked in ONNX Runtime"),
    "app": ("emotic.app", "a web demo: photos and videos as the model sees them (Gradio)"),
    "ablate": ("emotic.ablate", "fine-tune and evaluate every fusion strategy and layer, as a table"),
    "demo": ("emotic.demo", "the main job end to end on generated data"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = [f"  {name:10s} {summary}" for name, (_, summary) in COMMANDS.items()]
        print("usage: emotic COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]][0])
    result = module.main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
