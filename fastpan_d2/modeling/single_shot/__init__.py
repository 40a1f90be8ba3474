"""single_shot."""
