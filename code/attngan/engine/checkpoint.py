"""Checkpoint IO: atomic writes, RNG state capture, and the full resumable training state."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_open
from ..errors import CheckpointError, MissingFileError
from ..weights import read_torch_file

TRAIN_STATE_NAME = 'train_state.pt'


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash leaves the old file."""
    path = Path(path)
    with atomic_open(path) as f:
        torch.save(obj, f)
    return path


def rng_state() -> dict:
    """Every RNG the training loop draws from (Python, NumPy, torch CPU and CUDA), as plain data.

    Only tensors, ints, floats, strings, lists and dicts, so that :func:`load_train_state` can read the file
    with ``torch.load(weights_only=True)``.
    """
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        'python': {'version': version, 'state': torch.tensor(mt, dtype=torch.int64), 'gauss': gauss},
        'numpy': {'name': name, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured (also the tuples of checkpoints written before it was plain)."""
    py = state['python']
    if isinstance(py, dict):
        py = (py['version'], tuple(int(v) for v in py['state'].tolist()), py['gauss'])
    random.setstate(py)
    npy = state['numpy']
    if isinstance(npy, dict):
        npy = (npy['name'], npy['keys'].numpy().astype(np.uint32), npy['pos'], npy['has_gauss'],
               npy['cached_gaussian'])
    np.random.set_state(npy)
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_train_state(path: str | os.PathLike, **state: Any) -> Path:
    """Write the full resumable state (modules' and optimizers' state_dicts, counters, RNG) atomically."""
    state.setdefault('rng', rng_state())
    return atomic_save(state, path)


def _legacy_numpy_globals() -> list:
    """The NumPy types the RNG state of a checkpoint from before :func:`rng_state` was plain data holds
    (a uint32 array): array reconstruction only, no other callable."""
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy 2
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_train_state(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`save_train_state`, with ``torch.load(weights_only=True)``.

    A file that is not one (a crafted pickle, a truncated write, a foreign file) is refused with one
    :class:`CheckpointError` before anything in it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f'resume: no checkpoint at {path}')
    state = read_torch_file(path, 'resume', safe_globals=_legacy_numpy_globals())
    if not isinstance(state, dict) or not isinstance(state.get('kind'), str) or 'epoch' not in state:
        raise CheckpointError(f'resume: {path} is not a train_state.pt of this project (no kind/epoch entries)')
    return state


def find_latest(output_root: str | os.PathLike, prefix: str) -> Path:
    """The newest ``<run>/Model/train_state.pt`` among runs named ``<prefix>_*`` under ``output_root``."""
    root = Path(output_root)
    candidates = sorted(root.glob(f'{prefix}_*/Model/{TRAIN_STATE_NAME}'), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise MissingFileError(f"resume latest: no {TRAIN_STATE_NAME} under {root}/{prefix}_*/Model/")
    return candidates[-1]
