"""The reviewer's dashboard: ``ReviewSession`` (``panel.review_panel`` for the notebook)
and its components: case card, prediction view, blind judgement, decision bar, keyboard."""
