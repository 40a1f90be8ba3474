"""Code two or more networks share: merging, box/mask ops, losses, target helpers."""
