"""Inception Score: mean +- std over splits of exp(E_x[KL(p(y|x) || p(y))]).

The split rule is that of the improved-GAN / StackGAN code: split ``i`` holds rows
``i*N//splits : (i+1)*N//splits`` (in file order, not shuffled), p(y) is that split's mean
prediction, and the std is numpy's population std (ddof=0) over the split scores.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from .fid import list_images, run_batches
from .inception import INPUT_SIZE, InceptionClassifier, imagenet_classifier, load_classifier


def _split_bounds(n: int, splits: int) -> list[tuple[int, int]]:
    if splits < 1:
        raise InputError(f'splits must be >= 1, got {splits}')
    if n < splits:
        raise InputError(f'{n} images for {splits} splits: need at least one image per split')
    return [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]


def inception_score_from_logits(logits, splits: int = 10) -> tuple[float, float]:
    """``N x K`` classifier logits -> (mean, std) of the split scores (computed in float64
    log space, so saturated softmax entries cannot produce 0 * log 0)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if logits.dim() != 2:
        raise InputError(f'logits must be N x K, got shape {tuple(logits.shape)}')
    logp = torch.log_softmax(logits, dim=1)
    scores = []
    for a, b in _split_bounds(logits.shape[0], splits):
        lp = logp[a:b]
        log_py = torch.logsumexp(lp, dim=0) - np.log(b - a)  # log of the split's mean p(y)
        p = lp.exp()
        kl = torch.where(p > 0, p * (lp - log_py), torch.zeros_like(p)).sum(1).mean()
        scores.append(float(torch.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """``N x K`` class probabilities (rows sum to 1) -> (mean, std) of the split scores."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise InputError(f'probs must be N x K, got shape {probs.shape}')
    if (probs < 0).any() or not np.allclose(probs.sum(1), 1, atol=1e-4):
        raise InputError('probs rows must be non-negative and sum to 1 (pass logits to '
                         'inception_score_from_logits instead)')
    with np.errstate(divide='ignore'):
        return inception_score_from_logits(np.log(probs), splits)


def get_classifier(classifier: str = 'imagenet', weights: str | os.PathLike | None = None
                   ) -> InceptionClassifier:
    """``'imagenet'`` (torchvision weights: cache or ``weights``) or a checkpoint path written
    by eval/finetune_inception.py."""
    if classifier == 'imagenet':
        return imagenet_classifier(weights)
    return load_classifier(classifier)


def classifier_logits(files: Sequence[Path], clf: InceptionClassifier, *, batch_size: int = 50,
                      device=None, workers: int | None = None, channels_last: bool | None = None,
                      progress: bool = False) -> np.ndarray:
    """``N x K`` float64 logits. Images are resized to 299 x 299 with PIL bilinear in the
    loader (as StackGAN's IS code via scipy.misc.imresize), then scaled to [-1, 1]."""
    return run_batches(clf, files, clf.num_classes, batch_size=batch_size, device=device,
                       workers=workers, loader_size=INPUT_SIZE, channels_last=channels_last,
                       progress=progress, desc='IS')


def inception_score_of_folder(path: str | os.PathLike, clf: InceptionClassifier, splits: int = 10,
                              **kw) -> tuple[float, float, int]:
    """(mean, std, number of images) for the images under ``path`` (recursive)."""
    images = list_images(path)
    logits = classifier_logits(images.files, clf, **kw)
    mean, std = inception_score_from_logits(logits, splits)
    return mean, std, len(images)
