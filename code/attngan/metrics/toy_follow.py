"""Do generated toy birds follow their captions? A part-colour classifier measures it.

A small CNN with one head per toy attribute (:data:`attngan.data.toy.ATTRIBUTES`: five part colours, beak
and tail size) is trained on the toy train images, cropped exactly as the data pipeline crops them
(box crop, ``Resize(int(128 * 76 / 64))``, random 128 px crop, flip; the network sees them at half
resolution, 64 px). Then:

- its accuracy on the real test images (held-out classes: new attribute combinations) is the ceiling;
- each generated image ``<class>/<stem>_s-1[_<r>].png`` (the sampler's layout,
  :func:`attngan.sampling.sample_split`) is paired with the caption it came from (repetition ``r`` used
  caption ``r % CAPTIONS_PER_IMAGE`` of that image, repetition 0 caption 0), and for each colour attribute
  the caption mentions, the predicted colour is compared with the caption's colour;
- the same images paired with a shuffled caption (a seeded permutation of the captions over the images)
  show what matching an ignored caption scores; chance is 1 / number of values, and the majority rate is
  what always answering the most frequent caption value scores.

The toy train split has only 15 classes, so attribute values are correlated in it and a classifier could
read one part's colour off another's. With ``recolor`` (default) each train image is also redrawn
(:func:`attngan.data.toy.render_bird`: same pose and background) with freshly drawn part colours and sizes,
JPEG-coded as the dataset, which breaks those correlations; the real test accuracy shows the effect.

The trained classifier is cached (default ``<data_dir>/follow_classifier.pt``, written atomically) under a
fingerprint of the dataset's ``attributes.json`` and the training settings.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
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

from ..data import toy
from ..data.cub import image_root, load_bbox
from ..data.toy import ATTRIBUTES, COLOR_PART, PALETTE, SIZES, load_attributes, render_bird
from ..data.transforms import crop_to_bbox, load_image, load_size

__all__ = ['COLOR_ATTRS', 'SIZE_ATTRS', 'VALUES', 'GEN_SIZE', 'NET_SIZE', 'FollowNet', 'FollowClassifier',
           'pipeline_crop', 'real_images', 'train_classifier', 'load_or_train', 'find_generated',
           'score_predictions', 'evaluate_folder', 'format_report']

COLOR_ATTRS = tuple(a for a in ATTRIBUTES if a.endswith('_color'))
SIZE_ATTRS = tuple(a for a in ATTRIBUTES if a.endswith('_size'))
#: The values of each attribute, in label order.
VALUES = {a: (tuple(PALETTE) if a in COLOR_ATTRS else SIZES) for a in ATTRIBUTES}

GEN_SIZE = 128  # the toy config's last stage (2 stages, 64 and 128 px)
NET_SIZE = 64   # the classifier's input: a 128 px crop at half resolution
_FORMAT = 1     # bump when the cached file's content or training changes meaning

_GEN_NAME = re.compile(r'^(?P<stem>.+)_s-1(?:_(?P<rep>\d+))?\.png$')


# ----------------------------------------------------------------------------------------------
# images

def _half(img: Image.Image) -> Image.Image:
    """Half resolution with PIL's antialiased bilinear, the same for real crops and generated images."""
    w, h = img.size
    return img.resize((max(1, round(w / 2)), max(1, round(h / 2))), Image.BILINEAR)


def _load_size_image(img: Image.Image, bbox: Sequence[int], size: int = GEN_SIZE) -> Image.Image:
    """The pipeline up to its random crop: box crop, then Resize(int(size * 76 / 64)) (short side)."""
    return TF.resize(crop_to_bbox(img, bbox), load_size(size))


def pipeline_crop(img: Image.Image, bbox: Sequence[int], size: int = GEN_SIZE) -> Image.Image:
    """The data pipeline's ``size`` px training crop of a full image, centred instead of random (no flip)."""
    big = _load_size_image(img, bbox, size)
    return TF.center_crop(big, [size, size])


def _to_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert('RGB'), dtype=np.uint8)


def _center(arr: np.ndarray, size: int = NET_SIZE) -> np.ndarray:
    h, w = arr.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return arr[top:top + size, left:left + size]


def _net_input(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def _labels(attrs: dict[str, str]) -> list[int]:
    return [VALUES[a].index(attrs[a]) for a in ATTRIBUTES]


def real_images(data_dir: str | os.PathLike, split: str) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """The real images of a toy split as the classifier's training material.

    Returns ``(keys, images, labels)``: each image an (H, W, 3) uint8 array, the pipeline's load-size
    box crop at half resolution (short side ``load_size(128) // 2`` = 76: 64 px crops are drawn from it),
    and labels int64 (N, len(ATTRIBUTES)) indices into :data:`VALUES`.
    """
    data_dir = Path(data_dir)
    meta = load_attributes(data_dir)
    boxes = load_bbox(data_dir)
    root = image_root(data_dir)
    keys = sorted(k for k, v in meta['images'].items() if v['split'] == split)
    if not keys:
        raise ValueError(f'{data_dir / "attributes.json"}: no image of split {split!r}')
    imgs = [_to_array(_half(_load_size_image(load_image(root / f'{k}.jpg'), boxes[k]))) for k in keys]
    labels = np.asarray([_labels(meta['images'][k]['attributes']) for k in keys], dtype=np.int64)
    return keys, imgs, labels


def _draw_attributes(rng: np.random.Generator, exclude: set[tuple[str, ...]]) -> dict[str, str]:
    while True:
        attrs = {a: VALUES[a][int(rng.integers(len(VALUES[a])))] for a in ATTRIBUTES}
        # the generator's rule for its classes: neighbouring parts differ in colour
        if not toy._violations(attrs) and tuple(attrs[a] for a in ATTRIBUTES) not in exclude:
            return attrs


def _recolored(data_dir: Path, keys: Sequence[str], seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each train image redrawn with new part colours and sizes (same pose and background), coded and
    cropped as the dataset's; test-class combinations are never drawn."""
    meta = load_attributes(data_dir)
    quality = int(meta['params']['jpeg_quality'])
    exclude = {tuple(c['attributes'][a] for a in ATTRIBUTES) for c in meta['classes'].values()
               if c['split'] == 'test'}
    rng = np.random.default_rng([seed, 4242])
    imgs, labels = [], []
    for k in keys:
        params = json.loads(json.dumps(meta['images'][k]))  # deep copy
        attrs = _draw_attributes(rng, exclude)
        for attr, part in COLOR_PART.items():
            base = np.array(PALETTE[attrs[attr]])
            jitter = rng.integers(-toy._SHADE_JITTER, toy._SHADE_JITTER + 1, 3)
            params['colors'][part] = [int(v) for v in np.clip(base + jitter, 0, 255)]
        params['pose']['beak_len'] = round(float(rng.uniform(*toy._BEAK_LEN[attrs['beak_size']])), 4)
        params['pose']['tail_len'] = round(float(rng.uniform(*toy._TAIL_LEN[attrs['tail_size']])), 4)
        img, parts = render_bird(params)
        cols, rows = np.flatnonzero(parts.any(0)), np.flatnonzero(parts.any(1))
        box = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
        buf = io.BytesIO()
        img.save(buf, format='JPEG', quality=quality, subsampling=2)
        buf.seek(0)
        img = Image.open(buf).convert('RGB')
        imgs.append(_to_array(_half(_load_size_image(img, box))))
        labels.append(_labels(attrs))
    return imgs, np.asarray(labels, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# the classifier

class FollowNet(nn.Module):
    """Four strided conv blocks (conv 4x4 stride 2, BN, ReLU: 64 -> 4 px) and one linear head per attribute.

    Input (N, 3, 64, 64) in [-1, 1]; output ``{attribute: (N, len(VALUES[attribute])) logits}``.
    """

    def __init__(self, width: int = 32, hidden: int = 128):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        # flattened 4x4 map, not a global pool: which part is where matters
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(chans[-1] * 16, hidden),
                                nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({a: nn.Linear(hidden, len(VALUES[a])) for a in ATTRIBUTES})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.fc(self.features(x))
        return {a: head(h) for a, head in self.heads.items()}


@dataclass
class FollowClassifier:
    """A trained :class:`FollowNet` and what is known about it (``meta``: fingerprint, settings,
    training seconds, per-attribute accuracy on the real test images)."""
    net: FollowNet
    meta: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, images: Iterable[np.ndarray | Image.Image], batch_size: int = 128) -> np.ndarray:
        """Predicted value indices, int64 (N, len(ATTRIBUTES)), of images given as 64 px arrays or any
        PIL image (a 128 px generated image is halved; other sizes are resized to 64 px)."""
        arrs = []
        for im in images:
            if isinstance(im, Image.Image):
                im = im.convert('RGB')
                im = _half(im) if im.size == (2 * NET_SIZE, 2 * NET_SIZE) else \
                    im.resize((NET_SIZE, NET_SIZE), Image.BILINEAR)
                im = _to_array(im)
            if im.shape != (NET_SIZE, NET_SIZE, 3) or im.dtype != np.uint8:
                raise ValueError(f'predict: expected ({NET_SIZE}, {NET_SIZE}, 3) uint8 arrays or PIL images, '
                                 f'got {im.shape} {im.dtype}')
            arrs.append(im)
        if not arrs:
            return np.zeros((0, len(ATTRIBUTES)), dtype=np.int64)
        self.net.eval()
        out = []
        for i in range(0, len(arrs), batch_size):
            logits = self.net(_net_input(np.stack(arrs[i:i + batch_size])))
            out.append(torch.stack([logits[a].argmax(1) for a in ATTRIBUTES], 1))
        return torch.cat(out).numpy().astype(np.int64)


def _random_crops(imgs: Sequence[np.ndarray], idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RandomCrop(64) + RandomHorizontalFlip of the chosen images, (len(idx), 64, 64, 3)."""
    out = np.empty((len(idx), NET_SIZE, NET_SIZE, 3), dtype=np.uint8)
    for n, i in enumerate(idx):
        arr = imgs[i]
        top = int(rng.integers(arr.shape[0] - NET_SIZE + 1))
        left = int(rng.integers(arr.shape[1] - NET_SIZE + 1))
        crop = arr[top:top + NET_SIZE, left:left + NET_SIZE]
        out[n] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


def _settings(epochs: int, width: int, recolor: bool, seed: int) -> dict[str, Any]:
    return {'format': _FORMAT, 'epochs': int(epochs), 'width': int(width), 'recolor': bool(recolor),
            'seed': int(seed)}


def _fingerprint(data_dir: Path, settings: dict[str, Any]) -> str:
    path = data_dir / 'attributes.json'
    if not path.is_file():
        raise FileNotFoundError(f'{path}: not found (not a complete toy dataset; run data/make_toy.py)')
    h = hashlib.sha256(path.read_bytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:20]


def train_classifier(data_dir: str | os.PathLike, epochs: int = 30, width: int = 32, recolor: bool = True,
                     seed: int = 0, batch_size: int = 64, lr: float = 2e-3,
                     verbose: bool = False) -> FollowClassifier:
    """Train on the train split (plus its recoloured redraws with ``recolor``) on the CPU; ``meta`` gets
    the training seconds and the per-attribute accuracy on the real test images."""
    data_dir = Path(data_dir)
    settings = _settings(epochs, width, recolor, seed)
    t0 = time.perf_counter()
    keys, imgs, labels = real_images(data_dir, 'train')
    if recolor:
        extra, extra_labels = _recolored(data_dir, keys, seed)
        imgs, labels = imgs + extra, np.concatenate([labels, extra_labels])
    t_data = time.perf_counter() - t0

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    net = FollowNet(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(imgs) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    y = torch.from_numpy(labels)
    net.train()
    for epoch in range(epochs):
        order = rng.permutation(len(imgs))
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * batch_size:(s + 1) * batch_size]
            logits = net(_net_input(_random_crops(imgs, idx, rng)))
            loss = sum(F.cross_entropy(logits[a], y[idx, j]) for j, a in enumerate(ATTRIBUTES))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        if verbose:
            print(f'  follow classifier epoch {epoch + 1}/{epochs}: loss {total / len(imgs):.3f}', flush=True)
    train_seconds = time.perf_counter() - t0
    clf = FollowClassifier(net.eval(), {'settings': settings, 'fingerprint': _fingerprint(data_dir, settings),
                                        'n_train': len(imgs), 'data_seconds': round(t_data, 1),
                                        'train_seconds': round(train_seconds, 1)})
    clf.meta.update(real_test_scores(clf, data_dir))
    return clf


def real_test_scores(clf: FollowClassifier, data_dir: str | os.PathLike) -> dict[str, Any]:
    """The classifier's ceiling on the real test images (centre crops): ``real_test_accuracy`` per
    attribute, and ``real_captions``: :func:`score_predictions` with every caption of every image."""
    data_dir = Path(data_dir)
    keys, imgs, labels = real_images(data_dir, 'test')
    pred = clf.predict([_center(a) for a in imgs])
    acc = {a: float((pred[:, j] == labels[:, j]).mean()) for j, a in enumerate(ATTRIBUTES)}
    meta = load_attributes(data_dir)
    n_caps = [len(meta['images'][k]['captions']) for k in keys]
    rows = [i for i, n in enumerate(n_caps) for _ in range(n)]
    items = [(keys[i], r) for i, n in enumerate(n_caps) for r in range(n)]
    truth, mentions = _caption_targets(meta, items)
    return {'real_test_accuracy': acc, 'n_real_test': len(keys),
            'real_captions': score_predictions(pred[rows], truth, mentions)}


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + '.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_train(data_dir: str | os.PathLike, cache: str | os.PathLike | bool | None = None,
                  epochs: int = 30, width: int = 32, recolor: bool = True, seed: int = 0,
                  verbose: bool = False) -> FollowClassifier:
    """The cached classifier when its fingerprint matches the dataset and settings, else a new one
    (trained and cached). ``cache``: a file, None for ``<data_dir>/follow_classifier.pt``, False for none."""
    data_dir = Path(data_dir)
    settings = _settings(epochs, width, recolor, seed)
    fp = _fingerprint(data_dir, settings)
    path = None if cache is False else Path(cache) if cache not in (None, True) else \
        data_dir / 'follow_classifier.pt'
    if path is not None and path.is_file():
        try:
            blob = torch.load(path, map_location='cpu', weights_only=True)
            if blob.get('meta', {}).get('fingerprint') == fp:
                net = FollowNet(width)
                net.load_state_dict(blob['state_dict'])
                meta = json.loads(blob['meta_json'])
                if verbose:
                    print(f'follow classifier: cached {path}')
                return FollowClassifier(net.eval(), meta)
        except Exception as e:  # a stale or foreign file is retrained over, not fatal
            warnings.warn(f'{path}: unreadable follow classifier ({e}); training a new one')
    if verbose:
        print(f'follow classifier: training on {data_dir} ({epochs} epochs, recolor={recolor})', flush=True)
    clf = train_classifier(data_dir, epochs=epochs, width=width, recolor=recolor, seed=seed, verbose=verbose)
    if path is not None:
        try:
            _save_atomic({'meta': {'fingerprint': fp}, 'meta_json': json.dumps(clf.meta),
                          'state_dict': clf.net.state_dict()}, path)
        except OSError as e:
            warnings.warn(f'{path}: could not cache the follow classifier ({e})')
    return clf


# ----------------------------------------------------------------------------------------------
# scoring

def find_generated(gen_dir: str | os.PathLike) -> list[tuple[Path, str, int]]:
    """``(path, key '<class>/<stem>', repetition)`` of every ``<class>/<stem>_s-1[_<r>].png`` under
    ``gen_dir`` (searched recursively), sorted by path."""
    gen_dir = Path(gen_dir)
    if not gen_dir.is_dir():
        raise FileNotFoundError(f'{gen_dir}: not a folder')
    out = []
    for p in sorted(gen_dir.rglob('*_s-1*.png')):
        m = _GEN_NAME.match(p.name)
        if m:
            out.append((p, f'{p.parent.name}/{m["stem"]}', int(m['rep'] or 0)))
    return out


def score_predictions(pred: np.ndarray, truth: Sequence[dict[str, str]], mentions: Sequence[Sequence[str]]
                      ) -> dict[str, Any]:
    """Match of predictions (N, len(ATTRIBUTES)) with captions: ``truth[i]`` the caption's attribute values,
    ``mentions[i]`` the attributes it names. Returns per attribute ``{'match', 'n', 'majority'}`` over the
    images whose caption names it, and for the colours together ``pair_match`` (over (image, named
    colour) pairs), ``all_match`` (images whose caption names a colour and all named colours match),
    their chance levels (uniform and majority) and counts."""
    per: dict[str, Any] = {}
    majority = {}
    for j, a in enumerate(ATTRIBUTES):
        rows = [i for i, m in enumerate(mentions) if a in m]
        if not rows:
            per[a] = {'match': None, 'n': 0, 'majority': None}
            continue
        vals = [truth[i][a] for i in rows]
        top, top_n = max(((v, vals.count(v)) for v in VALUES[a]), key=lambda t: t[1])
        majority[a] = top
        hits = sum(VALUES[a][pred[i, j]] == truth[i][a] for i in rows)
        per[a] = {'match': hits / len(rows), 'n': len(rows), 'majority': top_n / len(rows)}
    pairs = hits = n_img = all_hits = maj_all = 0
    uni_all = 0.0
    for i, m in enumerate(mentions):
        named = [a for a in COLOR_ATTRS if a in m]
        if not named:
            continue
        ok = [VALUES[a][pred[i, ATTRIBUTES.index(a)]] == truth[i][a] for a in named]
        pairs += len(named)
        hits += sum(ok)
        n_img += 1
        all_hits += all(ok)
        maj_all += all(truth[i][a] == majority[a] for a in named)
        uni_all += (1 / len(PALETTE)) ** len(named)
    maj_pairs = sum(per[a]['majority'] * per[a]['n'] for a in COLOR_ATTRS if per[a]['n'])
    colour = {'pairs': pairs, 'images': n_img,
              'pair_match': hits / pairs if pairs else None,
              'all_match': all_hits / n_img if n_img else None,
              'pair_chance': 1 / len(PALETTE),
              'pair_majority': maj_pairs / pairs if pairs else None,
              'all_chance': uni_all / n_img if n_img else None,
              'all_majority': maj_all / n_img if n_img else None}
    return {'per_attribute': per, 'colour': colour}


def _caption_targets(meta: dict[str, Any], items: Sequence[tuple[str, int]]):
    truth, mentions = [], []
    for key, rep in items:
        entry = meta['images'][key]
        caps = entry['captions']
        truth.append(entry['attributes'])
        mentions.append(caps[rep % len(caps)]['mentions'])
    return truth, mentions


def evaluate_folder(clf: FollowClassifier, gen_dir: str | os.PathLike, data_dir: str | os.PathLike,
                    shuffle_seed: int = 0) -> dict[str, Any]:
    """Score the generated images under ``gen_dir`` against their captions, against shuffled captions,
    and report the classifier's real-image figures beside them (see the module docstring).

    Images whose key is not in the dataset are counted (``unknown``) and skipped; none known is an error.
    """
    data_dir = Path(data_dir)
    meta = load_attributes(data_dir)
    found = find_generated(gen_dir)
    known = [(p, k, r) for p, k, r in found if k in meta['images']]
    if not known:
        raise ValueError(f'{gen_dir}: no generated image of {data_dir} found (expected '
                         f'<class>/<stem>_s-1.png or <class>/<stem>_s-1_<r>.png; {len(found)} such files, '
                         f'none with a stem of the dataset)')
    pred = clf.predict(Image.open(p) for p, _, _ in known)
    items = [(k, r) for _, k, r in known]
    truth, mentions = _caption_targets(meta, items)
    gen = score_predictions(pred, truth, mentions)
    perm = np.random.default_rng(shuffle_seed).permutation(len(items))
    shuf = score_predictions(pred, [truth[i] for i in perm], [mentions[i] for i in perm])
    splits = sorted({meta['images'][k]['split'] for k, _ in items})
    return {'gen_dir': str(gen_dir), 'n_images': len(known), 'unknown': len(found) - len(known),
            'splits': splits, 'generated': gen, 'shuffled': shuf,
            'real_test_accuracy': clf.meta.get('real_test_accuracy'),
            'classifier': {k: v for k, v in clf.meta.items() if k != 'real_test_accuracy'}}


def format_report(report: dict[str, Any]) -> str:
    """A small table of :func:`evaluate_folder`'s result."""
    def pct(v):
        return '   -' if v is None else f'{100 * v:4.0f}'
    gen, shuf, real = report['generated'], report['shuffled'], report.get('real_test_accuracy') or {}
    lines = [f"{report['n_images']} generated images ({', '.join(report['splits'])} split) under "
             f"{report['gen_dir']}" + (f"; {report['unknown']} unknown stems skipped" if report['unknown'] else ''),
             '', f"{'attribute':<12} {'n':>5}  {'real':>4}  {'gen':>4}  {'shuf':>4}  {'maj':>4}  {'1/k':>4}   (%)"]
    for a in ATTRIBUTES:
        g = gen['per_attribute'][a]
        lines.append(f"{a:<12} {g['n']:>5}  {pct(real.get(a))}  {pct(g['match'])}  "
                     f"{pct(shuf['per_attribute'][a]['match'])}  {pct(g['majority'])}  {pct(1 / len(VALUES[a]))}")
    c, s = gen['colour'], shuf['colour']
    real_colour = [real[a] for a in COLOR_ATTRS if a in real]
    lines += ['',
              f"named colours match:     {pct(c['pair_match'])}%  ({c['pairs']} pairs; shuffled captions "
              f"{pct(s['pair_match']).strip()}%, majority {pct(c['pair_majority']).strip()}%, "
              f"chance {pct(c['pair_chance']).strip()}%"
              + (f"; real test images {pct(sum(real_colour) / len(real_colour)).strip()}%" if real_colour else '')
              + ')',
              f"all named colours match: {pct(c['all_match'])}%  ({c['images']} images; shuffled "
              f"{pct(s['all_match']).strip()}%, majority {pct(c['all_majority']).strip()}%, "
              f"chance {100 * c['all_chance']:.1f}%)" if c['images'] else 'no caption names a colour']
    cl = report['classifier']
    if 'train_seconds' in cl:
        lines.append(f"classifier: {cl.get('n_train')} training crops, trained in {cl['train_seconds']} s "
                     f"(real = accuracy on {cl.get('n_real_test')} real test images of held-out classes)")
    return '\n'.join(lines)
