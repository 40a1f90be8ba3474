"""Poly learning-rate schedule (FPSNet, YOSO's Cityscapes recipe): lr = base · (1 − t/T)^power."""
import torch
from detectron2.solver.lr_scheduler import _get_warmup_factor_at_iter


class WarmupPolyLR(torch.optim.lr_scheduler.LRScheduler):
    def __init__(self, optimizer, max_iters, warmup_factor=0.001, warmup_iters=1000,
                 warmup_method="linear", last_epoch=-1, power=0.9, constant_ending=0.0):
        self.max_iters = max_iters
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        self.power = power
        self.constant_ending = constant_ending
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        warmup = _get_warmup_factor_at_iter(self.warmup_method, self.last_epoch, self.warmup_iters, self.warmup_factor)
        poly = (1.0 - min(self.last_epoch, self.max_iters) / self.max_iters) ** self.power
        if self.constant_ending > 0 and warmup == 1.0 and poly < self.constant_ending:
            poly = self.constant_ending
        return [base_lr * warmup * poly for base_lr in self.base_lrs]

    def _compute_values(self):
        return self.get_lr()
