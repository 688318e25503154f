"""Pieces of a training loop both trainers use: reproducible epoch order, NaN guard, timing."""
from __future__ import annotations

import itertools
import math
from typing import Iterator, Mapping

import torch

from ..data import build_dataloader
from ..errors import ConfigError, TrainingStopped
from . import distributed as dist


class NonFiniteLossError(TrainingStopped):
    """A loss became NaN or Inf; the message names the step and the loss."""


def epoch_batches(loader: torch.utils.data.DataLoader, generator: torch.Generator, seed: int, epoch: int,
                  skip: int = 0) -> Iterator:
    """Iterate one epoch in an order fixed by (seed, epoch), skipping the first ``skip`` batches.

    ``generator`` is the one the DataLoader was built with (it drives the shuffle and the workers' seeds),
    so a resumed run sees exactly the batches the interrupted run would have seen. Skipped batches are
    loaded and dropped, which keeps each worker's random crops in step.
    """
    generator.manual_seed(seed * 100003 + epoch)
    it = iter(loader)
    if skip:
        for _ in itertools.islice(it, skip):
            pass
    return it


def train_loader(cfg, dataset, generator: torch.Generator, device) -> torch.utils.data.DataLoader:
    """The shuffled, drop_last train loader of this process (both trainers).

    Under torchrun TRAIN.BATCH_SIZE is per process and each rank draws its own shard of every epoch.
    Raises ValueError when the split cannot fill one batch.
    """
    loader, _ = build_dataloader(cfg, 'train', shuffle=True, drop_last=True, dataset=dataset, generator=generator,
                                 device=device, sampler=dist.shard_sampler(len(dataset), generator))
    if len(loader) == 0:
        procs = f' x {dist.world_size()} processes' if dist.is_distributed() else ''
        raise ConfigError(f'the train split of {cfg.DATA_DIR} has {len(dataset)} images, fewer than '
                         f'TRAIN.BATCH_SIZE={cfg.TRAIN.BATCH_SIZE}{procs}: nothing to train on')
    return loader


def keeps_pictures(epoch: int, cfg) -> bool:
    """Whether the per-epoch pictures of ``epoch`` are kept under the epoch's name (both trainers).

    The pictures made once per epoch overwrite ``*_latest*`` files; the snapshot epochs (epoch %
    TRAIN.SNAPSHOT_INTERVAL == 0, as the checkpoints) and the last epoch also keep a copy named after the
    epoch. Kept for every epoch, a 600-epoch CUB run would fill ~15 GB per trainer with ~10 MB pictures.
    """
    return epoch % cfg.TRAIN.SNAPSHOT_INTERVAL == 0 or epoch == cfg.TRAIN.MAX_EPOCH - 1


def check_finite(losses: Mapping[str, torch.Tensor], step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first non-finite loss (one host sync)."""
    values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
    if bool(torch.isfinite(values).all()):
        return
    for name, v in zip(losses, values.tolist()):
        if not math.isfinite(v):
            raise NonFiniteLossError(f'step {step}: loss {name} is {v}; stopping. '
                                     f'The last good checkpoint is left untouched.')


def stop_reason(stop_requested: bool, max_steps: int, done: int) -> str | None:
    """Why a training loop should stop after this step (Ctrl-C/SIGTERM or TRAIN.MAX_STEPS), else None.

    Under torchrun every rank gets the same answer (a signal seen by one process stops all of them), so
    that all ranks join the checkpoint together.
    """
    if dist.any_rank(stop_requested):
        return 'interrupted'
    if max_steps and done >= max_steps:
        return f'TRAIN.MAX_STEPS={max_steps} reached'
    return None
