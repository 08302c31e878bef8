"""Multi-process training with PyTorch's own engine (``torchrun`` + DistributedDataParallel).

``torchrun --nproc_per_node 2 -m cnnlab train ...`` starts one process per rank with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`init_distributed` joins the process group (gloo on
CPU, NCCL on GPU). The data is sharded per rank by :class:`cnnlab.data.loader.TensorLoader`, and
only rank 0 writes files.

>>> init_distributed("cpu").world_size  # a plain process is a world of one
1
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = [
    "DistInfo",
    "agree_on_step",
    "average_buffers",
    "cleanup",
    "gather_states",
    "init_distributed",
    "state_hash",
    "sum_over_ranks",
    "wrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size``, GPU ``local_rank``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints progress."""
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1``; otherwise a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` in a multi-process job (gradients all-reduced), else ``model``."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def average_buffers(module: nn.Module, info: DistInfo) -> None:
    """Average the floating-point buffers (batch-norm running statistics) over all ranks, in place.

    DistributedDataParallel keeps the parameters identical, but each rank updates its batch-norm
    statistics on its own shard in its last forward pass; averaging them at the end of an epoch makes
    every replica identical again (and is a better estimate than any one shard's).
    """
    if not info.enabled:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(info.world_size)


def agree_on_step(loss: torch.Tensor, stop: bool, info: DistInfo) -> tuple[torch.Tensor, bool]:
    """The mean loss over all ranks and whether any rank asked to stop (Ctrl-C), in one all-reduce.

    Every rank then sees the same loss (so a NaN stops all of them at the same step) and the same stop
    request (so no rank is left waiting in a collective for one that has left the loop).
    """
    if not info.enabled:
        return loss, stop
    both = torch.stack([loss.detach().float().reshape(()), torch.tensor(float(stop), device=loss.device)])
    dist.all_reduce(both, op=dist.ReduceOp.SUM)
    return both[0] / info.world_size, bool(both[1] > 0)


def sum_over_ranks(values: list[float], info: DistInfo) -> list[float]:
    """``values`` summed element-wise over all ranks (float64; unchanged in a single process)."""
    if not info.enabled:
        return list(values)
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return [float(v) for v in total]


def gather_states(local: torch.Tensor, info: DistInfo) -> list[torch.Tensor] | None:
    """Every rank's copy of ``local`` (a generator state, the same size on all ranks), in rank order.

    ``None`` in a single process, where there is nothing to gather.
    """
    if not info.enabled:
        return None
    gathered = [torch.empty_like(local) for _ in range(info.world_size)]
    dist.all_gather(gathered, local)
    return gathered


def state_hash(model: nn.Module) -> str:
    """sha256 over the model's state dict (names, shapes and bytes), to compare replicas across ranks."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cleanup(info: DistInfo) -> None:
    """Leave the process group (a no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
