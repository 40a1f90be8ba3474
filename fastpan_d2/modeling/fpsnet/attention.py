"""FPSNet's attention masks (Sec. III-A1): one channel per detection, drawn on the feature map.

Inside a detection's box, the soft mask is the bell curve
``f(X) = exp(-1/2 (X - C) S^-1 (X - C)^T)`` with ``C`` the box centre and ``S = diag(w/4, h/4)``
(peak 1 at C), zero outside the box. Boxes, centres and sizes are projected onto the feature map
(divided by its stride); ``X`` are the feature-map pixel centres ``(j + 0.5, i + 0.5)``. The hard
variant (ablation) is 1 inside the box. Masks are multiplied by ``C_att``. All masks of all images
are drawn at once: the Gaussian is separable, so a mask is the outer product of a row and a
column profile.
"""
import torch
from torch import Tensor


def draw_attention_masks(
    boxes: Tensor,
    valid: Tensor,
    feature_size,
    stride: float,
    scale: float = 50.0,
    hard: bool = False,
    spread: str = "variance",
) -> Tensor:
    """
    Args:
        boxes: (B, N, 4) XYXY boxes at the input-image scale.
        valid: (B, N) bool; channels that are False are all zero ("no attention").
        feature_size: (H, W) of the feature map.
        stride: the feature map's stride (8 in FPSNet).
        scale: C_att, the value of a mask's peak.
        hard: ablation: ``scale`` everywhere inside the box.
        spread: "variance": S = diag(w/4, h/4) is the covariance (the paper's formula, in
            feature-map pixels); "std": (w/4, h/4) are the standard deviations.

    Returns:
        (B, N, H, W) masks. A box smaller than a feature pixel still marks the pixel(s) whose
        centre lies within half a pixel of its centre, so no detection gets an empty mask.
    """
    if spread not in ("variance", "std"):
        raise ValueError(f"GAUSSIAN_SPREAD must be 'variance' or 'std', got {spread!r}")
    H, W = int(feature_size[0]), int(feature_size[1])
    b = boxes.to(torch.float32) / stride
    x1, y1, x2, y2 = b.unbind(-1)  # (B, N)
    xc, yc = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = (x2 - x1).clamp(min=1e-3), (y2 - y1).clamp(min=1e-3)
    xs = torch.arange(W, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(H, device=boxes.device, dtype=torch.float32) + 0.5
    dx = xs.view(1, 1, W) - xc[..., None]  # (B, N, W)
    dy = ys.view(1, 1, H) - yc[..., None]  # (B, N, H)
    in_x = dx.abs() <= (w / 2).clamp(min=0.5)[..., None]
    in_y = dy.abs() <= (h / 2).clamp(min=0.5)[..., None]
    if hard:
        col, row = in_x.float(), in_y.float()
    else:
        vx, vy = w / 4, h / 4
        if spread == "std":
            vx, vy = vx * vx, vy * vy
        col = torch.exp(-0.5 * dx * dx / vx[..., None]) * in_x
        row = torch.exp(-0.5 * dy * dy / vy[..., None]) * in_y
    row = row * (valid.to(row.dtype) * scale)[..., None]
    return row[..., :, None] * col[..., None, :]  # (B, N, H, W)
