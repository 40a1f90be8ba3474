"""Trainer, launch helpers, config set-up and the inference timing hook."""
from .defaults import UserInputError, exit_on_user_error, load_cfg, setup_cfg  # noqa: F401
from .fast_inference import apply_fast_inference, fast_inference_copy, fold_batchnorm  # noqa: F401
from .launch import create_ddp_model, launch  # noqa: F401
from .timing import InferenceTimer, format_timing, instrument_stages  # noqa: F401
from .trainer import Trainer, build_dataset_mapper, build_optimizer, build_lr_scheduler  # noqa: F401
