"""R-precision on constructed cases whose answer is known."""
import numpy as np
import pytest
import torch

from attngan.metrics import r_precision as RP


def _features(n, d, seed):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)))


def test_identical_encoders_give_one():
    sent = _features(200, 16, 0)
    mis = _features(200 * 99, 16, 1).reshape(200, 99, 16)
    res = RP.r_precision(sent.clone(), sent, mis)
    assert res.mean == 1.0 and res.std == 0.0 and res.hits.all() and res.n_candidates == 100


def test_unrelated_features_give_chance():
    n = 4000
    img, sent = _features(n, 16, 2), _features(n, 16, 3)
    mis = _features(n * 99, 16, 4).reshape(n, 99, 16)
    res = RP.r_precision(img, sent, mis)
    assert 0.005 < res.mean < 0.02  # chance is 1/100; binomial sd ~0.0016 at n = 4000


def test_half_matched_half_shuffled():
    n = 2000
    sent = _features(n, 16, 5)
    img = sent.clone()
    img[n // 2:] = _features(n // 2, 16, 6)
    mis = _features(n * 9, 16, 7).reshape(n, 9, 16)
    res = RP.r_precision(img, sent, mis)  # R = 10: 0.5 + 0.5 * 0.1
    assert res.hits[:n // 2].all()
    assert res.mean == pytest.approx(0.55, abs=0.03)


def test_cosine_ignores_scale_and_ties_count_as_hits():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cand = torch.tensor([[[5.0, 0.0], [2.0, 0.0], [0.0, 1.0]],    # tie with a mismatched one
                         [[1.0, 1.0], [0.0, 3.0], [1.0, 0.0]]])   # a mismatched one is closer
    scores = RP.cosine_scores(img, cand)
    np.testing.assert_allclose(scores.numpy(), [[1, 1, 0], [2 ** -0.5, 1, 0]], atol=1e-12)
    assert RP.hits_from_scores(scores).tolist() == [True, False]
    with pytest.raises(ValueError, match='N x R x D'):
        RP.cosine_scores(img, cand[:, :, :1])


def test_folds():
    hits = np.array([1] * 30 + [0] * 70, dtype=bool)
    mean, std = RP.fold_mean_std(hits, 10, seed=3)
    rates = [f.mean() for f in np.array_split(np.random.default_rng(3).permutation(hits.astype(float)), 10)]
    assert mean == pytest.approx(0.3) and std == pytest.approx(np.std(rates))
    assert std > 0
    assert RP.fold_mean_std(hits, 10, seed=3) == (mean, std)  # seeded
    with pytest.raises(ValueError, match='one per fold'):
        RP.fold_mean_std(hits[:5], 10)


def test_mismatched_sampling_cub_and_coco():
    cls = np.repeat(np.arange(5), 40)  # CUB-like: 5 classes x 40 captions
    query = np.array([0, 1, 4, 4])
    idx = RP.sample_mismatched(query, cls, 99, seed=0)
    assert idx.shape == (4, 99) and idx.dtype == np.int64
    for q, row in zip(query, idx):
        assert (cls[row] != q).all() and len(set(row.tolist())) == 99
    np.testing.assert_array_equal(idx, RP.sample_mismatched(query, cls, 99, seed=0))
    assert not np.array_equal(idx, RP.sample_mismatched(query, cls, 99, seed=1))
    # exactly enough eligible entries: every other-class caption, each once
    tight = RP.sample_mismatched([0], np.repeat(np.arange(2), 99), 99, seed=0)
    assert sorted(tight[0].tolist()) == list(range(99, 198))
    # COCO-like: labels are image ids, so only the image's own captions are excluded
    img_ids = np.repeat(np.arange(30), 5)
    idx = RP.sample_mismatched(np.arange(30), img_ids, 99, seed=2)
    assert all((img_ids[row] != q).all() for q, row in zip(range(30), idx))
    with pytest.raises(ValueError, match='only 40 pool entries'):
        RP.sample_mismatched([0], np.repeat(np.arange(2), 40), 99)


def test_pool_version_equals_explicit_features():
    caps = _features(300, 8, 8)
    labels = np.repeat(np.arange(6), 50)
    true_index = np.arange(0, 300, 3)
    img = caps[true_index] + 0.8 * _features(100, 8, 9)
    res = RP.r_precision_from_pool(img, caps, true_index, labels[true_index], labels,
                                   n_candidates=20, n_folds=5, seed=4, chunk=7)
    mis = RP.sample_mismatched(labels[true_index], labels, 19, seed=4)
    ref = RP.r_precision(img, caps[true_index], caps[torch.from_numpy(mis)], 5, 4)
    np.testing.assert_array_equal(res.hits, ref.hits)
    assert (res.mean, res.std) == (ref.mean, ref.std)
    assert 0.05 < res.mean < 1.0  # noisy images: above chance (1/20), not perfect
    assert 'R=20' in str(res)
