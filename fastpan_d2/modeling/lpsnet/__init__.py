"""lpsnet."""
