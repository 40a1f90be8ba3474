"""``launch``: detectron2's multi-GPU / multi-machine launcher, plus several CPU processes.

detectron2 v0.6's ``launch`` asserts CUDA as soon as there is more than one process. With
``device="cpu"`` (``MODEL.DEVICE cpu``) this spawns ``num_processes_per_machine`` workers that join
a gloo process group instead, with detectron2's local process group set up the same way, so
``comm``, DDP and the evaluators work unchanged. On GPUs it defers to detectron2's launcher.
"""
import logging
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _find_free_port():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    main_func,
    num_processes_per_machine,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    device="cuda",
    timeout=DEFAULT_TIMEOUT,
):
    """Run ``main_func(*args)`` in ``num_processes_per_machine`` processes on each machine.

    ``device`` is ``cfg.MODEL.DEVICE``: "cpu" uses gloo, anything else NCCL via detectron2.
    """
    world_size = num_machines * num_processes_per_machine
    if not str(device).startswith("cpu") or world_size == 1:
        return d2_launch(
            main_func,
            num_processes_per_machine,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=args,
            timeout=timeout,
        )
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url=auto is only possible on one machine; pass --dist-url tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_processes_per_machine,
        args=(main_func, world_size, num_processes_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args, timeout):
    rank = machine_rank * per_machine + local_rank
    dist.init_process_group("gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout)
    for i in range(world_size // per_machine):
        group = dist.new_group(list(range(i * per_machine, (i + 1) * per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    torch.set_num_threads(max(1, torch.get_num_threads() // per_machine))
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()


def create_ddp_model(model, **kwargs):
    """detectron2's ``create_ddp_model`` that also works on CPU (no ``device_ids`` there)."""
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).is_cuda
    kwargs.setdefault("device_ids", [comm.get_local_rank()] if on_cuda else None)
    logging.getLogger(__name__).info("DDP over %d processes (%s)", comm.get_world_size(), "cuda" if on_cuda else "cpu")
    return DistributedDataParallel(model, **kwargs)
