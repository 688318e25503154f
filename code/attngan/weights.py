"""Loading checkpoints (the original's released ``.pth`` files and this port's) into built modules.

``load_state_dict_file`` reads a state_dict with ``torch.load(weights_only=True)`` (no code runs from
the file), accepts files written by old PyTorch (legacy non-zip serialization, Python 2 pickles, no
``num_batches_tracked`` entries) and DataParallel prefixes (``module.``), and turns any key or shape
mismatch into ONE :class:`CheckpointMismatchError` naming the file and the first offending keys.
"""
from __future__ import annotations

import logging
import os
import pickle
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from .errors import CheckpointError, MissingFileError

logger = logging.getLogger(__name__)

__all__ = ['CheckpointError', 'CheckpointMismatchError', 'read_torch_file', 'read_state_dict',
           'load_state_dict_file']

_SHOW = 5  # how many offending keys each list shows


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the module built from the config (keys or shapes differ)."""


def _torch_load(path: str, safe_globals: Sequence = ()):
    with torch.serialization.safe_globals(list(safe_globals)):
        try:
            return torch.load(path, map_location='cpu', weights_only=True)
        except UnicodeDecodeError:  # Python 2 pickle with non-ASCII byte strings
            return torch.load(path, map_location='cpu', weights_only=True, encoding='latin1')


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def read_torch_file(path, what: str = 'checkpoint', safe_globals: Sequence = ()):
    """``torch.load(path, weights_only=True)`` on the CPU: a file that would need other Python objects (a
    crafted pickle) is refused before anything in it runs, and a truncated or foreign file is one
    :class:`CheckpointError` naming ``what`` and the path.

    safe_globals: extra plain-data types the weights-only unpickler may build (e.g. NumPy's array
    reconstruction for the RNG states of older checkpoints).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f'{what}: file not found: {path}')
    try:
        return _torch_load(path, safe_globals)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f'{what}: {path} is refused: it is not plain data that torch.load(weights_only=True) can read '
            f'(it references other Python objects; nothing in it was run): {_first_line(e)}') from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:  # truncated zip, not a torch file
        raise CheckpointError(f'{what}: cannot read {path} as a PyTorch file (truncated or another '
                              f'format?): {_first_line(e)}') from None


def read_state_dict(path, what: str = 'checkpoint', key: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Read a state_dict from ``path`` (CPU tensors), optionally the entry ``key`` of a dict of them.

    A leading ``module.`` (DataParallel) is stripped from every key.
    """
    obj = read_torch_file(path, what)
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f'{what}: {path} has no entry {key!r} (found: {found})')
        obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f'{what}: {path} does not hold a state_dict (a dict of tensors), '
                              f'but {type(obj).__name__}')
    if obj and all(k.startswith('module.') for k in obj):
        obj = OrderedDict((k[len('module.'):], v) for k, v in obj.items())
    return obj


def _mismatch_report(state: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor]) -> List[str]:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f'{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}'
              for k in expected if k in state and state[k].shape != expected[k].shape]
    lines = []
    for title, items in (('missing from the file', missing), ('unexpected in the file', unexpected),
                         ('shape mismatch', shapes)):
        if items:
            more = f' (and {len(items) - _SHOW} more)' if len(items) > _SHOW else ''
            lines.append(f'  {len(items)} {title}: ' + '; '.join(items[:_SHOW]) + more)
    return lines


def load_state_dict_file(path, module: nn.Module, what: str = 'checkpoint', key: Optional[str] = None
                         ) -> nn.Module:
    """Load the state_dict in ``path`` into ``module`` (strictly) and return the module.

    what: a name for messages (e.g. 'NET_G' or 'text encoder'); key: load ``file[key]`` instead.
    BatchNorm ``num_batches_tracked`` entries absent from old files are set to 0 (as torch does for
    old-version state dicts). Any other missing / unexpected key or shape difference raises
    :class:`CheckpointMismatchError` listing the first offenders.
    """
    state = read_state_dict(path, what, key)
    expected = module.state_dict()
    state = OrderedDict(state)
    for k, v in expected.items():
        if k.endswith('num_batches_tracked') and k not in state:
            state[k] = torch.zeros_like(v)
    problems = _mismatch_report(state, expected)
    if problems:
        raise CheckpointMismatchError(
            f'{what}: {path} does not match the {type(module).__name__} built from the config '
            f'(was it trained with other GAN.GF_DIM / GAN.DF_DIM / TEXT.EMBEDDING_DIM / '
            f'TREE.BRANCH_NUM / vocabulary?):\n' + '\n'.join(problems))
    module.load_state_dict(state, strict=True)
    logger.info('%s: loaded %s', what, path)
    return module
