"""Multi-process training under torchrun: process group, rank-aware device, DDP wrapping, epoch shards.

``torchrun --nproc_per_node N main.py ...`` starts N processes with WORLD_SIZE / RANK / LOCAL_RANK in their
environment; :func:`init` then joins them (NCCL on CUDA, Gloo on the CPU) and each rank trains on
``cuda:LOCAL_RANK``. Without those variables (or with WORLD_SIZE=1) every helper here is a no-op and
:func:`wrap_ddp` returns the module unchanged, so a plain ``python main.py`` behaves exactly as before.

Conventions of both trainers: TRAIN.BATCH_SIZE is per process (the effective batch is N x BATCH_SIZE, the
learning rates are not scaled); every rank sees a disjoint shard of each epoch (:class:`EpochShardSampler`);
the DDP wrappers are used for the training forwards only, while the plain modules are saved, loaded and
sampled; only rank 0 logs at INFO and writes files; the checkpoints hold the plain modules' state_dicts,
so a run resumes at another world size.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from ..config import ConfigError
from .checkpoint import rng_state, set_rng_state

__all__ = ['launched', 'init', 'is_distributed', 'world_size', 'rank', 'local_rank', 'is_main', 'barrier',
           'destroy', 'main_first', 'broadcast_object', 'any_rank', 'mean_over_ranks', 'rank_seed',
           'gather_rng_states', 'restore_rng', 'rescale_step', 'EpochShardSampler', 'shard_sampler', 'DDP',
           'wrap_ddp', 'local_batchnorm', 'NullMetricsWriter']

log = logging.getLogger('attngan')

_local_groups: list | None = None  # one single-rank group per rank (TRAIN.SYNC_BN: rank-0-only forwards)


# ------------------------------------------------------------------ process group
def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, '')
    try:
        return int(value) if value != '' else default
    except ValueError:
        raise ConfigError(f'environment variable {name}={value!r} is not an integer (set by torchrun)') from None


def launched() -> bool:
    """True when started by torchrun (or an equivalent launcher) with WORLD_SIZE > 1."""
    return _env_int('WORLD_SIZE', 1) > 1


def init(use_cuda: bool) -> bool:
    """Join the process group described by the environment (idempotent); False when not launched.

    use_cuda: NCCL on ``cuda:LOCAL_RANK`` (set as the current device), else Gloo on the CPU.
    """
    if is_distributed():
        return True
    if not launched():
        return False
    if not dist.is_available():
        raise ConfigError('WORLD_SIZE > 1 but this PyTorch build has no torch.distributed')
    if use_cuda:
        n = torch.cuda.device_count()
        if local_rank() >= n:
            raise ConfigError(f'LOCAL_RANK={local_rank()}, but only {n} GPU(s) are visible: '
                              f'use at most --nproc_per_node {n}')
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend='nccl' if use_cuda else 'gloo')
    atexit.register(destroy)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    """LOCAL_RANK of the environment (0 when not launched): the GPU index of this process."""
    return _env_int('LOCAL_RANK', 0)


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one rank that logs and writes files."""
    return rank() == 0


def _nccl() -> bool:
    return is_distributed() and dist.get_backend() == 'nccl'


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU with NCCL, else the CPU."""
    return torch.device('cuda', torch.cuda.current_device()) if _nccl() else torch.device('cpu')


def barrier() -> None:
    if is_distributed():
        if _nccl():
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def destroy() -> None:
    """Leave the process group (idempotent; registered at exit by :func:`init`)."""
    global _local_groups
    if is_distributed():
        dist.destroy_process_group()
    _local_groups = None


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (e.g. building an image cache once)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


# ------------------------------------------------------------------ agreement between ranks
def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable object; e.g. the run folder or a random seed)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one (e.g. a Ctrl-C seen by one process)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(values: Mapping[str, Any]) -> dict:
    """``{name: float}``: each scalar (tensor or number) averaged over the ranks (one all_reduce)."""
    if not values or not is_distributed():
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in values.items()}
    stacked = torch.stack([torch.as_tensor(v).detach().float().reshape(()).to(_comm_device())
                           for v in values.values()])
    dist.all_reduce(stacked)
    return dict(zip(values, (stacked / world_size()).tolist()))


# ------------------------------------------------------------------ random numbers and resume
def rank_seed(seed: int) -> int:
    """Seed of this rank's RNGs: ``seed`` on rank 0 (so rank 0 draws as a single process), distinct on
    the others (their noise, crops and caption choices must differ). Model weights are still equal on
    all ranks: DDP copies rank 0's at wrapping."""
    return (seed + 100003 * rank()) % 2 ** 32


def gather_rng_states() -> list | None:
    """Every rank's RNG states (list indexed by rank) for an exact resume at the same world size, or None
    in a single process. A collective: every rank must call it."""
    if not is_distributed():
        return None
    states = [None] * world_size()
    dist.all_gather_object(states, rng_state())
    return states


def restore_rng(state: Mapping) -> None:
    """Set this rank's RNGs from a full checkpoint: its own saved states when the world size is unchanged;
    otherwise rank 0's (``state['rng']``), re-seeded on the other ranks so that they draw differently."""
    states = state.get('rng_ranks')
    if states is not None and len(states) == world_size():
        set_rng_state(states[rank()])
        return
    set_rng_state(state['rng'])
    if rank() > 0:
        from .run import seed_everything  # run imports this module
        seed_everything(rank_seed(int(torch.randint(0, 2 ** 31, ()).item())))


def rescale_step(step: int, saved_world_size: int) -> int:
    """Batches to skip in the resumed epoch: ``step`` batches done by each of ``saved_world_size`` ranks,
    spread over this world size (exact when unchanged; the same number of samples when it changes)."""
    n = world_size()
    if saved_world_size == n:
        return step
    new = step * saved_world_size // n
    log.warning('resuming a %d-process checkpoint in %d process(es): the epoch continues after batch %d of '
                'the new shards (%d of the old); the remaining samples of that epoch differ',
                saved_world_size, n, new, step)
    return new


# ------------------------------------------------------------------ data
class EpochShardSampler(torch.utils.data.Sampler):
    """Rank ``rank``'s share of one shuffled epoch of ``n`` items.

    Each epoch's permutation is drawn from ``generator``, which :func:`~attngan.engine.loop.epoch_batches`
    seeds with (seed, epoch) on every rank before iterating, so all ranks draw the same permutation and
    take disjoint slices of it (every ``num_replicas``-th index from ``rank``; the last
    ``n % num_replicas`` items are left out, so all ranks run the same number of steps). With one replica
    this is the order of the DataLoader's own shuffle, and skipping batches on resume works unchanged.
    """

    def __init__(self, n: int, num_replicas: int, rank: int, generator: torch.Generator) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f'EpochShardSampler: rank {rank} outside 0..{num_replicas - 1}')
        self.n, self.num_replicas, self.rank, self.generator = n, num_replicas, rank, generator

    def __len__(self) -> int:
        return self.n // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        perm = torch.randperm(self.n, generator=self.generator)
        yield from perm[self.rank:len(self) * self.num_replicas:self.num_replicas].tolist()


def shard_sampler(n: int, generator: torch.Generator) -> EpochShardSampler | None:
    """This rank's :class:`EpochShardSampler` for a shuffled train split, or None in a single process
    (the DataLoader's own shuffle)."""
    if not is_distributed():
        return None
    return EpochShardSampler(n, world_size(), rank(), generator)


# ------------------------------------------------------------------ models
class DDP(DistributedDataParallel):
    """DistributedDataParallel that also answers the wrapped module's attributes (``netD.COND_DNET``,
    ``text_encoder.init_hidden``), so the training code runs unchanged on a wrapped module.

    Calls made through such attributes bypass DDP's forward; their parameters' gradients are still
    averaged, as DDP hooks every parameter's gradient accumulation. A forward whose backward reaches none
    of the parameters is harmless (a D in train_step's G step, whose backward stops at G's parameters):
    DDP only fails on a backward that produces some of the gradients but not all.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == 'module':
                raise
            return getattr(self.module, name)


def wrap_ddp(module: nn.Module, device: torch.device, *, sync_bn: bool = False) -> nn.Module:
    """``module`` in a :class:`DDP` wrapper on ``device``; the module itself when not distributed.

    sync_bn: convert its BatchNorm layers to SyncBatchNorm in place (TRAIN.SYNC_BN; CUDA only: PyTorch
    has no CPU SyncBatchNorm); batch statistics then span all ranks. The module's parameters and buffers
    are made equal to rank 0's.
    """
    if not is_distributed():
        return module
    if sync_bn:
        if torch.device(device).type != 'cuda':
            raise ConfigError('TRAIN.SYNC_BN=True needs CUDA (PyTorch has no SyncBatchNorm on the CPU); '
                              'set TRAIN.SYNC_BN=False for a CPU (gloo) run')
        _make_local_groups()
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if converted is not module:
            raise ConfigError(f'TRAIN.SYNC_BN: cannot convert a bare {type(module).__name__} in place')
    device_ids = [torch.device(device).index] if torch.device(device).type == 'cuda' else None
    return DDP(module, device_ids=device_ids)


def _make_local_groups() -> None:
    global _local_groups
    if _local_groups is None:  # new_group is a collective: every rank creates every group, in order
        _local_groups = [dist.new_group([r]) for r in range(world_size())]


@contextlib.contextmanager
def local_batchnorm(module: nn.Module) -> Iterator[None]:
    """Let the SyncBatchNorm layers of ``module`` use this rank's batch only, for forwards that rank 0
    makes alone (sample pictures); a no-op without SyncBatchNorm or outside a process group."""
    layers = [m for m in module.modules() if isinstance(m, nn.SyncBatchNorm)]
    if not layers or not is_distributed():
        yield
        return
    if _local_groups is None:
        raise RuntimeError('local_batchnorm: SyncBatchNorm layers not made by wrap_ddp(sync_bn=True)')
    saved = [m.process_group for m in layers]
    for m in layers:
        m.process_group = _local_groups[rank()]
    try:
        yield
    finally:
        for m, g in zip(layers, saved):
            m.process_group = g


class NullMetricsWriter:
    """Stands in for :class:`~attngan.engine.logger.MetricsWriter` on ranks other than 0."""

    def write(self, record: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass
