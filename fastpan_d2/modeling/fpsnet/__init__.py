"""fpsnet."""
