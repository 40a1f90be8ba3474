"""Evaluators beyond detectron2's."""
