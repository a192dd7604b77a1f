"""emotic.hub_cards: the model card, the export of a run to a Hub-ready folder, and the push to the Hub."""
