"""``Trainer``: detectron2's ``DefaultTrainer`` driven by fastpan_d2's config keys.

It picks from the config
* the dataset mapper (``INPUT.DATASET_MAPPER_NAME``; "" = detectron2's ``DatasetMapper``),
* the optimizer (``SOLVER.OPTIMIZER`` SGD / ADAM / ADAMW, ``SOLVER.BACKBONE_MULTIPLIER``, detectron2's
  per-parameter weight decay rules, ``SOLVER.CLIP_GRADIENTS`` incl. ``CLIP_TYPE: full_model``),
* the LR schedule (detectron2's ``WarmupMultiStepLR`` / ``WarmupCosineLR`` and ``WarmupPolyLR``),
* the evaluator (``COCOPanopticEvaluator`` for ``evaluator_type == "coco_panoptic_seg"``),
and times inference during evaluation (``engine/timing.py``), adding a "timing" entry per dataset.
Evaluation runs the fast inference path the config asks for (``TEST.FOLD_BATCHNORM``,
``TEST.CHANNELS_LAST``, ``TEST.AMP``; ``engine/fast_inference.py``) on a copy of the model.
It also runs DDP on CPU (gloo) when launched with several CPU processes.
"""
import itertools
import logging
import os
import weakref
from collections import OrderedDict

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetMapper, MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.evaluation import COCOPanopticEvaluator, DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.solver import build_lr_scheduler as d2_build_lr_scheduler
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data import DATASET_MAPPER_REGISTRY
from ..data import datasets as _datasets
from .fast_inference import fast_inference_copy
from .launch import create_ddp_model
from .lr_scheduler import WarmupPolyLR
from .timing import InferenceTimer, format_timing


def build_dataset_mapper(cfg, is_train):
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if not name:
        return DatasetMapper(cfg, is_train)
    return DATASET_MAPPER_REGISTRY.get(name)(cfg, is_train)


class FullModelGradientClipping:
    """Mixin for an optimizer class: clip the gradient norm over ALL parameters before a step."""

    clip_norm_val = None

    def step(self, closure=None):
        all_params = itertools.chain(*[g["params"] for g in self.param_groups])
        torch.nn.utils.clip_grad_norm_(all_params, self.clip_norm_val)
        return super().step(closure=closure)


def _apply_lr_factors(model, param_groups, base_lr, backbone_multiplier):
    """Split the groups so that every parameter learns at its group's LR times
    ``backbone_multiplier`` (parameters of ``model.backbone``) times its own ``lr_factor`` attribute,
    if a module set one (e.g. LPSNet's deformable offset convs, DCN's beta). Exact for every
    optimizer, as it is a plain per-group LR."""
    factors = {}
    for n, p in model.named_parameters():
        f = getattr(p, "lr_factor", 1.0)
        if n.split(".")[0] == "backbone" or n.startswith("module.backbone."):
            f *= backbone_multiplier
        if f != 1.0:
            factors[id(p)] = f
    if not factors:
        return param_groups
    split = []
    for group in param_groups:
        by_factor = {}
        for p in group["params"]:
            by_factor.setdefault(factors.get(id(p), 1.0), []).append(p)
        for f, ps in by_factor.items():
            split.append({**group, "params": ps, "lr": group.get("lr", base_lr) * f} if f != 1.0
                         else {**group, "params": ps})
    return split


def build_optimizer(cfg, model):
    """SGD / Adam / AdamW with a backbone LR multiplier, per-parameter ``lr_factor`` and optional
    gradient clipping."""
    base_lr = cfg.SOLVER.BASE_LR
    overrides = {}
    params = get_default_optimizer_params(
        model,
        base_lr=base_lr,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        overrides=overrides,
    )
    params = _apply_lr_factors(model, params, base_lr, cfg.SOLVER.BACKBONE_MULTIPLIER)
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        cls, kwargs = torch.optim.SGD, dict(momentum=cfg.SOLVER.MOMENTUM, nesterov=cfg.SOLVER.NESTEROV)
    elif name == "ADAM":
        cls, kwargs = torch.optim.Adam, dict(betas=tuple(cfg.SOLVER.BETAS))
    elif name == "ADAMW":
        cls, kwargs = torch.optim.AdamW, dict(betas=tuple(cfg.SOLVER.BETAS))
    else:
        raise ValueError(f"Unknown SOLVER.OPTIMIZER {cfg.SOLVER.OPTIMIZER!r}; expected SGD, ADAM or ADAMW")
    kwargs["weight_decay"] = cfg.SOLVER.WEIGHT_DECAY
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        cls = type(cls.__name__ + "WithFullModelGradientClipping", (FullModelGradientClipping, cls),
                   {"clip_norm_val": clip.CLIP_VALUE})
        return cls(params, base_lr, **kwargs)
    return maybe_add_gradient_clipping(cfg, cls)(params, base_lr, **kwargs)


def build_lr_scheduler(cfg, optimizer):
    if cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR":
        return WarmupPolyLR(
            optimizer,
            cfg.SOLVER.MAX_ITER,
            warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
            warmup_iters=cfg.SOLVER.WARMUP_ITERS,
            warmup_method=cfg.SOLVER.WARMUP_METHOD,
            power=cfg.SOLVER.POLY_LR_POWER,
            constant_ending=cfg.SOLVER.POLY_LR_CONSTANT_ENDING,
        )
    return d2_build_lr_scheduler(cfg, optimizer)


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        # DefaultTrainer.__init__, except that DDP is created on CPU too.
        TrainerBase.__init__(self)
        logger = logging.getLogger("detectron2")
        if not logger.isEnabledFor(logging.INFO):
            setup_logger()
        _datasets.configure_synthetic_from_cfg(cfg)
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=build_dataset_mapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_dataset_mapper(cfg, False))

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type in ("coco_panoptic_seg", "cityscapes_panoptic_seg"):
            return COCOPanopticEvaluator(dataset_name, output_folder)
        raise NotImplementedError(f"No panoptic evaluator for dataset {dataset_name} (type {evaluator_type})")

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate on every ``cfg.DATASETS.TEST`` and time inference.

        Returns ``{dataset_name: {"panoptic_seg": {...}, "timing": {...}}}`` (keyed by dataset even
        when there is one; detectron2's ``EvalHook`` flattens either form).
        """
        logger = logging.getLogger(__name__)
        _datasets.configure_synthetic_from_cfg(cfg)
        if evaluators is not None and not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        results = OrderedDict()
        model = fast_inference_copy(model, cfg)
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            data_loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, dataset_name)
            timing_cfg = cfg.TEST.TIMING
            if timing_cfg.ENABLED:
                with InferenceTimer(model, warmup=timing_cfg.WARMUP) as timer:
                    res = inference_on_dataset(model, data_loader, evaluator)
                timing = timer.summary()
            else:
                res = inference_on_dataset(model, data_loader, evaluator)
            if comm.is_main_process():
                res = dict(res)
                if timing_cfg.ENABLED:
                    res["timing"] = {k: v for k, v in timing.items() if k != "stages_ms"}
                    res["timing"].update({f"stage_{k}_ms": v for k, v in timing["stages_ms"].items()})
                    logger.info("Inference timing on %s: %s", dataset_name, format_timing(timing))
                logger.info("Evaluation results for %s in csv format:", dataset_name)
                print_csv_format({k: v for k, v in res.items() if k != "timing"})
            results[dataset_name] = res
        return results
