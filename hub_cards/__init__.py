"""emotic.hub_cards: model-card templates and the export/push step."""
