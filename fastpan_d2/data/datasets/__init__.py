"""Dataset registration (real datasets and the built-in synthetic one)."""
