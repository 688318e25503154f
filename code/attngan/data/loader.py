"""Config -> dataset and DataLoader, so that trainers only call :func:`build_dataloader`."""
from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.utils.data

from ..config import resolve_path
from .cub import TextDataset
from .text import LAYOUT_HELP, LayoutError

__all__ = ['data_dir_from_cfg', 'build_dataset', 'build_dataloader']


def data_dir_from_cfg(cfg, data_dir: str | os.PathLike | None = None):
    """DATA_DIR of the config (relative to the repository root), or ``data_dir`` when given."""
    path = data_dir if data_dir not in (None, '') else cfg.DATA_DIR
    if not path:
        raise LayoutError(f'DATA_DIR is empty in the config (set it or pass --data_dir); {LAYOUT_HELP}')
    return resolve_path(path)


def build_dataset(cfg, split: str, *, data_dir: str | os.PathLike | None = None, **overrides: Any) -> TextDataset:
    """:class:`TextDataset` of ``split`` from the config: TREE.BASE_SIZE/BRANCH_NUM, TEXT.WORDS_NUM/
    CAPTIONS_PER_IMAGE, DATA.USE_BBOX/CACHE/SKIP_BAD_IMAGES/SKIP_MISSING_IMAGES, GAN.B_DCGAN, WORKERS
    (cache build). ``overrides`` are passed to TextDataset last (e.g. ``filenames='existing'``,
    ``cache_dir=...``).

    ``DATA.SKIP_MISSING_IMAGES``: when the images are needed (``require_images``, the default) and no
    ``filenames`` are given, the stems whose image is missing are left out (``filenames='existing'``) with
    one warning saying how many; the default (False) stops at the first missing image, as the original.
    """
    kwargs = dict(
        base_size=cfg.TREE.BASE_SIZE, branch_num=cfg.TREE.BRANCH_NUM,
        words_num=cfg.TEXT.WORDS_NUM, captions_per_image=cfg.TEXT.CAPTIONS_PER_IMAGE,
        use_bbox=cfg.DATA.USE_BBOX, b_dcgan=cfg.GAN.B_DCGAN,
        skip_bad_images=cfg.DATA.SKIP_BAD_IMAGES, cache=cfg.DATA.CACHE, cache_workers=int(cfg.WORKERS))
    kwargs.update(overrides)
    skip_missing = (cfg.DATA.SKIP_MISSING_IMAGES and kwargs.get('require_images', True)
                    and kwargs.get('filenames') is None)
    if skip_missing:
        kwargs['filenames'] = 'existing'
    dataset = TextDataset(data_dir_from_cfg(cfg, data_dir), split, **kwargs)
    if skip_missing and dataset.left_out:
        n = len(dataset.left_out) + len(dataset)
        warnings.warn(f'{len(dataset.left_out)} of {n} images of the {split} split are missing under '
                      f'{dataset.image_dir} (first: {dataset.image_path(dataset.left_out[0])}); their stems are '
                      f'left out (DATA.SKIP_MISSING_IMAGES)')
    return dataset


def build_dataloader(cfg, split: str, shuffle: bool, drop_last: bool, *, dataset: TextDataset | None = None,
                     batch_size: int | None = None, workers: int | None = None,
                     device: torch.device | str | None = None, vocab_from: TextDataset | None = None,
                     sampler: torch.utils.data.Sampler | None = None, generator: torch.Generator | None = None,
                     **dataset_kwargs: Any) -> tuple[torch.utils.data.DataLoader, TextDataset]:
    """``(loader, dataset)``: a DataLoader over ``dataset`` (default :func:`build_dataset` of ``split``)
    with TRAIN.BATCH_SIZE and WORKERS, pinned memory when batches go to a CUDA ``device`` (no device:
    when CUDA is set and available), persistent workers when WORKERS > 0.

    ``vocab_from``: a dataset of the other split whose captions/vocabulary are reused (no second read).
    With a ``sampler`` (e.g. DistributedSampler) ``shuffle`` is left to it. A split smaller than one
    batch with ``drop_last`` gives an empty loader, as the original; callers check ``len(loader)``.
    """
    if dataset is None:
        if vocab_from is not None:
            dataset_kwargs.setdefault('text_data', vocab_from.text)
        dataset = build_dataset(cfg, split, **dataset_kwargs)
    elif dataset_kwargs or vocab_from is not None:
        raise TypeError('dataset given: no dataset arguments or vocab_from expected')
    workers = int(cfg.WORKERS if workers is None else workers)
    batch_size = int(cfg.TRAIN.BATCH_SIZE if batch_size is None else batch_size)
    if device is not None:
        pin = torch.device(device).type == 'cuda'
    else:
        pin = bool(cfg.CUDA) and torch.cuda.is_available()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        drop_last=drop_last, num_workers=workers, pin_memory=pin,
        persistent_workers=workers > 0, generator=generator)
    return loader, dataset
