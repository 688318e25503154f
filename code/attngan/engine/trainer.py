"""The one training loop, shared by DAMSM pretraining and the GANs.

A :class:`Task` says what a run trains (``attngan.damsm.DAMSMTask``, ``attngan.gan.GANTask``): it builds
its data and networks from the config, takes one step on a batch, does what an epoch's end asks for
(validation, pictures, the original's snapshot files) and holds its state. The :class:`Trainer` owns
everything around that, the same for every task:

* epochs and steps in an order fixed by (seed, epoch), ``TRAIN.MAX_EPOCH`` and ``TRAIN.MAX_STEPS``;
* the exact resume: the checkpoint's position, the batches before it replayed and dropped, the RNG states
  restored after them (the config rules are in ``engine/resume.py``);
* the full checkpoint (``train_state.pt``) every ``TRAIN.CHECKPOINT_INTERVAL`` epochs, on a stop and at
  the end, written atomically;
* logging: the progress bar, ``metrics.jsonl`` (records after the checkpoint dropped on resume) and
  TensorBoard;
* Ctrl-C / SIGTERM, the NaN guard, DDP's agreement on when to stop, and one exit path.

A stop in an epoch's last step (a signal or TRAIN.MAX_STEPS) finishes that epoch's end first and
checkpoints at the boundary, so every checkpoint is either inside an epoch or at its start.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import torch
from tqdm import tqdm

from ..config import Config, ConfigError
from . import distributed as dist
from .checkpoint import TRAIN_STATE_NAME, rng_state, save_train_state
from .logger import MetricsWriter
from .loop import check_finite, epoch_batches, stop_reason, train_loader
from .run import Run
from .signals import GracefulInterrupt

log = logging.getLogger('attngan')

__all__ = ['Task', 'Trainer', 'TASKS', 'task_class']

#: The built-in tasks by name (TRAIN.TASK); any other task is named 'package.module:Class'.
TASKS = {'gan': 'attngan.gan:GANTask', 'damsm': 'attngan.damsm:DAMSMTask'}


class Task:
    """What one kind of run trains; the :class:`Trainer` drives it. Subclasses set the class attributes and
    implement the methods that raise NotImplementedError; the others have defaults.

    Call order: ``build_dataset`` (the train split), ``build`` (networks, optimizers; the loader exists), then
    ``load_state`` when resuming; per epoch ``begin_epoch``, then per batch ``step`` and ``after_step``, then
    ``end_epoch``; at the run's end ``end_run``. ``state_dict`` is called on every rank when checkpointing.
    """

    #: checkpoint kind and metrics record prefix ('gan' -> 'gan_step' / 'gan_epoch' records)
    kind: str = ''
    #: progress-bar title
    title: str = ''
    #: the metrics records' name for the iteration count, and the checkpoint's
    position_key: str = 'step'
    counter_key: str = 'iteration'

    def __init__(self, cfg: Config, run: Run) -> None:
        self.cfg, self.run, self.device = cfg, run, run.device
        self.main = dist.is_main()

    def build_dataset(self) -> torch.utils.data.Dataset:
        raise NotImplementedError

    def build(self, dataset, loader, resuming: bool) -> int:
        """Build networks and optimizers; return the first epoch (> 0 when continuing the original's way,
        from TRAIN.NET_E / TRAIN.NET_G, which a resume from a full checkpoint ignores)."""
        raise NotImplementedError

    def load_state(self, state: Mapping[str, Any], epoch: int, step: int) -> None:
        """Restore what :meth:`state_dict` saved (``epoch``/``step``: where the run continues)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    @property
    def check_every_step(self) -> bool:
        """Whether the NaN guard checks every step (one host sync each) or only at log steps."""
        return True

    def begin_epoch(self, epoch: int, skip: int) -> None:
        """Before the epoch's first batch (``skip``: batches this epoch already did before a resume)."""

    def step(self, batch) -> dict[str, torch.Tensor]:
        """One training step on ``batch``; the losses as detached tensors (no host sync needed)."""
        raise NotImplementedError

    def is_log_step(self, step: int, iteration: int, n_batches: int) -> bool:
        """Whether to log after the epoch's ``step``-th batch (1-based; ``iteration``: run total)."""
        raise NotImplementedError

    def after_step(self, epoch: int, step: int, iteration: int, logged: bool) -> None:
        """After each step (pictures at intervals); ``logged``: this step was a log step."""

    def end_epoch(self, epoch: int, n_steps: int, losses: Mapping[str, torch.Tensor] | None) -> dict:
        """The epoch's end (validation, pictures, snapshots); returns the fields of its metrics record.
        ``n_steps``: the epoch's batches; ``losses``: the last step's, None if no step of it ran here."""
        return {}

    def end_run(self) -> None:
        """After the last epoch (the original's final files)."""

    def progress(self, values: Mapping[str, float]) -> dict:
        """The progress bar's postfix from a log step's values."""
        return {k: f'{v:.2f}' for k, v in values.items()}


class Trainer:
    """Runs ``task`` for ``cfg.TRAIN.MAX_EPOCH`` epochs in the run folder ``run``, resuming from
    ``resume_state`` (a loaded ``train_state.pt``) when given. :meth:`fit` returns the last epoch's record."""

    def __init__(self, cfg: Config, run: Run, task: Task, resume_state: Mapping | None = None) -> None:
        self.cfg, self.run, self.task = cfg, run, task
        self.resume_state = resume_state
        self.main = dist.is_main()
        self.epoch = self.step_in_epoch = self.iteration = 0
        self.last: dict = {}
        self._saved_at: tuple | None = None

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg, task = self.cfg, self.task
        self.generator = torch.Generator()  # drives the shuffle (see epoch_batches)
        with dist.main_first():  # rank 0 builds a missing image cache alone
            self.dataset = task.build_dataset()
        self.loader = train_loader(cfg, self.dataset, self.generator, self.run.device)
        log.info('%s: %d train images, %d batches of %d per process', task.title, len(self.dataset),
                 len(self.loader), cfg.TRAIN.BATCH_SIZE)
        state = self.resume_state
        self.epoch = task.build(self.dataset, self.loader, resuming=state is not None)
        if state is not None:
            self.epoch = state['epoch']
            self.step_in_epoch = dist.rescale_step(state['step'], state.get('world_size', 1))
            self.iteration = self._saved_iteration(state)
            task.load_state(state, self.epoch, self.step_in_epoch)
            log.info('resuming at epoch %d, batch %d (iteration %d)', self.epoch, self.step_in_epoch, self.iteration)
            if self.epoch >= cfg.TRAIN.MAX_EPOCH:
                log.info('the run is complete (TRAIN.MAX_EPOCH=%d); raise TRAIN.MAX_EPOCH to train on',
                         cfg.TRAIN.MAX_EPOCH)
        # else: a new run, or the original's continuation from TRAIN.NET_G / NET_E, which counts its
        # iterations from 0 again (the original's gen_iterations = 0)
        tb = self.run.root / 'tensorboard' if cfg.TRAIN.TENSORBOARD else None
        self.metrics = (MetricsWriter(self.run.metrics_path, tb, resume_step=self.iteration if state else None)
                        if self.main else dist.NullMetricsWriter())

    def _saved_iteration(self, state: Mapping) -> int:
        """The checkpoint's iteration count (DAMSM checkpoints before it was stored: from the position)."""
        if self.task.counter_key in state:
            return int(state[self.task.counter_key])
        return state['epoch'] * len(self.loader) + self.step_in_epoch

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        self._setup()
        self.run.write_config()  # everything is built: this start will train
        try:
            with GracefulInterrupt() as interrupt:
                why = self._epochs(interrupt)
            if why is None:
                self._end_of_run()
        finally:
            self.metrics.close()
        return self.last

    def _epochs(self, interrupt: GracefulInterrupt) -> str | None:
        """Train epoch after epoch; returns why the run stopped early, or None when all epochs ran."""
        for epoch in range(self.epoch, self.cfg.TRAIN.MAX_EPOCH):
            self.epoch = epoch
            why, mid_epoch = self._one_epoch(interrupt)
            if mid_epoch:
                self._checkpoint(epoch, self.step_in_epoch)
                log.info('%s at epoch %d, batch %d: checkpoint written to %s', why, epoch, self.step_in_epoch,
                         self.run.model_dir / TRAIN_STATE_NAME)
                return why
            # all ranks must agree before the checkpoint's collectives
            stop = dist.any_rank(interrupt.stop_requested) or (why is not None and epoch + 1 < self.cfg.TRAIN.MAX_EPOCH)
            if (epoch + 1) % self.cfg.TRAIN.CHECKPOINT_INTERVAL == 0 or stop:
                self._checkpoint(epoch + 1, 0)
            if stop:
                log.info('%s after epoch %d: checkpoint written to %s', why or 'interrupted', epoch,
                         self.run.model_dir / TRAIN_STATE_NAME)
                return why or 'interrupted'
        return None

    def _one_epoch(self, interrupt: GracefulInterrupt) -> tuple[str | None, bool]:
        """One epoch (from its resumed position); returns (why it stopped, whether that was mid-epoch)."""
        cfg, task, epoch, n = self.cfg, self.task, self.epoch, len(self.loader)
        skip = self.step_in_epoch
        task.begin_epoch(epoch, skip)
        batches = epoch_batches(self.loader, self.generator, self.run.seed, epoch, skip=skip)
        if self.resume_state is not None:  # after the replayed batches: the next draw is the stopped run's
            dist.restore_rng(self.resume_state)
            self.resume_state = None
        t0 = time.time()
        bar = tqdm(batches, total=n, initial=skip, desc=f'{task.title} epoch {epoch}', leave=False,
                   dynamic_ncols=True, disable=None if self.main else True)
        why, losses = None, None  # losses stay None only if no batch of this epoch runs in this start
        for batch in bar:
            losses = task.step(batch)
            self.step_in_epoch += 1
            self.iteration += 1
            logged = task.is_log_step(self.step_in_epoch, self.iteration, n)
            if task.check_every_step or logged:
                # otherwise (the fast path: no host sync per step) a NaN spreads into the weights, so every
                # later loss is NaN too and the next log step, before any checkpoint, catches it
                check_finite(losses, self.iteration)
            if logged:
                values = dist.mean_over_ranks(losses)
                bar.set_postfix(task.progress(values))
                self.metrics.write({'kind': f'{task.kind}_step', 'epoch': epoch, task.position_key: self.iteration,
                                    **values}, step=self.iteration)
            task.after_step(epoch, self.step_in_epoch, self.iteration, logged)
            why = stop_reason(interrupt.stop_requested, cfg.TRAIN.MAX_STEPS, self.iteration)
            if why:
                check_finite(losses, self.iteration)
                if self.step_in_epoch < n:
                    bar.close()
                    return why, True
                break  # a stop in the epoch's last step: the epoch's end is done first
        bar.close()
        elapsed = time.time() - t0
        record = task.end_epoch(epoch, self.step_in_epoch, losses)
        self.last = {'kind': f'{task.kind}_epoch', 'epoch': epoch, task.position_key: self.iteration,
                     'time_s': elapsed,
                     'images_per_s': (n - skip) * cfg.TRAIN.BATCH_SIZE * dist.world_size() / max(elapsed, 1e-9),
                     **record}
        self.metrics.write(self.last, step=self.iteration)
        log.info('%s epoch %d/%d: %.1f s, %.1f images/s', task.title, epoch, cfg.TRAIN.MAX_EPOCH, elapsed,
                 self.last['images_per_s'])
        self.step_in_epoch = 0
        return why, False

    def _end_of_run(self) -> None:
        if self.resume_state is not None:  # resumed after the run's end: no epoch ran, nothing to redo
            return
        self.task.end_run()
        if self._saved_at != (self.cfg.TRAIN.MAX_EPOCH, 0):
            self._checkpoint(self.cfg.TRAIN.MAX_EPOCH, 0)

    # ------------------------------------------------------------------ checkpoint
    def _checkpoint(self, epoch: int, step: int) -> None:
        """The full state at (epoch, step). Every rank calls this (RNG states are gathered, the task may
        average over ranks); rank 0 writes."""
        rng_ranks = dist.gather_rng_states()
        task_state = self.task.state_dict()
        self._saved_at = (epoch, step)
        if not self.main:
            return
        save_train_state(self.run.model_dir / TRAIN_STATE_NAME, kind=self.task.kind, epoch=epoch, step=step,
                         **{self.task.counter_key: self.iteration}, seed=self.run.seed,
                         config=self.cfg.to_dict(), rng=rng_state(), rng_ranks=rng_ranks,
                         world_size=dist.world_size(), **task_state)


def task_class(name: str) -> type[Task]:
    """The Task subclass TRAIN.TASK names: a key of :data:`TASKS` or ``'package.module:Class'`` (an importable
    module; a new model is one task file and a config that names it)."""
    import importlib
    target = TASKS.get(name, name)
    module_name, _, cls_name = target.partition(':')
    if not module_name or not cls_name:
        raise ConfigError(f"TRAIN.TASK={name!r}: expected one of {sorted(TASKS)} or 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):  # the named module itself, not one it imports
            raise ConfigError(f'TRAIN.TASK={name!r}: no module {module_name!r}') from None
        raise
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError(f'TRAIN.TASK={name!r}: {module_name} has no Task subclass {cls_name!r}')
    return cls
