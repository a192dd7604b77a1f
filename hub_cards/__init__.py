"""emotic.hub_cards: what is published beside a model: the model card, the export of a run to a Hub-ready folder,
the push to the Hub, and the ABAW scores as `evaluate` metric modules (`abaw_expression/`, `abaw_action_units/`,
`abaw_valence_arousal/`, `abaw_multitask/`)."""

from pathlib import Path

from emotic.tracks import EXPRESSION, TRACKS

_HERE = Path(__file__).parent
# Every ABAW score's module, by the track it scores: `evaluate.load(str(METRIC_PATHS[track]))`, offline.
METRIC_PATHS = {name: _HERE / track.metric_module for name, track in TRACKS.items()}
METRIC_PATH = METRIC_PATHS[EXPRESSION]  # `evaluate.load(str(METRIC_PATH))`: the expression score
