"""Utilities shared by the package and the tools (FLOP counting: ``analysis``)."""
