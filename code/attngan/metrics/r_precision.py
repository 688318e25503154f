"""R-precision (DM-GAN's protocol) from precomputed features.

For each generated image (its caption known): the cosine similarity between the DAMSM image
encoder's global feature and the sentence features of R candidates, the true caption first and
R - 1 mismatched captions after it (from other classes on CUB, from other images on COCO). A
hit is the true caption scoring highest (ties go to it, as ``argmax`` picks the first index).
The hits are shuffled with a seeded generator and cut into ``n_folds`` folds; the result is the
mean and the population std of the fold hit rates.

Differences from DM-GAN's script, none of which changes the expectation: mismatched captions
are drawn with a seeded numpy generator and without repeats within one image's set (DM-GAN
draws with Python's ``random`` and may repeat); every hit belongs to a fold (DM-GAN's folds
``R[i*3000:(i+1)*3000 - 1]`` left out each fold's last entry); the sentence features can be
encoded once for a caption pool and indexed (the text encoder is deterministic in eval mode,
so this equals DM-GAN's re-encoding per image).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError


@dataclass
class RPrecision:
    mean: float
    std: float
    hits: np.ndarray  # (N,) bool, in query order
    n_candidates: int

    def __str__(self):
        return (f'R-precision (R={self.n_candidates}, {len(self.hits)} images): '
                f'{self.mean:.4f} +- {self.std:.4f}')


def _as_tensor(x, name: str, dims: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).double()
    if t.dim() != dims:
        raise InputError(f'{name} must have {dims} dimensions, got shape {tuple(t.shape)}')
    return t


def cosine_scores(image_features, candidate_features) -> torch.Tensor:
    """``N x D`` images and ``N x R x D`` candidates -> ``N x R`` cosine similarities
    (norms clamped at 1e-8 as in DM-GAN)."""
    img = _as_tensor(image_features, 'image_features', 2)
    cand = _as_tensor(candidate_features, 'candidate_features', 3)
    if cand.shape[0] != img.shape[0] or cand.shape[2] != img.shape[1]:
        raise InputError(f'candidate_features {tuple(cand.shape)} does not match '
                         f'image_features {tuple(img.shape)} (expected N x R x D)')
    dots = torch.einsum('nd,nrd->nr', img, cand)
    norms = img.norm(dim=1, keepdim=True) * cand.norm(dim=2)
    return dots / norms.clamp(min=1e-8)


def hits_from_scores(scores: torch.Tensor) -> np.ndarray:
    """``N x R`` scores with the true candidate at column 0 -> (N,) bool hits."""
    scores = torch.as_tensor(scores)
    return (scores[:, 0] >= scores[:, 1:].max(dim=1).values).cpu().numpy()


def fold_mean_std(hits, n_folds: int = 10, seed: int = 0) -> tuple[float, float]:
    """Shuffle the hits (seeded), split into ``n_folds`` near-equal folds -> (mean, std) of
    the fold hit rates (std with ddof=0, as np.std in DM-GAN)."""
    hits = np.asarray(hits, dtype=np.float64)
    if len(hits) < n_folds:
        raise InputError(f'{len(hits)} images for {n_folds} folds: need at least one per fold')
    shuffled = np.random.default_rng(seed).permutation(hits)
    rates = [f.mean() for f in np.array_split(shuffled, n_folds)]
    return float(np.mean(rates)), float(np.std(rates))


def sample_mismatched(query_labels, pool_labels, n_mismatched: int = 99, seed: int = 0) -> np.ndarray:
    """For each query, ``n_mismatched`` distinct pool indices whose label differs from its own.

    CUB: labels are class ids (mismatched captions come from other classes). COCO: labels are
    image ids (they come from other images). Returns ``N x n_mismatched`` int64.
    """
    q = np.asarray(query_labels)
    pool = np.asarray(pool_labels)
    if q.ndim != 1 or pool.ndim != 1:
        raise InputError('query_labels and pool_labels must be 1-d')
    sorted_pool = np.sort(pool)
    same = np.searchsorted(sorted_pool, q, side='right') - np.searchsorted(sorted_pool, q, side='left')
    eligible = len(pool) - same
    if len(q) and eligible.min() < n_mismatched:
        i = int(eligible.argmin())
        raise InputError(f'query {i} (label {q[i]!r}) has only {eligible[i]} pool entries with '
                         f'another label; {n_mismatched} mismatched candidates are needed')
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pool), size=(len(q), n_mismatched))
    for _ in range(50):  # rejection sampling; rows still bad afterwards are drawn exactly
        bad = _bad_entries(idx, pool, q)
        if not bad.any():
            return idx.astype(np.int64)
        idx[bad] = rng.integers(0, len(pool), size=int(bad.sum()))
    for row in np.flatnonzero(_bad_entries(idx, pool, q).any(axis=1)):
        idx[row] = rng.choice(np.flatnonzero(pool != q[row]), n_mismatched, replace=False)
    return idx.astype(np.int64)


def _bad_entries(idx: np.ndarray, pool: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Entries with the query's own label, or repeating an earlier entry of their row."""
    bad = pool[idx] == q[:, None]
    order = np.argsort(idx, axis=1, kind='stable')
    srt = np.take_along_axis(idx, order, 1)
    dup_sorted = np.zeros_like(bad)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    dup = np.zeros_like(bad)
    np.put_along_axis(dup, order, dup_sorted, 1)
    return bad | dup


def r_precision(image_features, true_features, mismatched_features, n_folds: int = 10,
                seed: int = 0) -> RPrecision:
    """Image features ``N x D``, true-caption sentence features ``N x D``, mismatched
    sentence features ``N x (R-1) x D`` -> RPrecision (mean, std over folds, hits)."""
    true = _as_tensor(true_features, 'true_features', 2)
    mis = _as_tensor(mismatched_features, 'mismatched_features', 3)
    if true.shape[0] != mis.shape[0]:
        raise InputError(f'true_features has {true.shape[0]} rows, mismatched_features {mis.shape[0]}')
    cand = torch.cat([true.unsqueeze(1), mis], dim=1)
    hits = hits_from_scores(cosine_scores(image_features, cand))
    mean, std = fold_mean_std(hits, n_folds, seed)
    return RPrecision(mean, std, hits, cand.shape[1])


def r_precision_from_pool(image_features, caption_features, true_index, query_labels,
                          pool_labels, n_candidates: int = 100, n_folds: int = 10,
                          seed: int = 0, chunk: int = 1024) -> RPrecision:
    """R-precision with sentence features encoded once for a caption pool.

    ``caption_features``: ``M x D`` (every caption of the pool); ``true_index``: (N,) the
    row of each image's own caption; ``query_labels`` (N,) / ``pool_labels`` (M,): class ids
    (CUB) or image ids (COCO). Mismatched rows are drawn by :func:`sample_mismatched`.
    """
    caps = _as_tensor(caption_features, 'caption_features', 2)
    img = _as_tensor(image_features, 'image_features', 2)
    true_index = torch.as_tensor(np.asarray(true_index, dtype=np.int64))
    if true_index.shape != (img.shape[0],):
        raise InputError(f'true_index has shape {tuple(true_index.shape)}; expected ({img.shape[0]},)')
    mis_idx = torch.from_numpy(sample_mismatched(query_labels, pool_labels, n_candidates - 1, seed))
    cand_idx = torch.cat([true_index.unsqueeze(1), mis_idx], dim=1)
    hits = np.concatenate([  # chunks keep the N x R x D gather small
        hits_from_scores(cosine_scores(img[a:a + chunk], caps[cand_idx[a:a + chunk]]))
        for a in range(0, img.shape[0], chunk)])
    mean, std = fold_mean_std(hits, n_folds, seed)
    return RPrecision(mean, std, hits, n_candidates)
