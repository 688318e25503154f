"""Resuming a run: which checkpoint, and which config.

A full checkpoint (``train_state.pt``) stores the resolved config of its run. A resumed run trains with
that config: the keys that define the run (models, data, losses, seeds, batch size, pooling, ...) must not
change, and a config that changes one is refused with an error naming the key. The keys of
:data:`RESUME_MUTABLE_KEYS` (how long to train, learning rates, intervals, where the data and outputs live,
the device and the execution path) may change; each change takes effect and is logged.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..config import Config, ConfigError, get_default_config, merge, resolve_path
from ..errors import CheckpointError
from .checkpoint import TRAIN_STATE_NAME, find_latest, load_train_state

log = logging.getLogger('attngan')

__all__ = ['RESUME_MUTABLE_KEYS', 'resume_checkpoint_path', 'load_resume_state', 'resume_config']

#: Keys a resumed run may change. Everything else must equal the checkpoint's config.
RESUME_MUTABLE_KEYS = frozenset({
    # how long to train
    'TRAIN.MAX_EPOCH', 'TRAIN.MAX_STEPS',
    # learning rates (the optimizers' groups are set to the new values)
    'TRAIN.GENERATOR_LR', 'TRAIN.DISCRIMINATOR_LR', 'TRAIN.ENCODER_LR',
    # how often to log, draw and save
    'TRAIN.SNAPSHOT_INTERVAL', 'TRAIN.LOG_INTERVAL', 'TRAIN.SAMPLE_INTERVAL', 'TRAIN.DAMSM_UPDATE_INTERVAL',
    'TRAIN.CHECKPOINT_INTERVAL', 'TRAIN.TENSORBOARD',
    # where things are and what runs them
    'TRAIN.RESUME', 'DATA_DIR', 'OUTPUT_DIR', 'GPU_ID', 'CUDA', 'WORKERS',
    'TRAIN.FAST', 'TRAIN.COMPILE', 'TRAIN.SYNC_BN',
})


def resume_checkpoint_path(resume: str, output_dir: str, run_prefix: str) -> Path:
    """The ``train_state.pt`` that ``--resume`` names: a file, a run folder (or its ``Model/``), or
    ``latest`` (the newest run named ``run_prefix_*`` under ``output_dir``)."""
    if resume == 'latest':
        return find_latest(resolve_path(output_dir), run_prefix)
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / 'Model' / TRAIN_STATE_NAME if (path / 'Model').is_dir() else path / TRAIN_STATE_NAME
    return path


def load_resume_state(path: Path, kind: str) -> dict:
    """The checkpoint at ``path``, checked to be a ``kind`` ('gan' or 'damsm') one with a config."""
    state = load_train_state(path)
    if state.get('kind') != kind:
        raise CheckpointError(f'--resume {path}: this is a {state.get("kind")!r} checkpoint, not a {kind!r} one')
    if not isinstance(state.get('config'), Mapping):
        raise CheckpointError(f'--resume {path}: the checkpoint holds no config')
    return state


def _leaves(cfg: Mapping, prefix: str = '') -> Iterator[tuple[str, Any]]:
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f'{prefix}{key}.')
        else:
            yield f'{prefix}{key}', value


def _get(cfg: Mapping, dotted: str) -> Any:
    for part in dotted.split('.'):
        cfg = cfg[part]
    return cfg


def _set(cfg: Mapping, dotted: str, value: Any) -> None:
    *head, last = dotted.split('.')
    for part in head:
        cfg = cfg[part]
    cfg[last] = value


def saved_config(state: Mapping, source: str) -> Config:
    """The checkpoint's config on top of the current defaults (keys added since then get their default)."""
    cfg = get_default_config()
    merge(cfg, state['config'], source=f'{source} (its saved config)')
    return cfg


def resume_config(state: Mapping, given: Config, source: str) -> tuple[Config, list[str]]:
    """The config a resumed run trains with, and the changes it makes (``'KEY: old -> new'``).

    ``given`` is the config of this start (its file, ``--set`` and flags). Keys that define the run must be
    equal to the checkpoint's; a difference is a :class:`ConfigError` listing each such key with both values.
    """
    saved = saved_config(state, source)
    refused, changes = [], []
    for key, value in _leaves(given):
        old = _get(saved, key)
        if value == old:
            continue
        if key in RESUME_MUTABLE_KEYS:
            _set(saved, key, value)
            if key != 'TRAIN.RESUME':
                changes.append(f'{key}: {old!r} -> {value!r}')
        else:
            refused.append(f'{key}={value!r} (the run has {old!r})')
    if refused:
        shown = '; '.join(refused[:5]) + (f'; and {len(refused) - 5} more' if len(refused) > 5 else '')
        raise ConfigError(
            f'--resume {source}: the config differs from the run being resumed in keys that define it: {shown}. '
            f'Resume with the run\'s own config (leave out --cfg, or pass its config.yaml) and change only '
            f'{", ".join(sorted(k for k in RESUME_MUTABLE_KEYS if k != "TRAIN.RESUME"))}; or start a new run.')
    return saved, changes
