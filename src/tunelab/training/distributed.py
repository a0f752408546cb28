"""torch.distributed for a run that torchrun (or `tunelab train --nproc N`) launched: the process group from
torchrun's environment, each rank's share of a global batch, DDP around the model, and the reductions that
make a multi-process run's figures equal a single process's.

Why a share of each global batch rather than PyTorch's DistributedSampler: the batches of a fit are length-
bucketed and ordered by (seed, epoch) over the whole split (data/encoding.py); every rank builds the same
global batch and keeps rows `rank::world_size` of it, so `train.batch_size` stays the global batch, every
example is seen once an epoch, and the optimizer sees the gradient a single process would (DDP averages the
ranks' gradients; `loss_scale` weighs each rank's share by its size). The padding width is the global batch's,
so each row is computed exactly as in one process.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

from tunelab.data.encoding import Batch, EncodedSplit
from tunelab.errors import TunelabError
from tunelab.inference.predict import is_labelled, predict_logits
from tunelab.tasks.base import Outputs, Task
from tunelab.training.sharded import is_sharded

__all__ = ["Distributed", "SINGLE", "from_environment", "launched_world_size", "gather_outputs",
           "is_main_process"]

# a rank that waits longer than this for the others (one died, or hangs) stops with an error naming the step
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: rank 0 of 1 in a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    sharded: bool = False  # FSDP (train.distributed: fsdp) rather than DDP: training/sharded.py

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory, checkpoints, reports and the console."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def share(self, batch: Batch) -> Batch:
        """This rank's rows of a global batch: `rank::world_size`. A rank left without a row (a last batch
        smaller than the world) gets row 0 with weight 0 (`loss_scale`), so every rank joins each gradient
        all-reduce and the sum is unchanged."""
        if not self.active:
            return batch
        rows = torch.arange(self.rank, len(batch), self.world_size)
        return batch.rows(rows if len(rows) else torch.zeros(1, dtype=torch.long))

    def loss_scale(self, share: Batch, global_rows: int, denominator: int) -> float:
        """The factor on a share's mean loss so that DDP's average over ranks gives the single-process gradient
        of the global batch: len(share) * world / denominator (0 for a stand-in row)."""
        if not self.active:
            return len(share) / denominator
        owned = len(range(self.rank, global_rows, self.world_size))
        return owned * self.world_size / denominator

    def wrap(self, model: nn.Module, device: torch.device, probe: Batch) -> nn.Module:
        """`model` under DDP for the trainable parameters now set (re-wrapped when gradual unfreezing changes
        them); the model itself when single-process or nothing trains. `probe` (the first batch) finds whether
        a trainable parameter takes no part in the forward pass (BERT's pooler under token classification):
        only then must DDP search the graph for them every step."""
        if not self.active or self.sharded or not any(p.requires_grad for p in model.parameters()):
            return model  # an FSDP twin runs its own forward (its units gather their parameters)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=_skips_trainable(model, probe, device))

    def seed_ranks(self, seed: int) -> None:
        """Each rank its own torch stream for the fit (dropout): with one seed everywhere the ranks' rows would
        share their dropout masks. The model was built before, from the common seed (and DDP broadcasts rank 0's)."""
        if self.active:
            torch.manual_seed(seed * 1_000_003 + self.rank)

    def any(self, flag: bool) -> bool:
        """Whether `flag` holds on some rank: a stop signal reaches the ranks at different steps, and all must
        stop (and checkpoint) after the same one."""
        if not self.active:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean_by_weight(self, value: float, weight: float) -> float:
        """The weighted mean of one number over ranks (each rank's share of a loss): one all-reduce."""
        if not self.active:
            return value
        both = torch.tensor([value * weight, weight], dtype=torch.float64)
        dist.all_reduce(both)
        return float(both[0] / both[1]) if both[1] else float("nan")

    def gather(self, item: Any) -> list[Any]:
        """Every rank's `item`, in rank order, on every rank (evaluation's shards)."""
        if not self.active:
            return [item]
        items: list[Any] = [None] * self.world_size
        dist.all_gather_object(items, item)
        return items

    def from_machine_leader(self, item: Any) -> Any:
        """The `item` of this machine's first process (local rank 0), on every process of the machine: what
        the processes sharing one disk agree on (the activation cache's entries and folders)."""
        if not self.active:
            return item
        node = int(os.environ.get("GROUP_RANK", "0"))
        everyone = self.gather((node, self.local_rank, item))
        return next(value for n, local, value in everyone if n == node and local == 0)

    def broadcast(self, item: Any) -> Any:
        """Rank 0's `item` on every rank."""
        if not self.active:
            return item
        box = [item]
        dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Distributed()


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or a single process: known from the environment before any set-up."""
    return int(os.environ.get("RANK", "0")) == 0


def launched_world_size() -> int:
    """The world size torchrun set (1 when this process was not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def from_environment(setting: str, device: torch.device, batch_size: int) -> Distributed:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, ...): gloo on CPU, nccl on
    CUDA. `setting` is `train.distributed`: off keeps every process single (each would train alone); fsdp
    shards the model (training/sharded.py), auto and ddp replicate it."""
    world = launched_world_size()
    if world <= 1 or setting == "off":
        return SINGLE
    if batch_size % world:
        raise TunelabError(f"train.batch_size: {batch_size} does not divide among {world} processes; "
                           f"train.batch_size is the global batch: give a multiple of {world}")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                       local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")), sharded=setting == "fsdp")


def gather_outputs(dist: "Distributed", model: nn.Module, split: EncodedSplit, task: Task, batches: Iterable[Batch],
                   device: torch.device, precision: str, loss_fn: Optional[nn.Module]) -> tuple[Outputs, float]:
    """The split's outputs and mean loss when each rank predicts every world_size-th batch: the rows are
    gathered into split order on every rank, so metrics (macro-F1, entity F1, Spearman) are computed from
    exactly the outputs one process would have, not averaged per shard."""
    mine: list[torch.Tensor] = []
    lockstep = is_sharded(model)  # FSDP units gather their parameters in every forward: all ranks run as many
    if lockstep:
        batches = list(batches)

    def my_batches() -> Iterator[Batch]:
        for number, batch in enumerate(batches):
            if number % dist.world_size == dist.rank:
                mine.append(batch.indices)
                yield batch

    labelled = is_labelled(split)
    outputs, loss = predict_logits(model, my_batches(), len(split), device, precision,
                                   loss_fn=loss_fn if labelled else None,
                                   reduce=task.reduce_outputs if labelled else None)
    if lockstep and batches:
        _idle_forwards(model, batches[0], -(-len(batches) // dist.world_size) - len(mine), device)
    rows = torch.cat(mine) if mine else torch.zeros(0, dtype=torch.long)
    part = outputs[rows] if isinstance(outputs, torch.Tensor) else [outputs[i] for i in rows.tolist()]
    shards = dist.gather((rows, part, loss, len(rows)))
    return _assemble(shards, len(split)), _pooled_loss(shards)


@torch.no_grad()
def _idle_forwards(model: nn.Module, batch: Batch, count: int, device: torch.device) -> None:
    """Forward passes whose outputs are dropped: a rank with fewer batches of the split than the busiest one
    runs them after its own, before any other collective, so every rank's FSDP gathers pair up."""
    args, kwargs = batch.to(device).model_inputs()
    for _ in range(count):
        model(*args, **kwargs)


def _assemble(shards: list[tuple[torch.Tensor, Any, float, int]], n: int) -> Outputs:
    tensors = [s for s in shards if isinstance(s[1], torch.Tensor) and s[1].dim() == 2 and len(s[0])]
    if tensors:
        whole = torch.empty((n, tensors[0][1].shape[1]))
        for rows, part, _, _ in tensors:
            whole[rows] = part
        return whole
    if all(isinstance(s[1], torch.Tensor) for s in shards):  # nothing to predict
        return torch.empty((0, 0))
    listed: list[torch.Tensor] = [torch.empty(0)] * n
    for rows, part, _, _ in shards:
        for i, row in zip(rows.tolist(), part):
            listed[i] = row
    return listed


def _pooled_loss(shards: list[tuple[torch.Tensor, Any, float, int]]) -> float:
    counted = [(loss, count) for _, _, loss, count in shards if count and loss == loss]  # NaN: no targets
    total = sum(count for _, count in counted)
    return sum(loss * count for loss, count in counted) / total if total else float("nan")


def _skips_trainable(model: nn.Module, batch: Batch, device: torch.device) -> bool:
    """Whether a forward pass of `batch` leaves a trainable parameter out of the autograd graph. The pass runs
    under a forked RNG, so dropout's draws (and a resumed run's) are those of a run without it."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        args, kwargs = batch.to(device).model_inputs()
        output = model(*args, **kwargs)
    reached: set[int] = set()
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf tensor the graph reaches
            reached.add(id(node.variable))
        stack.extend(child for child, _ in node.next_functions)
    return any(p.requires_grad and id(p) not in reached for p in model.parameters())
