"""epsnet."""
