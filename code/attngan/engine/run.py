"""Command-line parsing, config resolution, device choice, seeding and run folders for both trainers."""
from __future__ import annotations

import argparse
import copy
import datetime
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..config import Config, ConfigError, apply_override, load_config, resolve_path, to_yaml
from . import distributed
from .logger import close_file_logging, setup_logging

log = logging.getLogger('attngan')


def build_arg_parser(description: str, default_cfg: str) -> argparse.ArgumentParser:
    """The original's flags (--cfg, --gpu, --data_dir, --manualSeed) plus --set and --resume."""
    p = argparse.ArgumentParser(description=description)
    p.set_defaults(default_cfg=default_cfg)
    p.add_argument('--cfg', dest='cfg_file', default=None,
                   help=f'YAML config (default: {default_cfg}; with --resume: the resumed run\'s own config)')
    p.add_argument('--gpu', dest='gpu_id', type=int, default=None,
                   help='GPU index; -1 runs on the CPU (default: GPU_ID of the config when CUDA is available)')
    p.add_argument('--data_dir', default='', help='overrides DATA_DIR')
    p.add_argument('--manualSeed', type=int, default=None, help='seed (default: random; 100 when sampling)')
    p.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                   help='override a config key, e.g. --set TRAIN.BATCH_SIZE=8 (repeatable; YAML values)')
    p.add_argument('--resume', default=None, metavar='PATH|latest',
                   help="continue a run from its full checkpoint (train_state.pt, or its run folder) or the newest "
                        "one of this config ('latest'), with the run's config; --set may change lengths, learning "
                        "rates, intervals, paths and the device")
    p.add_argument('--output_dir', default=None,
                   help='write this run into this folder instead of OUTPUT_DIR/<dataset>_<config>_<timestamp>')
    return p


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Load the config file (or start from ``base``), apply --set, then the original's flags (--gpu,
    --data_dir, --resume)."""
    if base is None:
        cfg = load_config(args.cfg_file or args.default_cfg, args.overrides)
    else:
        cfg = copy.deepcopy(base)
        for assignment in args.overrides:
            apply_override(cfg, assignment)
    if args.gpu_id is not None:
        if args.gpu_id < 0:
            cfg.CUDA = False
        else:
            cfg.GPU_ID = args.gpu_id
    if args.data_dir:
        cfg.DATA_DIR = str(Path(args.data_dir).resolve())
    if args.resume is not None:
        cfg.TRAIN.RESUME = args.resume
    return cfg


def select_device(cfg: Config) -> torch.device:
    """CUDA device GPU_ID (under torchrun: LOCAL_RANK) when CUDA is set and available, else the CPU."""
    if cfg.CUDA and torch.cuda.is_available():
        index, key = (distributed.local_rank(), 'LOCAL_RANK') if distributed.launched() else (cfg.GPU_ID, 'GPU_ID')
        if index >= torch.cuda.device_count():
            raise ConfigError(f'{key}={index}, but only {torch.cuda.device_count()} GPU(s) are visible')
        torch.cuda.set_device(index)
        device = torch.device('cuda', index)
        log.info('device: %s (%s)', device, torch.cuda.get_device_name(device))
    else:
        why = 'CUDA disabled (--gpu -1 or CUDA: False)' if not cfg.CUDA else 'no GPU available'
        device = torch.device('cpu')
        cfg.CUDA = False
        log.info('device: cpu (%s; %d threads)', why, torch.get_num_threads())
    return device


def tune_malloc() -> bool:
    """Keep freed heap memory in the process (glibc ``mallopt``); False where unavailable.

    glibc returns large freed blocks to the OS, so each CPU training iteration page-faults them in again
    (~10 s of system time per 5 iterations at the bird config). Keeping them changes no number.
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
        ok = libc.mallopt(M_MMAP_MAX, 0)  # big blocks from the heap too, not from mmap
        ok &= libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1)  # never give the heap top back
        ok &= libc.mallopt(M_TOP_PAD, 256 * 1024 * 1024)
        return bool(ok)
    except (OSError, AttributeError):
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def choose_seed(cfg: Config, manual_seed: int | None) -> int:
    """The original: seed 100 when sampling (TRAIN.FLAG False), else the given or a random one."""
    if not cfg.TRAIN.FLAG:
        return 100 if manual_seed is None else manual_seed
    return random.randint(1, 10000) if manual_seed is None else manual_seed


@dataclass
class Run:
    """One run's folders: ``root/Model`` (checkpoints), ``root/Image`` (pictures), logs and metrics.

    ``created``: this start made the folder (a failed start then removes it again, see
    :meth:`discard_if_unused`).
    """

    cfg: Config
    root: Path
    device: torch.device
    seed: int
    created: bool = False

    def write_config(self) -> None:
        """Write the resolved config as ``config.yaml`` (rank 0), atomically. The trainers call this once
        everything is built, just before the first step, so a start that fails leaves the old file."""
        if distributed.is_main():
            atomic_write_bytes(self.root / 'config.yaml', to_yaml(self.cfg).encode('utf-8'))

    def discard_if_unused(self) -> bool:
        """Remove the run folder if this start created it and nothing but the log was written into it."""
        if not self.created or not distributed.is_main() or not self.root.is_dir():
            return False
        files = [p for p in self.root.rglob('*') if p.is_file()]
        if any(p != self.root / 'log.txt' for p in files):
            return False
        close_file_logging()
        shutil.rmtree(self.root, ignore_errors=True)
        return True

    @property
    def model_dir(self) -> Path:
        return self.root / 'Model'

    @property
    def image_dir(self) -> Path:
        return self.root / 'Image'

    @property
    def metrics_path(self) -> Path:
        return self.root / 'metrics.jsonl'


def run_name(cfg: Config) -> str:
    return f'{cfg.DATASET_NAME}_{cfg.CONFIG_NAME}'


def start_run(cfg: Config, manual_seed: int | None = None, output_dir: str | None = None,
              root: Path | None = None) -> Run:
    """Create (or reuse, when resuming) the run folder, log the resolved config, seed, pick the device.

    Under torchrun this also joins the process group (:func:`distributed.init`); every rank gets rank 0's
    folder and seed, only rank 0 creates files and logs at INFO, and rank r seeds its RNGs with
    ``distributed.rank_seed(seed)`` (``Run.seed`` stays the shared seed that orders the epochs).
    """
    distributed.init(use_cuda=bool(cfg.CUDA) and torch.cuda.is_available())
    if root is None:
        if output_dir:
            root = Path(output_dir).resolve()
        else:
            stamp = datetime.datetime.now().strftime('%Y_%m_%d_%H_%M_%S')
            root = resolve_path(cfg.OUTPUT_DIR) / f'{run_name(cfg)}_{stamp}'
    root = distributed.broadcast_object(root)  # the ranks' clocks (timestamps) may differ
    main = distributed.is_main()
    created = False
    if main:
        created = not root.exists()
        (root / 'Model').mkdir(parents=True, exist_ok=True)
        (root / 'Image').mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temporaries(root)
        setup_logging(root / 'log.txt')
        if removed:
            log.info('removed %d temporary file(s) of an interrupted write: %s', len(removed),
                     ', '.join(str(p.relative_to(root)) for p in removed[:5]))
    else:
        setup_logging(level=logging.WARNING)
    seed = distributed.broadcast_object(choose_seed(cfg, manual_seed))  # a random seed differs per rank
    seed_everything(distributed.rank_seed(seed))
    device = select_device(cfg)
    if device.type == 'cpu' and tune_malloc():
        log.info('CPU run: glibc malloc set to keep freed memory (fewer page faults per iteration)')
    if distributed.is_distributed():
        log.info('torchrun: %d processes; TRAIN.BATCH_SIZE=%d per process (effective batch %d)',
                 distributed.world_size(), cfg.TRAIN.BATCH_SIZE, distributed.world_size() * cfg.TRAIN.BATCH_SIZE)
    log.info('run folder: %s', root)
    log.info('seed: %d', seed)
    log.info('resolved config:\n%s', to_yaml(cfg))
    return Run(cfg=cfg, root=root, device=device, seed=seed, created=created)


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an interrupted atomic write left in a run folder (see atomic.py)."""
    stale = [p for folder in (root, root / 'Model', root / 'Image') if folder.is_dir()
             for p in folder.glob('.*.tmp') if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
