"""emotic.hub_cards: what is published beside a model: the model card, the export of a run to a Hub-ready folder,
the push to the Hub, and the ABAW scores as `evaluate` metric modules (`abaw_expression/`, `abaw_action_units/`,
`abaw_valence_arousal/`, `abaw_multitask/`)."""

from pathlib import Path

_HERE = Path(__file__).parent
METRIC_PATH = _HERE / "abaw_expression"  # `evaluate.load(str(METRIC_PATH))`, offline
# Every ABAW score's module, by the task it scores: `evaluate.load(str(METRIC_PATHS[task]))`, offline.
METRIC_PATHS = {"expr": METRIC_PATH, "au": _HERE / "abaw_action_units", "va": _HERE / "abaw_valence_arousal",
                "multitask": _HERE / "abaw_multitask"}
