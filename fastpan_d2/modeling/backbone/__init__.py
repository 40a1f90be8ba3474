"""Backbones shared by the networks (ResNet/FPN variants built on detectron2)."""
