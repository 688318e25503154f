"""The embedded default dataset: synthetic captioned birds in exactly the CUB layout the loader reads.

``make_toy_dataset(out_dir, seed=0)`` draws a simple bird (tail, body, wing, beak, head with crown, eye)
with PIL on a textured background and writes, deterministically for a seed (same seed and library
versions -> byte-identical files)::

    CUB_200_2011/images/<class>/<stem>.jpg      real JPEGs, non-square, ~500x375 by default
    CUB_200_2011/images.txt                     '<id> <class>/<stem>.jpg'
    CUB_200_2011/bounding_boxes.txt             '<id> x y w h' (floats): the bird's tight box
    CUB_200_2011/{classes,image_class_labels,train_test_split}.txt   as in CUB
    text/<class>/<stem>.txt                     exactly CAPTIONS_PER_IMAGE captions, one a line
    train/filenames.pickle, test/filenames.pickle        ['<class>/<stem>', ...] (protocol 2)
    train/class_info.pickle, test/class_info.pickle      [class number, ...], same order
    example_filenames.txt, example_captions.txt          captions for sampling (paths without .txt)
    attributes.json                             per image: attributes, colours, pose, box, captions and
                                                which attributes each caption mentions
    toy_dataset.json                            generator parameters; "complete": true once all is written

A class is a fixed combination of part colours and sizes (:data:`ATTRIBUTES`); images of a class vary
in shade, pose, scale, position and background. Train and test classes are disjoint, as in CUB, and
test classes recombine attribute values seen in training, so captions of test classes use only words
the text encoder has learned. Each caption mentions a varying subset of the attributes in varying
order through many CUB-like templates, with a small vocabulary of strongly distinct colours
(:data:`PALETTE`) that never occur in backgrounds.

:func:`render_bird` redraws an image (before JPEG coding) and its part label map from its
``attributes.json`` entry, so tests and evaluation scripts know which pixels belong to which part.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import InputError
from .text import LayoutError, OutputExistsError

FORMAT_VERSION = 3  # 2: chunkier parts; birds placed so that the loaders' box crop lies inside the image;
                    # 3: captions name every part that fits in 18 words (2: 2-5 parts)

#: Caption colour words and their RGB values: saturated, far apart, and far from every background.
PALETTE: dict[str, tuple[int, int, int]] = {
    'red': (215, 35, 35),
    'orange': (240, 140, 20),
    'yellow': (240, 215, 40),
    'green': (40, 150, 50),
    'blue': (35, 75, 215),
    'purple': (130, 45, 165),
    'brown': (115, 70, 35),
    'black': (25, 25, 25),
    'white': (240, 240, 240),
}
SIZES = ('short', 'long')

#: The attributes that define a class, in a fixed order.
ATTRIBUTES = ('crown_color', 'body_color', 'wing_color', 'beak_color', 'beak_size', 'tail_color', 'tail_size')

#: Labels of :func:`render_bird`'s label map (0 is background), in drawing order.
PART_LABELS = {'tail': 1, 'body': 2, 'wing': 3, 'beak': 4, 'head': 5, 'eye': 6}

#: The drawn part whose colour each colour attribute sets (the crown colour fills the whole head).
COLOR_PART = {'crown_color': 'head', 'body_color': 'body', 'wing_color': 'wing',
              'beak_color': 'beak', 'tail_color': 'tail'}

#: Caption nouns for each drawn part.
PART_WORDS = {'head': ('crown', 'head'), 'body': ('belly', 'breast', 'body'),
              'wing': ('wings', 'wing'), 'beak': ('beak', 'bill'), 'tail': ('tail',)}

# Background schemes: (top colour, bottom colour), muted mid tones at least ~60 from every palette colour.
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    'sky': ((115, 160, 200), (160, 190, 210)),
    'foliage': ((100, 125, 85), (140, 155, 110)),
    'sand': ((185, 160, 130), (205, 185, 155)),
    'water': ((70, 120, 130), (110, 150, 155)),
    'stone': ((135, 135, 125), (165, 160, 150)),
    'dusk': ((150, 120, 140), (195, 160, 150)),
}
_BG_JITTER = 10      # per-image shift of each gradient end, per channel
_BG_BLOB = 22        # strength of the soft blobs (clouds, bushes)
_GRAIN = 5           # per-pixel noise over the whole image, uniform in [-5, 5]
_SHADE_JITTER = 12   # per-image shift of each part colour, per channel
_CROP_SLACK = 1.03   # margin for rounding and the drawn outline around the bird box

# Part geometry in units of the body length L (bird facing +x, y pointing down).
# Parts are chunky on purpose: at the 64-128 px the encoders see, a thin beak or a tail mostly hidden by the
# body leaves its colour to a handful of pixels, which small CPU models learn far too slowly.
_BEAK_LEN = {'short': (0.20, 0.25), 'long': (0.40, 0.48)}
_TAIL_LEN = {'short': (0.30, 0.36), 'long': (0.56, 0.66)}


def nearest_color(rgb: Sequence[float]) -> str:
    """The palette name nearest (Euclidean RGB) to ``rgb``."""
    return min(PALETTE, key=lambda n: math.dist(PALETTE[n], rgb))


# ----------------------------------------------------------------------------------------------
# classes

def _violations(a: Mapping[str, str]) -> int:
    """Colour clashes that would hide a part or its size: neighbours must differ."""
    return (int(a['crown_color'] == a['body_color']) + int(a['wing_color'] == a['body_color'])
            + int(a['beak_color'] == a['crown_color']) + int(a['tail_color'] == a['body_color']))


def _values(attr: str) -> tuple[str, ...]:
    return SIZES if attr.endswith('_size') else tuple(PALETTE)


def design_classes(n_classes: int, n_test_classes: int, seed: int) -> list[dict[str, Any]]:
    """Attribute combinations of ``n_classes`` classes, ``n_test_classes`` of them for the test split.

    Train classes cover every value of every attribute when there are enough of them; each test class
    combines values seen in training (per attribute), differs from every train class in at least two
    attributes where possible, and from the other test classes in as many attributes as possible.
    Returns dicts ``{'number', 'name', 'split', 'attributes'}`` ordered by number; test classes get evenly
    spaced numbers (100 classes, 25 test: 004, 008, ..., 100).
    """
    if n_classes < 3:
        raise InputError(f'n_classes={n_classes}: need at least 3 (disjoint train and test classes, '
                         'test classes recombining train values)')
    if not 1 <= n_test_classes < n_classes:
        raise InputError(f'n_test_classes={n_test_classes}: must be in 1..n_classes-1 ({n_classes - 1})')
    rng = np.random.default_rng([seed, 7001])
    n_train = n_classes - n_test_classes

    # train: each attribute's column is a shuffled cycle over its values, repaired by swaps
    cols = {}
    for attr in ATTRIBUTES:
        vals = list(_values(attr))
        order = [vals[i] for i in rng.permutation(len(vals))]
        col = [order[i % len(order)] for i in range(n_train)]
        cols[attr] = [col[i] for i in rng.permutation(n_train)]

    def row(i):
        return {a: cols[a][i] for a in ATTRIBUTES}

    # cost = colour clashes + duplicate rows, updated per swap (only rows i and j change)
    counts: dict[tuple, int] = {}

    def toggle(rows, add: bool) -> int:
        """Take rows out of ``counts`` or put them in; returns their clashes + share of duplicates."""
        cost_ij = 0
        for k in rows:
            key = tuple(row(k).values())
            if not add:
                counts[key] -= 1
            cost_ij += _violations(row(k)) + (counts.get(key, 0) >= 1)
            if add:
                counts[key] = counts.get(key, 0) + 1
        return cost_ij

    c = toggle(range(n_train), add=True)
    for _ in range(20000):
        if c == 0:
            break
        i, j = rng.integers(n_train, size=2)
        attr = ATTRIBUTES[rng.integers(len(ATTRIBUTES))]
        ij = (i,) if i == j else (i, j)
        before = toggle(ij, add=False)
        cols[attr][i], cols[attr][j] = cols[attr][j], cols[attr][i]
        c2 = c - before + toggle(ij, add=True)
        if c2 <= c:
            c = c2
        else:
            toggle(ij, add=False)
            cols[attr][i], cols[attr][j] = cols[attr][j], cols[attr][i]
            toggle(ij, add=True)
    if c:
        raise InputError(f'could not design {n_train} distinct valid train classes (seed {seed}); '
                         f'ask for fewer classes or another seed')
    train = [row(i) for i in range(n_train)]

    seen = {a: sorted({t[a] for t in train}, key=_values(a).index) for a in ATTRIBUTES}
    # Test classes also differ from each other in as many attributes as can be had: R-precision draws its
    # distractor captions from the other test classes, and a caption that names only attributes its class
    # shares with the image's class is as true as the image's own, whatever the encoders learned.
    test: list[dict[str, str]] = []

    def distance(x, y):
        return sum(x[a] != y[a] for a in ATTRIBUTES)

    codes = {a: {v: k for k, v in enumerate(_values(a))} for a in ATTRIBUTES}
    train_codes = np.array([[codes[a][t[a]] for a in ATTRIBUTES] for t in train])

    for need_test in range(len(ATTRIBUTES), 0, -1):
        for need in (2, 1):
            tries = 0
            while len(test) < n_test_classes and tries < 3000:
                tries += 1
                cand = {a: seen[a][rng.integers(len(seen[a]))] for a in ATTRIBUTES}
                if _violations(cand) or cand in test:
                    continue
                cand_code = np.array([codes[a][cand[a]] for a in ATTRIBUTES])
                if (train_codes != cand_code).sum(1).min() < need:
                    continue
                if test and min(distance(cand, t) for t in test) < need_test:
                    continue
                test.append(cand)
    if len(test) < n_test_classes:
        raise InputError(f'could not design {n_test_classes} new test combinations (seed {seed}); '
                         f'ask for fewer test classes or another seed')

    test_numbers = {round((j + 1) * n_classes / n_test_classes) for j in range(n_test_classes)}
    train_iter, test_iter = iter(train), iter(test)
    classes = []
    for number in range(1, n_classes + 1):
        split = 'test' if number in test_numbers else 'train'
        attrs = next(test_iter if split == 'test' else train_iter)
        name = (f"{number:03d}.{attrs['crown_color'].capitalize()}_crowned_{attrs['body_color'].capitalize()}_"
                f"{attrs['wing_color'].capitalize()}_winged_Toybird")
        classes.append({'number': number, 'name': name, 'split': split, 'attributes': attrs})
    return classes


# ----------------------------------------------------------------------------------------------
# drawing

def _ellipse(cx, cy, rx, ry, angle=0.0, n=40):
    ca, sa = math.cos(angle), math.sin(angle)
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return pts


def _local_shapes(pose: Mapping[str, float]) -> list[tuple[str, list[tuple[float, float]]]]:
    """(part, polygon) in body-length units, bird facing +x, in drawing order."""
    ry = 0.5 * pose['body_aspect']
    hx, hy, hr = 0.46, -ry * 0.95, pose['head_r']
    shapes = []
    tl, ts, tlift = pose['tail_len'], pose['tail_spread'], pose['tail_lift']
    base_x = -0.38
    shapes.append(('tail', [(base_x, -0.55 * ry), (base_x, 0.35 * ry),
                            (base_x - tl, tlift + ts), (base_x - tl, tlift - ts)]))
    shapes.append(('body', _ellipse(0.0, 0.0, 0.5, ry)))
    shapes.append(('wing', _ellipse(-0.07, -0.12 * ry, 0.36, 0.5 * ry, angle=pose['wing_angle'])))
    bl = pose['beak_len']
    shapes.append(('beak', [(hx + 0.5 * hr, hy - 0.55 * hr), (hx + hr + bl, hy + 0.1 * hr),
                            (hx + 0.5 * hr, hy + 0.65 * hr)]))
    shapes.append(('head', _ellipse(hx, hy, hr, hr)))
    ex, ey = hx + 0.38 * hr, hy - 0.18 * hr
    shapes.append(('eye', _ellipse(ex, ey, 0.24 * hr, 0.24 * hr, n=16)))
    shapes.append(('pupil', _ellipse(ex + 0.05 * hr, ey, 0.12 * hr, 0.12 * hr, n=12)))
    return shapes


def _transform(pts, pose):
    s, a, f = pose['scale'], pose['angle'], pose['facing']
    ca, sa = math.cos(a), math.sin(a)
    out = []
    for x, y in pts:
        x = x * f
        out.append((pose['cx'] + s * (x * ca - y * sa), pose['cy'] + s * (x * sa + y * ca)))
    return out


def _extent(pose):
    """(xmin, ymin, xmax, ymax) of the bird's polygons in image coordinates."""
    pts = [p for _, poly in _local_shapes(pose) for p in _transform(poly, pose)]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def _background(w: int, h: int, bg: Mapping[str, Any]) -> Image.Image:
    """RGB background: gradient + soft blobs (clouds, bushes) + low-frequency colour noise.

    Everything here is smooth, so it is drawn at 1/8 resolution and upscaled (cheap large blur).
    """
    rng = np.random.default_rng(bg['seed'])
    sw, sh = max(8, w // 8), max(6, h // 8)
    top, bottom = np.array(bg['top'], np.float32), np.array(bg['bottom'], np.float32)
    t = np.linspace(0.0, 1.0, sh, dtype=np.float32)[:, None, None]
    tilt = np.linspace(-bg['tilt'], bg['tilt'], sw, dtype=np.float32)[None, :, None]
    img = top + (bottom - top) * np.clip(t + tilt, 0.0, 1.0)
    blobs = Image.new('L', (sw, sh), 128)
    d = ImageDraw.Draw(blobs)
    for _ in range(int(rng.integers(3, 8))):
        cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
        rx, ry = rng.uniform(0.08, 0.3) * sw, rng.uniform(0.05, 0.2) * sh
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=int(rng.integers(70, 187)))
    blobs = blobs.filter(ImageFilter.GaussianBlur(max(1.0, sw / 20)))
    img += ((np.asarray(blobs, np.float32) - 128.0) / 58.0 * _BG_BLOB)[:, :, None]
    noise = rng.normal(0.0, 1.0, size=(6, 8, 3)).astype(np.float32)
    for c in range(3):
        ch = Image.fromarray(noise[:, :, c]).resize((sw, sh), Image.BILINEAR)
        img[:, :, c] += np.asarray(ch) * 6.0
    small = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), 'RGB')
    return small.resize((w, h), Image.BILINEAR)


def render_bird(params: Mapping[str, Any]) -> tuple[Image.Image, np.ndarray]:
    """Redraw one image from its ``attributes.json`` entry (before JPEG coding).

    Returns the RGB image (size ``params['size']``) and the uint8 label map, shape (H, W), of the
    visible parts (:data:`PART_LABELS`; 0 = background).
    """
    w, h = params['size']
    pose, colors, bg = params['pose'], params['colors'], params['background']
    canvas = _background(w, h, bg)
    labels = Image.new('L', (w, h), 0)
    dc, dl = ImageDraw.Draw(canvas), ImageDraw.Draw(labels)
    edge = max(1, int(round(pose['scale'] / 70)))
    for part, poly in _local_shapes(pose):
        pts = _transform(poly, pose)
        if part == 'eye':
            dc.polygon(pts, fill=(235, 235, 225))
            dl.polygon(pts, fill=PART_LABELS['eye'])
        elif part == 'pupil':
            dc.polygon(pts, fill=(15, 15, 15))
        else:
            rgb = tuple(colors[part])
            dark = tuple(int(v * 0.7) for v in rgb)
            dc.polygon(pts, fill=rgb, outline=dark, width=edge)
            dl.polygon(pts, fill=PART_LABELS[part], outline=PART_LABELS[part], width=edge)
    # grain over the whole image, uniform in [-_GRAIN, _GRAIN]
    rng = np.random.default_rng([bg['seed'], 1])
    arr = np.asarray(canvas).astype(np.int16)
    arr += rng.integers(-_GRAIN, _GRAIN + 1, size=arr.shape, dtype=np.int16)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), 'RGB')
    return out, np.asarray(labels)


def _sample_image(rng: np.random.Generator, attrs: Mapping[str, str], w: int, h: int) -> dict[str, Any]:
    """Pose, colours and background of one image (everything :func:`render_bird` needs)."""
    r4 = lambda v: round(float(v), 4)  # noqa: E731 - stored values are exactly the drawn ones
    pose = {
        'facing': int(rng.choice([-1, 1])),
        'angle': r4(math.radians(rng.uniform(-18, 18))),
        'body_aspect': r4(rng.uniform(0.52, 0.66)),
        'head_r': r4(rng.uniform(0.21, 0.25)),
        'wing_angle': r4(math.radians(rng.uniform(-22, -6))),
        'beak_len': r4(rng.uniform(*_BEAK_LEN[attrs['beak_size']])),
        'tail_len': r4(rng.uniform(*_TAIL_LEN[attrs['tail_size']])),
        'tail_spread': r4(rng.uniform(0.12, 0.18)),
        'tail_lift': r4(rng.uniform(-0.25, 0.02)),
        'scale': 1.0, 'cx': 0.0, 'cy': 0.0,
    }
    x0, y0, x1, y1 = _extent(pose)  # at unit scale, centred at 0
    # The loaders crop a square of side 1.5 x the box's longer side around the box centre (the original's
    # get_imgs), clamped to the image. A clamped crop is not square, and the random square crop after the
    # resize then cuts the bird (its tail or beak, whose colours the captions name). So the bird is kept
    # small enough, and far enough from the edges, that the whole crop square lies inside the image.
    frac = rng.uniform(0.3, 0.6)  # bird box width / image width, before the cap below
    side_max = min(w, h) / (1.5 * _CROP_SLACK)  # the longest box side whose crop square fits
    scale = min(frac * w / (x1 - x0), side_max / max(x1 - x0, y1 - y0))
    pose['scale'] = r4(scale)
    bw, bh = (x1 - x0) * scale, (y1 - y0) * scale
    half = 0.75 * max(bw, bh) * _CROP_SLACK  # half the crop square
    centre_x = rng.uniform(half, max(half, w - half))
    centre_y = rng.uniform(half, max(half, h - half))
    pose['cx'] = r4(centre_x - bw / 2 - x0 * scale)
    pose['cy'] = r4(centre_y - bh / 2 - y0 * scale)

    colors = {}
    for attr, part in COLOR_PART.items():
        base = np.array(PALETTE[attrs[attr]])
        colors[part] = [int(v) for v in np.clip(base + rng.integers(-_SHADE_JITTER, _SHADE_JITTER + 1, 3), 0, 255)]
    scheme = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    top_c, bot_c = BACKGROUNDS[scheme]
    if rng.random() < 0.3:
        top_c, bot_c = bot_c, top_c
    bg = {
        'scheme': scheme,
        'top': [int(v) for v in np.clip(np.array(top_c) + rng.integers(-_BG_JITTER, _BG_JITTER + 1, 3), 0, 255)],
        'bottom': [int(v) for v in np.clip(np.array(bot_c) + rng.integers(-_BG_JITTER, _BG_JITTER + 1, 3), 0, 255)],
        'tilt': r4(rng.uniform(-0.25, 0.25)),
        'seed': int(rng.integers(2 ** 31)),
    }
    return {'size': [w, h], 'pose': pose, 'colors': colors, 'background': bg}


# ----------------------------------------------------------------------------------------------
# captions

_TOKEN = re.compile(r'\w+')


def tokenize(text: str) -> list[str]:
    """The loader's tokenisation: ``\\w+`` runs of the lower-cased text."""
    return _TOKEN.findall(text.lower())


def _join(items: list[str], rng) -> str:
    if len(items) == 1:
        return items[0]
    sep = ', and ' if len(items) > 2 and rng.random() < 0.3 else ' and '
    return ', '.join(items[:-1]) + sep + items[-1]


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _a(phrase: str) -> str:
    return ('an ' if phrase[0] in 'aeiou' else 'a ') + phrase


def _mention(part: str, attrs: Mapping[str, str], rng) -> tuple[list[str], str, str]:
    """One part mention: (attributes named, noun phrase, predicate 'its <noun> is <value>')."""
    art = lambda s: _a(s) if rng.random() < 0.7 else s  # noqa: E731
    if part in ('beak', 'tail'):
        detail = _pick(rng, ('color', 'size', 'both'))
        c, s = attrs[f'{part}_color'], attrs[f'{part}_size']
        noun = _pick(rng, PART_WORDS[part])
        named = {'color': [f'{part}_color'], 'size': [f'{part}_size'],
                 'both': [f'{part}_size', f'{part}_color']}[detail]
        adj = {'color': c, 'size': s, 'both': f'{s} {c}'}[detail]
        pred_val = {'color': c, 'size': s, 'both': f'{s} and {c}'}[detail]
        return named, art(f'{adj} {noun}'), f'its {noun} is {pred_val}'
    attr = {'head': 'crown_color', 'body': 'body_color', 'wing': 'wing_color'}[part]
    c = attrs[attr]
    if part == 'wing':
        np_ = _pick(rng, (f'{c} wings', f'{c} wings', f'wings that are {c}', f'{c} wing feathers'))
        return [attr], np_, f'its wings are {c}'
    noun = _pick(rng, PART_WORDS[part])
    return [attr], art(f'{c} {noun}'), f'its {noun} is {c}'


_LEADS = ('this bird has', 'the bird has', 'a bird with', 'this small bird has', 'a small bird with',
          'this is a bird with', 'this particular bird has', 'a bird that has', 'this bird has got')


def make_caption(attrs: Mapping[str, str], rng: np.random.Generator,
                 max_words: int = 18) -> tuple[str, list[str]]:
    """One CUB-like caption of a class and the attributes it names, at most ``max_words`` tokens.

    Mentions the five parts in random order through one of several templates, dropping the last
    mentions while the caption is longer than ``max_words``, e.g. "this bird has a red
    crown, blue wings, a green belly and a short yellow beak, and its tail is long".
    """
    # Every part that fits (format 3; format 2 drew 2-5 parts). With partial captions the DAMSM's sentence
    # loss is met by the two or three attributes that tell a batch's classes apart, and the small image
    # encoder learns those and memorises the training classes; with the whole bird described it must read
    # every part (docs/toy_recipe.md has the measurements).
    parts = [list(COLOR_PART.values())[i] for i in rng.permutation(5)]
    while True:
        mentions = [_mention(p, attrs, rng) for p in parts]
        nps = [m[1] for m in mentions]
        named = [a for m in mentions for a in m[0]]
        style = int(rng.integers(5))
        if style == 1 and 'body' in parts and len(parts) >= 2:
            # body colour as the bird's colour: "this bird is mostly red with blue wings"
            i = parts.index('body')
            c = attrs['body_color']
            rest = _join([n for j, n in enumerate(nps) if j != i], rng)
            text = _pick(rng, (f'this is {_a(c)} bird with {rest}', f'{_a(c)} bird with {rest}',
                               f'this bird is {c} with {rest}', f'this bird is mostly {c} and has {rest}',
                               f'a mostly {c} bird with {rest}'))
            named = ['body_color'] + [a for j, m in enumerate(mentions) if j != i for a in m[0]]
        elif style == 2 and len(parts) >= 2:
            # last mention as a predicate: "..., and its tail is long"
            text = f'{_pick(rng, _LEADS)} {_join(nps[:-1], rng)}, and {mentions[-1][2]}'
        elif style == 3 and len(parts) >= 2:
            # first mention as a predicate: "this bird's crown is red and it has ..."
            pred = mentions[0][2].replace('its ', "this bird's ", 1)
            text = f'{pred} and it has {_join(nps[1:], rng)}'
        elif style == 4 and len(parts) >= 2 and rng.random() < 0.5:
            text = _join(nps, rng)  # a fragment, as many CUB captions are
        else:
            text = f'{_pick(rng, _LEADS)} {_join(nps, rng)}'
        if rng.random() < 0.3:
            text += '.'
        if len(tokenize(text)) <= max_words or len(parts) == 1:
            return text, named
        parts = parts[:-1]


def _captions(attrs, rng, n: int) -> list[dict[str, Any]]:
    out, seen = [], set()
    for _ in range(50 * n):
        text, named = make_caption(attrs, rng)
        if text in seen:
            continue
        seen.add(text)
        out.append({'text': text, 'mentions': named})
        if len(out) == n:
            return out
    raise RuntimeError('could not make enough distinct captions')  # pragma: no cover


# ----------------------------------------------------------------------------------------------
# the dataset

def _stem(class_name: str, j: int, image_id: int) -> str:
    base = class_name.split('.', 1)[1]
    return f'{base}_{j + 1:04d}_{image_id}'


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _write_text(path: Path, lines: list[str]) -> None:
    _write_bytes(path, ''.join(line + '\n' for line in lines).encode('ascii'))


def _write_pickle(path: Path, obj) -> None:
    _write_bytes(path, pickle.dumps(obj, protocol=2))


def default_test_classes(n_classes: int) -> int:
    """CUB's proportion: a quarter of the classes (at least one) are test classes."""
    return max(1, min(n_classes - 1, round(n_classes / 4)))


def toy_params(seed: int = 0, n_classes: int = 400, images_per_class: int = 3,
               image_size: Sequence[int] = (500, 375), size_jitter: float = 0.15,
               n_test_classes: int | None = None, captions_per_image: int = 10, n_examples: int = 12,
               jpeg_quality: int = 90) -> dict[str, Any]:
    """The validated, complete generator parameters (as recorded in ``toy_dataset.json``)."""
    def bad(name, value, why):
        return InputError(f'toy dataset: {name}={value!r}: {why}')
    if not isinstance(seed, int) or seed < 0:
        raise bad('seed', seed, 'must be an integer >= 0')
    if n_classes < 3:
        raise bad('n_classes', n_classes, 'need at least 3 (disjoint train and test classes, '
                  'test classes recombining train values)')
    if n_test_classes is None:
        n_test_classes = default_test_classes(n_classes)
    if not 1 <= n_test_classes < n_classes:
        raise bad('n_test_classes', n_test_classes, f'must be in 1..{n_classes - 1}')
    if images_per_class < 1:
        raise bad('images_per_class', images_per_class, 'must be >= 1')
    if len(image_size) != 2 or min(image_size) < 48:
        raise bad('image_size', image_size, 'must be (width, height), each side at least 48 pixels')
    if not 0 <= size_jitter < 0.5:
        raise bad('size_jitter', size_jitter, 'must be in [0, 0.5)')
    if captions_per_image < 1:
        raise bad('captions_per_image', captions_per_image, 'must be >= 1')
    if not 1 <= jpeg_quality <= 100:
        raise bad('jpeg_quality', jpeg_quality, 'must be in 1..100')
    return {'format': FORMAT_VERSION, 'seed': int(seed), 'n_classes': int(n_classes),
            'n_test_classes': int(n_test_classes), 'images_per_class': int(images_per_class),
            'image_size': [int(image_size[0]), int(image_size[1])], 'size_jitter': float(size_jitter),
            'captions_per_image': int(captions_per_image), 'n_examples': int(n_examples),
            'jpeg_quality': int(jpeg_quality)}


#: Marks a folder written by this generator; ``complete`` turns true when the last file is written.
MARKER = 'toy_dataset.json'


def read_marker(data_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``toy_dataset.json`` of ``data_dir`` (generator, params, complete, summary), or None."""
    path = Path(data_dir) / MARKER
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding='ascii'))
    except (ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) and info.get('generator') == 'attngan.data.toy' else None


def _write_marker(out: Path, params, complete: bool, summary=None) -> None:
    from PIL import __version__ as pil_version
    info = {'generator': 'attngan.data.toy', 'params': params, 'complete': complete,
            # JPEG bytes are identical for a seed only with the same libraries
            'versions': {'numpy': np.__version__, 'pillow': pil_version}}
    if summary is not None:
        info['summary'] = summary
    _write_bytes(out / MARKER, (json.dumps(info, sort_keys=True, indent=1) + '\n').encode('ascii'))


def make_toy_dataset(out_dir: str | os.PathLike, seed: int = 0, n_classes: int = 400,
                     images_per_class: int = 3, image_size: Sequence[int] = (500, 375),
                     size_jitter: float = 0.15, n_test_classes: int | None = None,
                     captions_per_image: int = 10, n_examples: int = 12, jpeg_quality: int = 90,
                     overwrite: bool = False, verbose: bool = False) -> dict[str, Any]:
    """Write the synthetic dataset into ``out_dir`` (see the module docstring for the layout).

    ``image_size`` is the nominal (width, height); each image's sides are drawn uniformly within
    +-``size_jitter`` of it (never square). ``n_test_classes`` defaults to a quarter of the classes.
    ``out_dir`` must be absent or empty, or (with ``overwrite``) an earlier toy dataset, whose whole
    content (loader caches included) is then deleted; any other folder is refused (FileExistsError).
    Returns a summary: counts, class names, vocabulary size, JPEG bytes and seconds taken.
    """
    t0 = time.perf_counter()
    params = toy_params(seed, n_classes, images_per_class, image_size, size_jitter, n_test_classes,
                        captions_per_image, n_examples, jpeg_quality)
    n_test_classes = params['n_test_classes']
    w0, h0 = params['image_size']
    classes = design_classes(n_classes, n_test_classes, seed)

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f'{out}: exists and is not a folder')
    if out.is_dir() and any(out.iterdir()):
        if read_marker(out) is None:
            raise OutputExistsError(f'{out}: not empty and not a toy dataset (no {MARKER}); '
                                    'choose another folder or empty it yourself')
        if not overwrite:
            raise OutputExistsError(f'{out}: holds a toy dataset already (pass overwrite=True / --force)')
        for entry in sorted(out.iterdir()):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(out, params, complete=False)
    cub = out / 'CUB_200_2011'
    images_txt, boxes_txt, labels_txt, split_txt = [], [], [], []
    split_names = {'train': [], 'test': []}
    split_ids = {'train': [], 'test': []}
    images_meta: dict[str, Any] = {}
    vocab: set[str] = set()
    n_bytes = 0
    image_id = 0
    for cls in classes:
        for j in range(images_per_class):
            image_id += 1
            rng = np.random.default_rng([seed, cls['number'], j])
            w = int(rng.integers(round(w0 * (1 - size_jitter)), round(w0 * (1 + size_jitter)) + 1))
            h = int(rng.integers(round(h0 * (1 - size_jitter)), round(h0 * (1 + size_jitter)) + 1))
            if w == h:
                h -= 1
            meta = _sample_image(rng, cls['attributes'], w, h)
            img, labels = render_bird(meta)
            cols, rows = np.flatnonzero(labels.any(0)), np.flatnonzero(labels.any(1))
            box = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
            caps = _captions(cls['attributes'], rng, captions_per_image)
            stem = _stem(cls['name'], j, image_id)
            key = f"{cls['name']}/{stem}"

            buf = io.BytesIO()
            img.save(buf, format='JPEG', quality=jpeg_quality, subsampling=2, optimize=False)
            _write_bytes(cub / 'images' / f'{key}.jpg', buf.getvalue())
            _write_text(out / 'text' / f'{key}.txt', [c['text'] for c in caps])
            n_bytes += buf.tell()
            for c in caps:
                vocab.update(tokenize(c['text']))

            images_txt.append(f'{image_id} {key}.jpg')
            boxes_txt.append(f'{image_id} ' + ' '.join(f'{float(v):.1f}' for v in box))
            labels_txt.append(f"{image_id} {cls['number']}")
            split_txt.append(f"{image_id} {int(cls['split'] == 'train')}")
            split_names[cls['split']].append(key)
            split_ids[cls['split']].append(cls['number'])
            images_meta[key] = {'class': cls['name'], 'class_number': cls['number'], 'split': cls['split'],
                                'attributes': cls['attributes'], 'bbox': box, **meta, 'captions': caps}
        if verbose:
            print(f"  {cls['name']} ({cls['split']}): {images_per_class} images")

    _write_text(cub / 'images.txt', images_txt)
    _write_text(cub / 'bounding_boxes.txt', boxes_txt)
    _write_text(cub / 'image_class_labels.txt', labels_txt)
    _write_text(cub / 'train_test_split.txt', split_txt)
    _write_text(cub / 'classes.txt', [f"{c['number']} {c['name']}" for c in classes])
    for split in ('train', 'test'):
        _write_pickle(out / split / 'filenames.pickle', split_names[split])
        _write_pickle(out / split / 'class_info.pickle', split_ids[split])

    # sampling examples: captions of the unseen test classes (new attribute combinations)
    rng = np.random.default_rng([seed, 7002])
    test_classes = [c for c in classes if c['split'] == 'test']
    examples = []
    for i in range(n_examples):
        cls = test_classes[i % len(test_classes)]
        text, named = make_caption(cls['attributes'], rng)
        examples.append({'text': text, 'mentions': named, 'class': cls['name'],
                         'attributes': cls['attributes']})
    _write_text(out / 'example_filenames.txt', ['example_captions'])
    _write_text(out / 'example_captions.txt', [e['text'] for e in examples])

    summary = {
        'n_images': image_id, 'n_train': len(split_names['train']), 'n_test': len(split_names['test']),
        'n_classes': n_classes, 'train_classes': [c['name'] for c in classes if c['split'] == 'train'],
        'test_classes': [c['name'] for c in test_classes], 'vocab_size': len(vocab),
        'jpeg_bytes': n_bytes,
    }
    meta_all = {'generator': 'attngan.data.toy', 'params': params,
                'palette': {k: list(v) for k, v in PALETTE.items()}, 'attributes': list(ATTRIBUTES),
                'part_labels': PART_LABELS, 'color_part': COLOR_PART,
                'classes': {c['name']: {'number': c['number'], 'split': c['split'],
                                        'attributes': c['attributes']} for c in classes},
                'images': images_meta, 'examples': examples}
    _write_bytes(out / 'attributes.json',
                 json.dumps(meta_all, sort_keys=True, separators=(',', ':')).encode('ascii'))
    _write_marker(out, params, complete=True, summary=summary)
    summary['seconds'] = round(time.perf_counter() - t0, 2)
    return summary


def load_attributes(data_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``attributes.json`` of a toy dataset (:class:`LayoutError`, a FileNotFoundError, naming the path)."""
    path = Path(data_dir) / 'attributes.json'
    if not path.is_file():
        raise LayoutError(f'{path}: not found (not a complete toy dataset; run data/make_toy.py)')
    try:
        return json.loads(path.read_text(encoding='ascii'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LayoutError(f'{path}: not a toy attributes file ({e}); run data/make_toy.py --force') from None
