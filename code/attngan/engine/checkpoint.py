"""Checkpoint IO: atomic writes, RNG state capture, and the full resumable training state."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_open

TRAIN_STATE_NAME = 'train_state.pt'


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash leaves the old file."""
    path = Path(path)
    with atomic_open(path) as f:
        torch.save(obj, f)
    return path


def rng_state() -> dict:
    """Every RNG the training loop draws from (Python, NumPy, torch CPU and CUDA)."""
    state = {
        'python': random.getstate(),
        'numpy': np.random.get_state(),
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_train_state(path: str | os.PathLike, **state: Any) -> Path:
    """Write the full resumable state (modules' and optimizers' state_dicts, counters, RNG) atomically."""
    state.setdefault('rng', rng_state())
    return atomic_save(state, path)


def load_train_state(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`save_train_state` (a trusted file of this project's own making)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'resume: no checkpoint at {path}')
    # RNG states hold Python/NumPy objects, so this file needs the full unpickler; it is our own output.
    return torch.load(path, map_location='cpu', weights_only=False)


def find_latest(output_root: str | os.PathLike, prefix: str) -> Path:
    """The newest ``<run>/Model/train_state.pt`` among runs named ``<prefix>_*`` under ``output_root``."""
    root = Path(output_root)
    candidates = sorted(root.glob(f'{prefix}_*/Model/{TRAIN_STATE_NAME}'), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"resume latest: no {TRAIN_STATE_NAME} under {root}/{prefix}_*/Model/")
    return candidates[-1]
