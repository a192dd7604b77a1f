"""emotic.hub_cards: what is published beside a model: the model card, the export of a run to a Hub-ready folder,
the push to the Hub, and the ABAW expression score as an `evaluate` metric module (`abaw_expression/`)."""

from pathlib import Path

METRIC_PATH = Path(__file__).with_name("abaw_expression")  # `evaluate.load(str(METRIC_PATH))`, offline
