"""Do generated toy birds follow their captions? A part reader trained on the real toy images measures it.

The reader predicts every toy attribute (:data:`attngan.data.toy.ATTRIBUTES`: five part colours, beak and
tail size) of a 128 px bird crop in two steps:

1. a small fully convolutional net (:class:`PartSegNet`) labels each pixel with its part (background,
   tail, body, wing, beak, head, eye: :data:`attngan.data.toy.PART_LABELS`). It is trained on the toy
   train images cropped exactly as the data pipeline crops them (box crop, ``Resize(int(128 * 76 / 64))``,
   random 128 px crop, flip; seen at half resolution, 64 px), with the part maps that
   :func:`attngan.data.toy.render_bird` redraws, with the colour channels permuted at random so that it
   finds parts by shape, not by the colour combinations of the train classes, and a quarter of the
   crops blurred (generated images are soft);
2. a part's colour is the palette colour (:data:`attngan.data.toy.PALETTE`) most of its pixels are
   nearest to (pixels far from every palette colour, such as outlines and background, do not vote); a
   size is a threshold, fitted on the train images, on the beak/head and tail/body area ratios. A part
   the net does not find (e.g. cut off by the crop) gives no value, which never matches.

(A plain CNN with one classification head per attribute, trained on the same crops for longer, read the
crown, body and wing colours of the real test images 79-100% right but the beak and tail colours about a
quarter of the time and the sizes at chance: those parts are a few pixels.)

Then, for a folder of generated images ``<class>/<stem>_s-1[_<r>].png`` (the sampler's layout,
:func:`attngan.sampling.sample_split`; repetition ``r`` used caption ``r % CAPTIONS_PER_IMAGE`` of that
image, repetition 0 caption 0), each colour the image's caption names is compared with the colour read
from the image. Reported beside it: the reader's accuracy on the real test images (held-out classes: new
attribute combinations) as the ceiling; the same generated images scored against shuffled captions (a
seeded permutation of the captions over the images: what ignoring the text scores); chance (1 / number
of values) and the majority rate (always answering the most frequent named value).

The trained reader is cached (default ``<data_dir>/follow_classifier.pt``, written atomically) under a
fingerprint of the dataset's ``attributes.json`` and the training settings.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from ..atomic import atomic_open
from ..errors import InputError, MissingFileError
from ..data.cub import image_root, load_bbox
from ..data.toy import ATTRIBUTES, COLOR_PART, PALETTE, PART_LABELS, SIZES, load_attributes, render_bird
from ..data.transforms import crop_to_bbox, load_image, load_size

__all__ = ['COLOR_ATTRS', 'SIZE_ATTRS', 'VALUES', 'GEN_SIZE', 'NET_SIZE', 'PartSegNet', 'FollowClassifier',
           'pipeline_crop', 'train_classifier', 'load_or_train', 'real_test_scores', 'find_generated',
           'score_predictions', 'evaluate_folder', 'format_report']

COLOR_ATTRS = tuple(a for a in ATTRIBUTES if a.endswith('_color'))
SIZE_ATTRS = tuple(a for a in ATTRIBUTES if a.endswith('_size'))
#: The values of each attribute, in label order (predictions are indices into these; -1: part not found).
VALUES = {a: (tuple(PALETTE) if a in COLOR_ATTRS else SIZES) for a in ATTRIBUTES}
#: Size attribute -> (part, reference part) whose area ratio decides it.
SIZE_PARTS = {'beak_size': ('beak', 'head'), 'tail_size': ('tail', 'body')}

GEN_SIZE = 128  # the toy config's last stage (2 stages, 64 and 128 px)
NET_SIZE = 64   # the net's input: a 128 px crop at half resolution
N_PARTS = 1 + len(PART_LABELS)  # background + parts
_FORMAT = 2     # bump when the cached file's content or training changes meaning
_PALETTE = np.array(list(PALETTE.values()), dtype=np.float32)
_VOTE_DIST = 55.0  # a pixel votes for its nearest palette colour only when nearer than this (RGB units)
_PART_PROB = 0.5   # part pixels: probability above this (else, if the maximum reaches _FOUND_PROB,
_FOUND_PROB = 0.25  # pixels at least half the maximum; below it the part is not found)
_BLUR_P = 0.25     # share of training crops blurred

_GEN_NAME = re.compile(r'^(?P<stem>.+)_s-1(?:_(?P<rep>\d+))?\.png$')


# ----------------------------------------------------------------------------------------------
# images

def _half(img: Image.Image, resample=Image.BILINEAR) -> Image.Image:
    """Half resolution (PIL's antialiased bilinear for images), the same for real crops and generated images."""
    w, h = img.size
    return img.resize((max(1, round(w / 2)), max(1, round(h / 2))), resample)


def _load_size_image(img: Image.Image, bbox: Sequence[int], size: int = GEN_SIZE,
                     nearest: bool = False) -> Image.Image:
    """The pipeline up to its random crop: box crop, then Resize(int(size * 76 / 64)) (short side)."""
    mode = TF.InterpolationMode.NEAREST if nearest else TF.InterpolationMode.BILINEAR
    return TF.resize(crop_to_bbox(img, bbox), load_size(size), interpolation=mode)


def pipeline_crop(img: Image.Image, bbox: Sequence[int], size: int = GEN_SIZE) -> Image.Image:
    """The data pipeline's ``size`` px training crop of a full image, centred instead of random, no flip."""
    return TF.center_crop(_load_size_image(img, bbox, size), [size, size])


def _to_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert('RGB'), dtype=np.uint8)


def _net_input(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def _real_split(data_dir: Path, split: str, train_maps: bool):
    """Keys, 128 px centre crops (N, 128, 128, 3) uint8, and with ``train_maps`` the half-resolution
    load-size crops (H, W, 3) (short side 76; 64 px training crops are drawn from them) and their part
    maps (H, W) uint8."""
    meta = load_attributes(data_dir)
    boxes = load_bbox(data_dir)
    root = image_root(data_dir)
    keys = sorted(k for k, v in meta['images'].items() if v['split'] == split)
    if not keys:
        raise InputError(f'{data_dir / "attributes.json"}: no image of split {split!r}')
    crops, halves, maps = [], [], []
    for k in keys:
        big = _load_size_image(load_image(root / f'{k}.jpg'), boxes[k])
        crops.append(_to_array(TF.center_crop(big, [GEN_SIZE, GEN_SIZE])))
        if train_maps:
            half = _half(big)
            _, parts = render_bird(meta['images'][k])
            pmap = _load_size_image(Image.fromarray(parts), boxes[k], nearest=True).resize(half.size, Image.NEAREST)
            halves.append(_to_array(half))
            maps.append(np.asarray(pmap, dtype=np.uint8))
    return keys, np.stack(crops), halves, maps


# ----------------------------------------------------------------------------------------------
# the part reader

def _block(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = (k - stride) // 2 if stride > 1 else dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PartSegNet(nn.Module):
    """Per-pixel part logits: two stride-2 convs (64 -> 16 px), two dilated convs for context, one skip
    back to 32 px, logits upsampled to the input size.

    Input (N, 3, 64, 64) in [-1, 1]; output (N, N_PARTS, 64, 64) logits.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w, d = width, width * 3 // 2
        self.e1 = _block(3, w, 4, 2)
        self.e2 = _block(w, 2 * w, 4, 2)
        self.e3 = _block(2 * w, 3 * w, 3, dilation=2)
        self.e4 = _block(3 * w, 3 * w, 3, dilation=4)
        self.d1 = _block(3 * w + w, d, 1)
        self.d2 = _block(d, d, 3)
        self.out = nn.Conv2d(d, N_PARTS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = self.e1(x)
        h = self.e4(self.e3(self.e2(h1)))
        h = torch.cat([F.interpolate(h, size=h1.shape[2:], mode='bilinear', align_corners=False), h1], 1)
        return F.interpolate(self.out(self.d2(self.d1(h))), size=x.shape[2:], mode='bilinear',
                             align_corners=False)


def _read_image(img: np.ndarray, probs: np.ndarray) -> tuple[dict[str, int], dict[str, float]]:
    """Colour indices (-1: part not found) and soft part areas of one (128, 128, 3) uint8 image given
    its part probabilities (N_PARTS, 128, 128)."""
    px = img.reshape(-1, 3).astype(np.float32)
    dist = np.sqrt(((px[:, None, :] - _PALETTE[None]) ** 2).sum(-1))
    nearest, near_d = dist.argmin(1), dist.min(1)
    colours = {}
    for attr, part in COLOR_PART.items():
        p = probs[PART_LABELS[part]].reshape(-1)
        top = float(p.max())
        if top < _FOUND_PROB:
            colours[attr] = -1
            continue
        mask = p > (_PART_PROB if top > _PART_PROB else top / 2)
        votes = mask & (near_d < _VOTE_DIST)
        if not votes.any():  # no clean pixel: let the part's nearest pixels vote anyway
            votes = mask
        colours[attr] = int(np.bincount(nearest[votes], minlength=len(_PALETTE)).argmax())
    areas = {part: float(probs[label].sum()) for part, label in PART_LABELS.items()}
    return colours, areas


def _size_feature(areas: dict[str, float], attr: str) -> float | None:
    part, ref = SIZE_PARTS[attr]
    if areas[part] < 1.0 or areas[ref] < 1.0:
        return None
    return math.log(areas[part] / areas[ref])


@dataclass
class FollowClassifier:
    """A trained :class:`PartSegNet`, the size thresholds (``{size attribute: log area ratio}``), and what
    is known about it (``meta``: fingerprint, settings, seconds, real test figures)."""
    net: PartSegNet
    thresholds: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _as_128(im: np.ndarray | Image.Image) -> np.ndarray:
        if isinstance(im, Image.Image):
            im = im.convert('RGB')
            if im.size != (GEN_SIZE, GEN_SIZE):
                im = im.resize((GEN_SIZE, GEN_SIZE), Image.BILINEAR)
            return _to_array(im)
        im = np.asarray(im)
        if im.shape != (GEN_SIZE, GEN_SIZE, 3) or im.dtype != np.uint8:
            raise InputError(f'expected ({GEN_SIZE}, {GEN_SIZE}, 3) uint8 arrays or PIL images, '
                             f'got {im.shape} {im.dtype}')
        return im

    @torch.no_grad()
    def read(self, images: Iterable[np.ndarray | Image.Image], batch_size: int = 64
             ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Colour indices (N, len(COLOR_ATTRS)) int64 (-1: not found) and each image's soft part areas.
        Images: 128 px uint8 arrays or PIL images (other sizes are resized to 128 px)."""
        self.net.eval()
        colours, areas, batch = [], [], []

        def flush():
            arr = np.stack(batch)
            small = np.stack([_to_array(_half(Image.fromarray(a))) for a in arr])
            probs = F.interpolate(self.net(_net_input(small)).softmax(1), size=(GEN_SIZE, GEN_SIZE),
                                  mode='bilinear', align_corners=False).numpy()
            for a, p in zip(arr, probs):
                c, ar = _read_image(a, p)
                colours.append([c[k] for k in COLOR_ATTRS])
                areas.append(ar)
            batch.clear()

        for im in images:
            batch.append(self._as_128(im))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        return np.asarray(colours, dtype=np.int64).reshape(-1, len(COLOR_ATTRS)), areas

    def predict(self, images: Iterable[np.ndarray | Image.Image]) -> np.ndarray:
        """Value indices into :data:`VALUES`, int64 (N, len(ATTRIBUTES)); -1 where the part is not found."""
        colours, areas = self.read(images)
        out = np.full((len(areas), len(ATTRIBUTES)), -1, dtype=np.int64)
        for j, a in enumerate(ATTRIBUTES):
            if a in COLOR_ATTRS:
                out[:, j] = colours[:, COLOR_ATTRS.index(a)]
                continue
            for i, ar in enumerate(areas):
                f = _size_feature(ar, a)
                if f is not None:
                    out[i, j] = VALUES[a].index('long' if f > self.thresholds[a] else 'short')
        return out


def _best_threshold(feats: np.ndarray, is_long: np.ndarray) -> float:
    """The threshold on ``feats`` (long above it) with the best accuracy: a midpoint between neighbours."""
    order = np.argsort(feats)
    f, y = feats[order], is_long[order].astype(np.int64)
    # threshold between f[i-1] and f[i]: the first i are 'short'
    correct = np.concatenate([[0], np.cumsum(1 - y)]) + (y.sum() - np.concatenate([[0], np.cumsum(y)]))
    i = int(correct.argmax())
    if i == 0:
        return float(f[0] - 1.0)
    if i == len(f):
        return float(f[-1] + 1.0)
    return float((f[i - 1] + f[i]) / 2)


def _train_batch(halves, maps, idx, rng) -> tuple[np.ndarray, np.ndarray]:
    """RandomCrop(64) + RandomHorizontalFlip of images and their part maps, colour channels permuted."""
    x = np.empty((len(idx), NET_SIZE, NET_SIZE, 3), dtype=np.uint8)
    y = np.empty((len(idx), NET_SIZE, NET_SIZE), dtype=np.int64)
    for n, i in enumerate(idx):
        img, pm = halves[i], maps[i]
        top = int(rng.integers(img.shape[0] - NET_SIZE + 1))
        left = int(rng.integers(img.shape[1] - NET_SIZE + 1))
        ci, cm = img[top:top + NET_SIZE, left:left + NET_SIZE], pm[top:top + NET_SIZE, left:left + NET_SIZE]
        if rng.random() < 0.5:
            ci, cm = ci[:, ::-1], cm[:, ::-1]
        x[n] = ci[:, :, rng.permutation(3)]
        y[n] = cm
    return x, y


def _settings(epochs: int, width: int, seed: int) -> dict[str, Any]:
    return {'format': _FORMAT, 'epochs': int(epochs), 'width': int(width), 'seed': int(seed)}


def _fingerprint(data_dir: Path, settings: dict[str, Any]) -> str:
    path = data_dir / 'attributes.json'
    if not path.is_file():
        raise MissingFileError(f'{path}: not found (not a complete toy dataset; run data/make_toy.py)')
    h = hashlib.sha256(path.read_bytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:20]


def train_classifier(data_dir: str | os.PathLike, epochs: int = 12, width: int = 16, seed: int = 0,
                     batch_size: int = 32, lr: float = 3e-3, verbose: bool = False) -> FollowClassifier:
    """Train the part reader on the train split on the CPU, fit the size thresholds on the train images,
    and score it on the real test images (``meta``: seconds, :func:`real_test_scores`)."""
    data_dir = Path(data_dir)
    settings = _settings(epochs, width, seed)
    t0 = time.perf_counter()
    keys, crops, halves, maps = _real_split(data_dir, 'train', train_maps=True)
    t_data = time.perf_counter() - t0

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    net = PartSegNet(width)
    # the beak is 0.4% of the pixels: weight parts by 1/sqrt(frequency)
    freq = np.bincount(np.concatenate([m.ravel() for m in maps]), minlength=N_PARTS) / sum(m.size for m in maps)
    weight = torch.tensor(np.maximum(freq, 1e-4) ** -0.5, dtype=torch.float32)
    weight /= weight.mean()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = math.ceil(len(halves) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    net.train()
    for epoch in range(epochs):
        order = rng.permutation(len(halves))
        total = 0.0
        for s in range(steps):
            idx = order[s * batch_size:(s + 1) * batch_size]
            x, y = _train_batch(halves, maps, idx, rng)
            x = _net_input(x)
            blur = torch.from_numpy(rng.random(len(idx)) < _BLUR_P)
            if blur.any():  # generated images are softer than the JPEGs
                sigma = float(rng.uniform(0.5, 1.5))
                x[blur] = TF.gaussian_blur(x[blur], [5, 5], [sigma, sigma])
            loss = F.cross_entropy(net(x), torch.from_numpy(y), weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if verbose:
            print(f'  part reader epoch {epoch + 1}/{epochs}: loss {total / len(halves):.3f} '
                  f'({time.perf_counter() - t0:.0f} s)', flush=True)
    net.eval()

    meta_all = load_attributes(data_dir)
    clf = FollowClassifier(net, {})
    _, areas = clf.read(crops)
    for a in SIZE_ATTRS:
        rows = [(f, meta_all['images'][k]['attributes'][a] == 'long') for k, ar in zip(keys, areas)
                if (f := _size_feature(ar, a)) is not None]
        if not rows:
            raise InputError(f'part reader: no {SIZE_PARTS[a][0]} found in any train image of {data_dir}')
        clf.thresholds[a] = _best_threshold(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    train_seconds = time.perf_counter() - t0
    clf.meta = {'settings': settings, 'fingerprint': _fingerprint(data_dir, settings), 'n_train': len(keys),
                'data_seconds': round(t_data, 1), 'train_seconds': round(train_seconds, 1)}
    clf.meta.update(real_test_scores(clf, data_dir))
    return clf


def _caption_targets(meta: dict[str, Any], items: Sequence[tuple[str, int]]):
    truth, mentions = [], []
    for key, rep in items:
        entry = meta['images'][key]
        caps = entry['captions']
        truth.append(entry['attributes'])
        mentions.append(caps[rep % len(caps)]['mentions'])
    return truth, mentions


def real_test_scores(clf: FollowClassifier, data_dir: str | os.PathLike) -> dict[str, Any]:
    """The reader's ceiling on the real test images (centre pipeline crops): ``real_test_accuracy`` and
    ``real_not_found`` per attribute, and ``real_captions``: :func:`score_predictions` with every caption
    of every image."""
    data_dir = Path(data_dir)
    keys, crops, _, _ = _real_split(data_dir, 'test', train_maps=False)
    meta = load_attributes(data_dir)
    pred = clf.predict(crops)
    truth = np.asarray([[VALUES[a].index(meta['images'][k]['attributes'][a]) for a in ATTRIBUTES] for k in keys])
    acc = {a: float((pred[:, j] == truth[:, j]).mean()) for j, a in enumerate(ATTRIBUTES)}
    missing = {a: float((pred[:, j] < 0).mean()) for j, a in enumerate(ATTRIBUTES)}
    n_caps = [len(meta['images'][k]['captions']) for k in keys]
    rows = [i for i, n in enumerate(n_caps) for _ in range(n)]
    items = [(keys[i], r) for i, n in enumerate(n_caps) for r in range(n)]
    cap_truth, mentions = _caption_targets(meta, items)
    return {'real_test_accuracy': acc, 'real_not_found': missing, 'n_real_test': len(keys),
            'real_captions': score_predictions(pred[rows], cap_truth, mentions)}


def _save_atomic(obj: Any, path: Path) -> None:
    with atomic_open(path) as f:
        torch.save(obj, f)


def load_or_train(data_dir: str | os.PathLike, cache: str | os.PathLike | bool | None = None,
                  epochs: int = 12, width: int = 16, seed: int = 0, verbose: bool = False) -> FollowClassifier:
    """The cached reader when its fingerprint matches the dataset and settings, else a new one (trained
    and cached). ``cache``: a file, None or True for ``<data_dir>/follow_classifier.pt``, False for none."""
    data_dir = Path(data_dir)
    settings = _settings(epochs, width, seed)
    fp = _fingerprint(data_dir, settings)
    path = None if cache is False else data_dir / 'follow_classifier.pt' if cache in (None, True) else Path(cache)
    if path is not None and path.is_file():
        try:
            blob = torch.load(path, map_location='cpu', weights_only=True)
            if blob.get('fingerprint') == fp:
                net = PartSegNet(width)
                net.load_state_dict(blob['state_dict'])
                info = json.loads(blob['info'])
                if verbose:
                    print(f'part reader: cached {path}')
                return FollowClassifier(net.eval(), info['thresholds'], info['meta'])
        except Exception as e:  # a stale or foreign file is trained over, not fatal
            warnings.warn(f'{path}: unreadable part reader ({e}); training a new one')
    if verbose:
        print(f'part reader: training on {data_dir} ({epochs} epochs)', flush=True)
    clf = train_classifier(data_dir, epochs=epochs, width=width, seed=seed, verbose=verbose)
    if path is not None:
        try:
            _save_atomic({'fingerprint': fp, 'state_dict': clf.net.state_dict(),
                          'info': json.dumps({'thresholds': clf.thresholds, 'meta': clf.meta})}, path)
        except OSError as e:
            warnings.warn(f'{path}: could not cache the part reader ({e})')
    return clf


# ----------------------------------------------------------------------------------------------
# scoring

def find_generated(gen_dir: str | os.PathLike) -> list[tuple[Path, str, int]]:
    """``(path, key '<class>/<stem>', repetition)`` of every ``<class>/<stem>_s-1[_<r>].png`` under
    ``gen_dir`` (searched recursively), sorted by path."""
    gen_dir = Path(gen_dir)
    if not gen_dir.is_dir():
        raise MissingFileError(f'{gen_dir}: not a folder')
    out = []
    for p in sorted(gen_dir.rglob('*_s-1*.png')):
        m = _GEN_NAME.match(p.name)
        if m:
            out.append((p, f'{p.parent.name}/{m["stem"]}', int(m['rep'] or 0)))
    return out


def score_predictions(pred: np.ndarray, truth: Sequence[dict[str, str]], mentions: Sequence[Sequence[str]]
                      ) -> dict[str, Any]:
    """Match of predictions (N, len(ATTRIBUTES)) (indices into :data:`VALUES`, -1 never matches) with
    captions: ``truth[i]`` the values the caption describes, ``mentions[i]`` the attributes it names.

    Returns ``per_attribute``: ``{'match', 'n', 'not_found', 'majority'}`` over the images whose caption
    names the attribute; ``colour``: ``pair_match`` over (image, named colour) pairs, ``all_match`` over
    the images whose caption names a colour (all named colours match), their chance (uniform guess)
    and majority (always the most frequent named value) levels, and the counts.
    """
    pred = np.asarray(pred)
    per: dict[str, Any] = {}
    majority = {}
    ok = np.zeros(pred.shape, dtype=bool)
    for j, a in enumerate(ATTRIBUTES):
        want = np.asarray([VALUES[a].index(t[a]) for t in truth], dtype=np.int64).reshape(-1)
        ok[:, j] = pred[:, j] == want
        rows = np.asarray([a in m for m in mentions], dtype=bool)
        if not rows.any():
            per[a] = {'match': None, 'n': 0, 'not_found': None, 'majority': None}
            continue
        counts = np.bincount(want[rows], minlength=len(VALUES[a]))
        majority[a] = int(counts.argmax())
        per[a] = {'match': float(ok[rows, j].mean()), 'n': int(rows.sum()),
                  'not_found': float((pred[rows, j] < 0).mean()), 'majority': float(counts.max() / rows.sum())}
    pairs = hits = n_img = all_hits = maj_all = 0
    uni_all = 0.0
    for i, m in enumerate(mentions):
        cols = [ATTRIBUTES.index(a) for a in COLOR_ATTRS if a in m]
        if not cols:
            continue
        pairs += len(cols)
        hits += int(ok[i, cols].sum())
        n_img += 1
        all_hits += bool(ok[i, cols].all())
        maj_all += all(VALUES[ATTRIBUTES[j]].index(truth[i][ATTRIBUTES[j]]) == majority[ATTRIBUTES[j]]
                       for j in cols)
        uni_all += (1 / len(PALETTE)) ** len(cols)
    maj_pairs = sum(per[a]['majority'] * per[a]['n'] for a in COLOR_ATTRS if per[a]['n'])
    colour = {'pairs': pairs, 'images': n_img,
              'pair_match': hits / pairs if pairs else None,
              'all_match': all_hits / n_img if n_img else None,
              'pair_chance': 1 / len(PALETTE),
              'pair_majority': maj_pairs / pairs if pairs else None,
              'all_chance': uni_all / n_img if n_img else None,
              'all_majority': maj_all / n_img if n_img else None}
    return {'per_attribute': per, 'colour': colour}


def evaluate_folder(clf: FollowClassifier, gen_dir: str | os.PathLike, data_dir: str | os.PathLike,
                    shuffle_seed: int = 0) -> dict[str, Any]:
    """Score the generated images under ``gen_dir`` against their captions and against shuffled
    captions, with the reader's real-image figures beside them (see the module docstring).

    Images whose key is not in the dataset are counted (``unknown``) and skipped; none known is an error.
    """
    data_dir = Path(data_dir)
    meta = load_attributes(data_dir)
    found = find_generated(gen_dir)
    known = [(p, k, r) for p, k, r in found if k in meta['images']]
    if not known:
        raise InputError(f'{gen_dir}: no generated image of {data_dir} found (expected '
                         f'<class>/<stem>_s-1.png or <class>/<stem>_s-1_<r>.png; {len(found)} such files, '
                         f'none with a stem of the dataset)')

    def images():
        for p, _, _ in known:
            with Image.open(p) as im:
                yield im.convert('RGB')

    pred = clf.predict(images())
    items = [(k, r) for _, k, r in known]
    truth, mentions = _caption_targets(meta, items)
    gen = score_predictions(pred, truth, mentions)
    perm = np.random.default_rng(shuffle_seed).permutation(len(items))
    shuf = score_predictions(pred, [truth[i] for i in perm], [mentions[i] for i in perm])
    return {'gen_dir': str(gen_dir), 'n_images': len(known), 'unknown': len(found) - len(known),
            'splits': sorted({meta['images'][k]['split'] for k, _ in items}),
            'generated': gen, 'shuffled': shuf, 'classifier': clf.meta}


def format_report(report: dict[str, Any]) -> str:
    """A small table of :func:`evaluate_folder`'s result (percentages)."""
    def pct(v, w=4):
        return '-'.rjust(w) if v is None else f'{100 * v:{w}.0f}'
    gen, shuf, cl = report['generated'], report['shuffled'], report['classifier']
    real = cl.get('real_test_accuracy') or {}
    lines = [f"{report['n_images']} generated images ({', '.join(report['splits'])} split) under "
             f"{report['gen_dir']}" + (f"; {report['unknown']} unknown stems skipped" if report['unknown'] else ''),
             '',
             f"{'attribute':<12} {'named':>5}  {'real':>4}  {'gen':>4}  {'miss':>4}  {'shuf':>4}  {'maj':>4}  "
             f"{'1/k':>4}"]
    for a in ATTRIBUTES:
        g = gen['per_attribute'][a]
        lines.append(f"{a:<12} {g['n']:>5}  {pct(real.get(a))}  {pct(g['match'])}  {pct(g['not_found'])}  "
                     f"{pct(shuf['per_attribute'][a]['match'])}  {pct(g['majority'])}  {pct(1 / len(VALUES[a]))}")
    c, s = gen['colour'], shuf['colour']
    rc = (cl.get('real_captions') or {}).get('colour', {})
    lines += ['', f"{'named colours':<24} {'gen':>4}  {'real':>4}  {'shuf':>4}  {'maj':>4}  {'chance':>6}",
              f"{'each (pairs)':<24} {pct(c['pair_match'])}  {pct(rc.get('pair_match'))}  {pct(s['pair_match'])}  "
              f"{pct(c['pair_majority'])}  {pct(c['pair_chance'], 6)}   ({c['pairs']} pairs)",
              f"{'all of a caption':<24} {pct(c['all_match'])}  {pct(rc.get('all_match'))}  {pct(s['all_match'])}  "
              f"{pct(c['all_majority'])}  "
              + ('     -' if c['all_chance'] is None else f"{100 * c['all_chance']:6.1f}")
              + f"   ({c['images']} images)",
              '',
              'real: the reader on real test images of held-out classes (its ceiling); gen: generated images vs '
              'their captions;',
              'miss: part not found; shuf: vs shuffled captions; maj: always the most frequent named value; '
              '1/k: uniform guess (%)']
    if 'train_seconds' in cl:
        lines.append(f"part reader: trained on {cl.get('n_train')} real train images in {cl['train_seconds']} s")
    return '\n'.join(lines)
