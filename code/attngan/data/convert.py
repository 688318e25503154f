"""Converters into the AttnGAN DATA_DIR layout (see :mod:`attngan.data.text`).

- :func:`convert_coco`: the official ``captions_train2014.json`` / ``captions_val2014.json`` -> ``text/<stem>.txt``
  and ``train/`` / ``test/filenames.pickle`` of the original COCO layout (val2014 is the test split, as
  AttnGAN's lists). Images go to ``DATA_DIR/images/<stem>.jpg`` (not touched here).
- :func:`convert_custom`: a folder of images + a captions file -> the full CUB-like metadata: ``text/``,
  ``train/`` and ``test/filenames.pickle``, ``class_info.pickle``, the images as ``<stem>.jpg``, optional
  bounding boxes (then the CUB layout ``CUB_200_2011/{images/, images.txt, bounding_boxes.txt}``), and
  ``example_filenames.txt`` / ``example_captions.txt`` for sampling.

Nothing is half-written: every output entry (``text/``, ``images/``, ``train/`` ...) is built in a staging
folder inside the output folder and renamed into place at the end, the split lists last. Existing entries
are an error unless ``overwrite``.
"""
from __future__ import annotations

import csv
import json
import os
import posixpath
import random
import re
import shutil
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .safe_pickle import dump_pickle_atomic
from .text import (CaptionError, DatasetError, LayoutError, OutputExistsError, build_vocab, load_filenames,
                   tokenize)

__all__ = ['coco_annotation_files', 'read_coco_captions', 'convert_coco', 'read_captions_file',
           'read_bboxes', 'convert_custom']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')


class _Staging:
    """Build output entries under ``out/.staging-*`` and move them into ``out`` on :meth:`commit`."""

    def __init__(self, out_dir: Path, entries: Iterable[str], overwrite: bool):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.entries = list(entries)
        existing = [e for e in self.entries if (self.out / e).exists()]
        if existing and not overwrite:
            raise OutputExistsError(f'{self.out}: {", ".join(existing)} already exist; pass --overwrite to '
                                    f'replace them')
        self.dir = Path(tempfile.mkdtemp(dir=self.out, prefix='.staging-'))

    def path(self, rel: str) -> Path:
        p = self.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self) -> None:
        trash = Path(tempfile.mkdtemp(dir=self.out, prefix='.replaced-'))
        for e in self.entries:  # the caller orders the split lists last
            src, dst = self.dir / e, self.out / e
            if not src.exists():
                continue
            if dst.exists() or dst.is_symlink():
                os.replace(dst, trash / e.replace('/', '_'))
            os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _count_valid(captions: Sequence[str]) -> int:
    return sum(1 for c in captions if tokenize(c))


def _clean_caption(text: str) -> str:
    return ' '.join(str(text).split())  # one line: COCO has captions with newlines


# ---------------------------------------------------------------------------------------------------- COCO

def coco_annotation_files(annotations: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(train_json, val_json or None)`` in a folder: ``captions_train2014.json`` and
    ``captions_val2014.json`` (or another ``captions_train*.json*`` / ``captions_val*.json*``)."""
    d = Path(annotations)
    if d.is_file():
        return d, None
    if not d.is_dir():
        raise LayoutError(f'annotations folder {d} does not exist (expected captions_train2014.json and '
                          f'captions_val2014.json from the COCO 2014 annotations)')

    def pick(kind):
        exact = d / f'captions_{kind}2014.json'
        if exact.is_file():
            return exact
        found = sorted(d.glob(f'captions_{kind}*.json*'))
        return found[0] if found else None

    train = pick('train')
    if train is None:
        raise LayoutError(f'{d}: no captions_train2014.json (or captions_train*.json*)')
    return train, pick('val')


def read_coco_captions(path: str | os.PathLike) -> tuple[OrderedDict, int]:
    """``({stem: [captions]}, inferred)`` of an official COCO captions JSON, images in file order.

    An annotation whose image is not listed gets the name of the file's pattern (e.g.
    ``COCO_train2014_%012d``); ``inferred`` counts them (0 in the official files)."""
    path = Path(path)
    try:
        with open(path, 'r', encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LayoutError(f'{path}: not a readable COCO captions JSON ({e})') from None
    if not isinstance(data, dict) or 'annotations' not in data or 'images' not in data:
        raise LayoutError(f'{path}: expected the COCO captions format with "images" and "annotations"')
    names = OrderedDict()
    pattern = None
    where = '"images"'
    try:
        for n, img in enumerate(data['images']):
            where = f'"images" entry {n}'
            stem = os.path.splitext(img['file_name'])[0]
            names[int(img['id'])] = stem
            m = re.fullmatch(r'(.*?)(\d{12})', stem)
            if pattern is None and m and int(m.group(2)) == int(img['id']):
                pattern = m.group(1) + '%012d'
        captions = OrderedDict((stem, []) for stem in names.values())
        inferred = 0
        for n, ann in enumerate(data['annotations']):
            where = f'"annotations" entry {n}'
            image_id = int(ann['image_id'])
            stem = names.get(image_id)
            if stem is None:
                if pattern is None:
                    raise LayoutError(f'{path}: annotation {ann.get("id")} refers to image {image_id}, '
                                      f'which is not in "images"')
                stem = names[image_id] = pattern % image_id
                captions[stem] = []
                inferred += 1
            captions[stem].append(_clean_caption(ann['caption']))
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a field missing or of the wrong type
        raise LayoutError(f'{path}: {where} is not in the COCO captions format '
                          f'({type(e).__name__}: {e})') from None
    return captions, inferred


def convert_coco(out_dir: str | os.PathLike, train_json: str | os.PathLike,
                 val_json: str | os.PathLike | None = None, *, min_captions: int = 5,
                 filenames_from: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """Write ``text/`` and the split lists of the original COCO layout into ``out_dir``.

    Images with fewer than ``min_captions`` valid captions are left out (TEXT.CAPTIONS_PER_IMAGE is 5 for
    COCO). ``filenames_from``: a DATA_DIR whose ``train/`` and ``test/filenames.pickle`` give the lists
    (e.g. AttnGAN's original COCO lists); their stems must all have captions. Returns a summary dict.
    """
    splits = {'train': read_coco_captions(train_json)}
    if val_json is not None:
        splits['test'] = read_coco_captions(val_json)
    all_caps = OrderedDict()
    lists, dropped, inferred = {}, {}, 0
    for split, (caps, n_inferred) in splits.items():
        inferred += n_inferred
        all_caps.update(caps)
        lists[split] = [s for s, c in caps.items() if _count_valid(c) >= min_captions]
        dropped[split] = len(caps) - len(lists[split])
    lists.setdefault('test', [])
    if filenames_from is not None:
        for split in ('train', 'test'):
            wanted = load_filenames(filenames_from, split)
            missing = [s for s in wanted if _count_valid(all_caps.get(s, ())) < min_captions]
            if missing:
                raise CaptionError(f'{len(missing)} stems of {Path(filenames_from) / split / "filenames.pickle"} '
                                   f'have fewer than {min_captions} captions in the JSON files; first: {missing[0]}')
            lists[split] = wanted
    if not lists['train']:
        raise CaptionError(f'{train_json}: no image has {min_captions} or more captions')
    stage = _Staging(Path(out_dir), ['text', 'test', 'train'], overwrite)
    try:
        for split in ('train', 'test'):
            for stem in lists[split]:
                stage.path(f'text/{stem}.txt').write_text('\n'.join(all_caps[stem]) + '\n', encoding='utf-8')
            dump_pickle_atomic(lists[split], stage.path(f'{split}/filenames.pickle'))
        stage.commit()
    except BaseException:
        stage.abort()
        raise
    if inferred:
        warnings.warn(f'{inferred} images had captions but were not listed in "images"; their names were '
                      f'inferred from the file-name pattern')
    for split, n in dropped.items():
        if n:
            warnings.warn(f'{n} {split} images have fewer than {min_captions} captions and were left out')
    return {'train': len(lists['train']), 'test': len(lists['test']), 'dropped': dropped,
            'inferred_names': inferred, 'out_dir': str(out_dir)}


# -------------------------------------------------------------------------------------------------- custom

def read_captions_file(path: str | os.PathLike) -> list[dict]:
    """Rows ``{'image', 'caption', 'class'?, 'split'?}`` of a captions file, one row per caption.

    Formats: ``.csv`` with a header (columns image, caption, optional class, split); ``.json``: either
    ``{image: caption or [captions]}`` or a list of objects with image, caption or captions, optional class,
    split; otherwise tab-separated lines ``image<TAB>caption[<TAB>class]`` ('#' starts a comment line).
    """
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f'captions file {path} does not exist')
    try:
        rows = _read_caption_rows(path)
    except DatasetError:  # already one line naming the file (LayoutError is an OSError: not caught below)
        raise
    except UnicodeDecodeError as e:
        raise CaptionError(f'{path}: not UTF-8 text ({e})') from None
    except json.JSONDecodeError as e:
        raise LayoutError(f'{path}: not valid JSON ({e})') from None
    except csv.Error as e:
        raise LayoutError(f'{path}: not a readable CSV file ({e})') from None
    except OSError as e:
        raise LayoutError(f'{path}: cannot read ({e.strerror or e})') from None
    if not rows:
        raise CaptionError(f'{path}: no captions')
    return rows


def _read_caption_rows(path: Path) -> list[dict]:
    rows: list[dict] = []
    suffix = path.suffix.lower()
    if suffix == '.csv':
        with open(path, 'r', encoding='utf-8', newline='') as f:
            reader = csv.DictReader(f)
            fields = [c.strip().lower() for c in (reader.fieldnames or [])]
            if 'image' not in fields or 'caption' not in fields:
                raise LayoutError(f'{path}: the CSV header must name the columns image and caption '
                                  f'(optional: class, split); got {reader.fieldnames}')
            for r in reader:
                r = {k.strip().lower(): (v or '').strip() for k, v in r.items() if k}
                rows.append({k: r[k] for k in ('image', 'caption', 'class', 'split') if r.get(k)})
    elif suffix == '.json':
        with open(path, 'r', encoding='utf-8') as f:
            data = json.load(f)
        if not isinstance(data, (dict, list)):
            raise LayoutError(f'{path}: expected an object {{image: captions}} or a list of objects, '
                              f'got {type(data).__name__}')
        items = ([{'image': k, 'captions': v} for k, v in data.items()] if isinstance(data, dict) else data)
        for i, it in enumerate(items):
            if not isinstance(it, dict) or 'image' not in it:
                raise LayoutError(f'{path}: entry {i} has no "image"')
            caps = it.get('captions', it.get('caption', []))
            if not isinstance(caps, (str, list)):
                raise LayoutError(f'{path}: entry {i} ({it["image"]}): the captions must be a string or a '
                                  f'list of strings, got {type(caps).__name__}')
            for c in ([caps] if isinstance(caps, str) else caps):
                row = {'image': str(it['image']), 'caption': str(c)}
                for k in ('class', 'split'):
                    if it.get(k) not in (None, ''):
                        row[k] = str(it[k])
                rows.append(row)
    else:
        with open(path, 'r', encoding='utf-8') as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip('\n')
                if not line.strip() or line.startswith('#'):
                    continue
                parts = line.split('\t')
                if len(parts) < 2:
                    raise LayoutError(f'{path}:{lineno}: expected "image<TAB>caption[<TAB>class]"')
                row = {'image': parts[0].strip(), 'caption': parts[1].strip()}
                if len(parts) > 2 and parts[2].strip():
                    row['class'] = parts[2].strip()
                rows.append(row)
    return rows


def read_bboxes(path: str | os.PathLike) -> dict[str, list[float]]:
    """``{image: [x, y, w, h]}`` from lines ``<image path> x y w h`` (whitespace-separated)."""
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f'bounding-box file {path} does not exist')
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError as e:
        raise LayoutError(f'{path}: not UTF-8 text ({e})') from None
    except OSError as e:
        raise LayoutError(f'{path}: cannot read ({e.strerror or e})') from None
    out = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        parts = line.split()
        if not parts or parts[0].startswith('#'):
            continue
        try:
            if len(parts) != 5:
                raise ValueError
            out[parts[0]] = [float(v) for v in parts[1:]]
        except ValueError:
            raise LayoutError(f'{path}:{lineno}: expected "<image> x y w h", got {line.strip()!r}') from None
    return out


def _norm_rel(p: str) -> str:
    """A captions-file image path as a clean relative POSIX path; paths leaving the folder are refused."""
    q = posixpath.normpath(p.strip().replace('\\', '/'))
    if q.startswith('/') or q == '..' or q.startswith('../'):
        raise LayoutError(f'image path {p!r} must be relative to the images folder and inside it')
    return q


def convert_custom(images_dir: str | os.PathLike, captions_file: str | os.PathLike,
                   out_dir: str | os.PathLike, *, captions_per_image: int | None = None,
                   classes: str = 'auto', split_by: str = 'image', test_fraction: float = 0.1,
                   seed: int = 0, bboxes: str | os.PathLike | None = None, link: bool = False,
                   jpeg_quality: int = 95, overwrite: bool = False) -> dict:
    """Build a CUB-like DATA_DIR from a folder of images and a captions file.

    Args:
        images_dir: the images; the captions file names them by path relative to this folder.
        captions_file: see :func:`read_captions_file`.
        captions_per_image: required captions per image (default: the smallest count over the images;
            use it as TEXT.CAPTIONS_PER_IMAGE). An image with fewer is an error naming it.
        classes: 'auto' (the class column if any, else the first sub-folder when every image has one,
            else none), 'column', 'folders' or 'none' (no class_info.pickle: each item its own class).
        split_by: without a split column: 'image' (random ``test_fraction`` of the images) or 'class'
            (random ``test_fraction`` of the classes, disjoint as in CUB).
        bboxes: optional file of ``<image> x y w h`` lines; then the CUB layout is written.
        link: symlink JPEGs instead of copying them. Other formats are re-encoded as JPEG
            (``jpeg_quality``), since the loader reads ``<stem>.jpg``.
    Returns a summary dict (split sizes, classes, captions per image, vocabulary size, layout).
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise LayoutError(f'images folder {images_dir} does not exist')
    rows = read_captions_file(captions_file)

    per_image: OrderedDict[str, dict] = OrderedDict()
    for r in rows:
        rel = _norm_rel(r['image'])
        e = per_image.setdefault(rel, {'captions': [], 'class': None, 'split': None})
        e['captions'].append(_clean_caption(r['caption']))
        for k in ('class', 'split'):
            if r.get(k):
                if e[k] not in (None, r[k]):
                    raise CaptionError(f'{captions_file}: image {rel} has two different {k} values '
                                       f'({e[k]!r}, {r[k]!r})')
                e[k] = r[k]
    missing = [rel for rel in per_image if not (images_dir / rel).is_file()]
    if missing:
        raise LayoutError(f'{len(missing)} images named in {captions_file} are missing; first: '
                          f'{images_dir / missing[0]}')
    on_disk = [p for p in images_dir.rglob('*') if p.suffix.lower() in IMAGE_EXTENSIONS]
    uncaptioned = len(on_disk) - len(per_image)
    if uncaptioned > 0:
        warnings.warn(f'{uncaptioned} images in {images_dir} have no caption and are left out')

    counts = {rel: _count_valid(e['captions']) for rel, e in per_image.items()}
    zero = [rel for rel, n in counts.items() if n == 0]
    if zero:
        raise CaptionError(f'{len(zero)} images have no caption with a word in it; first: {zero[0]}')
    cpi = min(counts.values()) if captions_per_image is None else int(captions_per_image)
    short = [rel for rel, n in counts.items() if n < cpi]
    if short:
        raise CaptionError(f'{len(short)} images have fewer than {cpi} captions; first: {short[0]} '
                           f'({counts[short[0]]})')

    # classes
    if classes == 'auto':
        if any(e['class'] for e in per_image.values()):
            classes = 'column'
        elif all('/' in rel for rel in per_image):
            classes = 'folders'
        else:
            classes = 'none'
    if classes == 'column':
        no_class = [rel for rel, e in per_image.items() if not e['class']]
        if no_class:
            raise CaptionError(f'{captions_file}: image {no_class[0]} has no class')
        cls_of = {rel: e['class'] for rel, e in per_image.items()}
    elif classes == 'folders':
        flat = [rel for rel in per_image if '/' not in rel]
        if flat:
            raise LayoutError(f'classes from folders: {images_dir / flat[0]} is not in a sub-folder')
        cls_of = {rel: rel.split('/')[0] for rel in per_image}
    elif classes == 'none':
        cls_of = None
    else:
        raise ValueError(f"classes must be 'auto', 'column', 'folders' or 'none', got {classes!r}")
    class_names = sorted(set(cls_of.values())) if cls_of else []
    class_ids = {c: i + 1 for i, c in enumerate(class_names)}  # 1-based, as CUB's class_info

    # stems: the relative path without extension; a class column puts the image under its class folder
    def stem_of(rel: str) -> str:
        s = os.path.splitext(rel)[0]
        if classes == 'column' and not s.startswith(cls_of[rel] + '/'):
            s = f'{_safe_name(cls_of[rel])}/{s}'
        return s
    stems = {rel: stem_of(rel) for rel in per_image}
    if len(set(stems.values())) != len(stems):
        raise LayoutError('two images map to the same stem (same path without extension)')

    # splits
    rng = random.Random(seed)
    split_of = {}
    if any(e['split'] for e in per_image.values()):
        for rel, e in per_image.items():
            s = (e['split'] or '').lower()
            if s not in ('train', 'test', 'val'):
                raise CaptionError(f'{captions_file}: image {rel} has split {e["split"]!r} '
                                   f'(expected train, test or val)')
            split_of[rel] = 'train' if s == 'train' else 'test'
    elif split_by == 'class':
        if not cls_of:
            raise InputError("split_by='class' (--split-by class) needs classes: a class column in the "
                             "captions file or images in class sub-folders (--classes column|folders)")
        names = list(class_names)
        rng.shuffle(names)
        test_classes = set(names[:int(round(len(names) * test_fraction))])
        split_of = {rel: 'test' if cls_of[rel] in test_classes else 'train' for rel in per_image}
    elif split_by == 'image':
        rels = list(per_image)
        rng.shuffle(rels)
        test_set = set(rels[:int(round(len(rels) * test_fraction))])
        split_of = {rel: 'test' if rel in test_set else 'train' for rel in per_image}
    else:
        raise ValueError(f"split_by must be 'image' or 'class', got {split_by!r}")
    lists = {s: [rel for rel in per_image if split_of[rel] == s] for s in ('train', 'test')}
    if not lists['train']:
        raise CaptionError('the train split is empty')

    boxes = None
    if bboxes is not None:
        raw = {_norm_rel(k): v for k, v in read_bboxes(bboxes).items()}
        no_box = [rel for rel in per_image if rel not in raw]
        if no_box:
            raise LayoutError(f'{bboxes}: no box for {no_box[0]} ({len(no_box)} images in all)')
        boxes = raw
    img_prefix = 'CUB_200_2011/images' if boxes else 'images'
    entries = ['CUB_200_2011' if boxes else 'images', 'text', 'example_captions.txt',
               'example_filenames.txt', 'test', 'train']
    stage = _Staging(Path(out_dir), entries, overwrite)
    try:
        for rel, e in per_image.items():
            stage.path(f'text/{stems[rel]}.txt').write_text('\n'.join(e['captions']) + '\n', encoding='utf-8')
            _write_jpeg(images_dir / rel, stage.path(f'{img_prefix}/{stems[rel]}.jpg'), link, jpeg_quality)
        if boxes:
            order = lists['train'] + lists['test']
            stage.path('CUB_200_2011/images.txt').write_text(
                ''.join(f'{i} {stems[rel]}.jpg\n' for i, rel in enumerate(order, 1)), encoding='utf-8')
            stage.path('CUB_200_2011/bounding_boxes.txt').write_text(
                ''.join(f'{i} ' + ' '.join(f'{v:.1f}' for v in boxes[rel]) + '\n'
                        for i, rel in enumerate(order, 1)), encoding='utf-8')
        examples = [c for rel in (lists['test'] or lists['train'])[:10] for c in per_image[rel]['captions'][:1]]
        stage.path('example_captions.txt').write_text('\n'.join(examples) + '\n', encoding='utf-8')
        stage.path('example_filenames.txt').write_text('example_captions\n', encoding='utf-8')
        for split in ('test', 'train'):
            dump_pickle_atomic([stems[rel] for rel in lists[split]], stage.path(f'{split}/filenames.pickle'))
            if cls_of:
                dump_pickle_atomic([class_ids[cls_of[rel]] for rel in lists[split]],
                                   stage.path(f'{split}/class_info.pickle'))
        stage.commit()
    except BaseException:
        stage.abort()
        raise
    tokens = [[tokenize(c) for c in per_image[rel]['captions'] if tokenize(c)][:cpi] for rel in per_image]
    ixtoword, _ = build_vocab([t for caps in tokens for t in caps])
    return {'train': len(lists['train']), 'test': len(lists['test']), 'classes': len(class_names),
            'captions_per_image': cpi, 'vocabulary': len(ixtoword),
            'layout': 'cub' if boxes else 'coco', 'out_dir': str(out_dir)}


def _safe_name(name: str) -> str:
    return re.sub(r'[^\w.\-]+', '_', name).strip('_') or 'class'


def _write_jpeg(src: Path, dst: Path, link: bool, quality: int) -> None:
    try:
        with Image.open(src) as im:
            fmt = im.format
            if fmt != 'JPEG':
                im.convert('RGB').save(dst, 'JPEG', quality=quality)
                return
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise LayoutError(f'cannot read image {src}: {e}') from None
    if link:
        os.symlink(src.resolve(), dst)
    else:
        shutil.copyfile(src, dst)
