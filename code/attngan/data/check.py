"""Validation report of a DATA_DIR: layout, split sizes, caption files, images, boxes, vocabulary.

``python prepare_data.py check-data --cfg CFG`` prints :meth:`CheckReport.format` and exits non-zero when
:attr:`CheckReport.problems` is not empty. Each problem is one line: an empty split, a metadata pickle that
is crafted (refused, never executed), corrupt or unreadable, missing or short caption files, stems without
a box, missing images, and images that fail a cheap check (:func:`quick_image_check`: empty file, no JPEG
start or end marker, a header PIL cannot parse; no pixel is decoded). ``decode_images`` also decodes every
image that passes it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import AttnGANError
from .cub import image_root, load_bbox, resolve_use_bbox
from .safe_pickle import safe_load
from .text import (LAYOUT_HELP, CaptionError, DatasetError, build_vocab, empty_split_message, load_class_info,
                   load_filenames, read_caption_file, validate_captions_pickle)
from .transforms import load_image

__all__ = ['CheckReport', 'check_data', 'quick_image_check']

_SOI, _EOI = b'\xff\xd8', b'\xff\xd9'
#: bytes at the end of a JPEG searched for its end-of-image marker (some writers pad after it); FFD9 cannot
#: occur inside the entropy-coded data, where a 0xFF byte is always followed by 0x00 or a restart marker
_EOI_WINDOW = 1024


def quick_image_check(path: str | os.PathLike) -> str | None:
    """Why the image at ``path`` cannot be used, found without decoding it, or None.

    Reads the file's first bytes, the header (``PIL.Image.open`` + ``verify()``: markers up to the start of
    the scan) and its last ``_EOI_WINDOW`` bytes: an empty file, a file that is neither a JPEG (no SOI
    marker FFD8) nor another format PIL reads, a JPEG header PIL cannot parse, and a JPEG without its
    end-of-image marker FFD9 (truncated) are reported. Damage inside the pixel data needs a full decode
    (``check-data --decode-images``).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return 'empty file (0 bytes)'
        with open(path, 'rb') as f:
            head = f.read(2)
            f.seek(max(0, size - _EOI_WINDOW))
            tail = f.read()
    except OSError as e:
        return f'cannot read ({e.strerror or e})'
    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
    except UnidentifiedImageError:
        if head != _SOI:
            return 'not a JPEG (no start-of-image marker FFD8) nor another image format'
        return 'JPEG header unreadable'
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f'{"JPEG" if head == _SOI else "image"} header unreadable ({e})'
    if fmt == 'JPEG' and _EOI not in tail:
        return 'truncated JPEG (no end-of-image marker FFD9 at its end)'
    return None


@dataclass
class CheckReport:
    data_dir: str
    layout: str = 'unknown'  # 'cub', 'coco' or 'unknown'
    problems: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f'DATA_DIR {self.data_dir} (layout: {self.layout})']
        lines += [f'  {k}: {v}' for k, v in self.info.items()]
        if self.problems:
            lines.append(f'{len(self.problems)} problem(s):')
            lines += [f'  - {p}' for p in self.problems]
        else:
            lines.append('no problems found')
        return '\n'.join(lines)


def _listing(paths: list, total: int, what: str, max_listed: int) -> str:
    shown = ', '.join(str(p) for p in paths[:max_listed])
    more = f' (+{len(paths) - max_listed} more)' if len(paths) > max_listed else ''
    return f'{what}: {len(paths)} of {total}; first: {shown}{more}'


def check_data(data_dir: str | os.PathLike, captions_per_image: int = 10, *, use_bbox: str | bool = 'auto',
               decode_images: bool = False, captions_pickle: str | os.PathLike | None = None,
               max_listed: int = 3) -> CheckReport:
    """Check everything :class:`~attngan.data.cub.TextDataset` will read; never writes anything."""
    data_dir = Path(data_dir)
    rep = CheckReport(str(data_dir))
    if not data_dir.is_dir():
        rep.problems.append(f'DATA_DIR {data_dir} does not exist or is not a folder; {LAYOUT_HELP}')
        return rep
    if (data_dir / 'CUB_200_2011').is_dir():
        rep.layout = 'cub'
    elif (data_dir / 'images').is_dir():
        rep.layout = 'coco'
    else:
        rep.problems.append(f'unknown layout: no image folder CUB_200_2011/images/ (CUB) or images/ (COCO) '
                            f'in {data_dir}')

    names: dict[str, list[str]] = {}
    for split in ('train', 'test'):
        try:
            names[split] = load_filenames(data_dir, split)
        except AttnGANError as e:  # missing, crafted (refused, not run) or corrupt: one line each
            rep.problems.append(str(e))
            continue
        if not names[split]:
            rep.problems.append(empty_split_message(data_dir, split))
        try:
            cls = load_class_info(data_dir, split, len(names[split]))
            n_cls = len(set(cls.tolist()))
            has_info = (data_dir / split / 'class_info.pickle').is_file()
            rep.info[f'{split} split'] = (f'{len(names[split])} stems, '
                                          + (f'{n_cls} classes' if has_info else 'no class_info.pickle'))
        except AttnGANError as e:
            rep.problems.append(str(e))
            rep.info[f'{split} split'] = f'{len(names[split])} stems'
    if 'train' in names and 'test' in names:
        overlap = len(set(names['train']) & set(names['test']))
        if overlap:
            rep.info['stems in both splits'] = overlap

    try:
        bbox_on = resolve_use_bbox(data_dir, use_bbox)
    except AttnGANError as e:
        rep.problems.append(str(e))
        bbox_on = False
    rep.info['bounding boxes'] = 'used' if bbox_on else 'not used'
    boxes = None
    if bbox_on:
        try:
            boxes = load_bbox(data_dir)
        except DatasetError as e:
            rep.problems.append(str(e))

    tokens: dict[str, list] = {}
    for split, stems in names.items():
        missing_text, short, toks = [], [], []
        for stem in stems:
            path = data_dir / 'text' / f'{stem}.txt'
            if not path.is_file():
                missing_text.append(path.relative_to(data_dir))
                continue
            try:
                toks.extend(read_caption_file(path, captions_per_image))
            except CaptionError as e:
                short.append(str(e).replace(f'{data_dir}{os.sep}', ''))
        tokens[split] = toks
        if missing_text:
            rep.problems.append(_listing(missing_text, len(stems), f'missing caption files ({split})', max_listed))
        if short:
            rep.problems.append(_listing(short, len(stems), f'unusable caption files ({split}, '
                                         f'CAPTIONS_PER_IMAGE={captions_per_image})', max_listed))
        if boxes is not None:
            no_box = [s for s in stems if s not in boxes]
            if no_box:
                rep.problems.append(_listing(no_box, len(stems), f'stems without a bounding box ({split})',
                                             max_listed))

    # captions.pickle is read (safely) whatever else is wrong, so that its own problem is not hidden
    pickle_path = Path(captions_pickle) if captions_pickle else data_dir / 'captions.pickle'
    caps_obj, caps_ok = None, False
    if pickle_path.is_file():
        try:
            caps_obj = safe_load(pickle_path)
            caps_ok = True
        except AttnGANError as e:
            rep.problems.append(str(e))
    text_ok = len(tokens) == 2 and not any('caption files' in p for p in rep.problems)
    built = len(build_vocab(tokens['train'], tokens['test'])[0]) if text_ok else None
    if caps_ok and len(names) == 2:
        try:
            _, _, ix, _ = validate_captions_pickle(caps_obj, pickle_path, len(names['train']),
                                                   len(names['test']), captions_per_image)
            rep.info['vocabulary'] = f'{len(ix)} words from {pickle_path}' + (
                f' ({built} when built from text/)' if built is not None else '')
        except DatasetError as e:
            rep.problems.append(str(e))
    elif built is not None:
        rep.info['vocabulary'] = (f'{built} words (built from text/; '
                                  + ('captions.pickle absent)' if not pickle_path.is_file() else
                                     'captions.pickle unusable)'))
    else:
        rep.info['vocabulary'] = 'not computed (split lists or caption files missing or unusable)'

    if rep.layout != 'unknown':
        root = image_root(data_dir)
        for split, stems in names.items():
            missing, unreadable, undecodable = [], [], []
            for s in stems:
                p = root / f'{s}.jpg'
                if not p.is_file():
                    missing.append(p.relative_to(data_dir))
                    continue
                why = quick_image_check(p)
                if why is not None:
                    unreadable.append(f'{p.relative_to(data_dir)}: {why}')
                elif decode_images:
                    try:
                        load_image(p)
                    except DatasetError as e:
                        undecodable.append(str(e))
            if missing:
                rep.problems.append(_listing(missing, len(stems), f'missing images ({split})', max_listed))
            if unreadable:
                rep.problems.append(_listing(unreadable, len(stems), f'unreadable images ({split})', max_listed))
            if undecodable:
                rep.problems.append(_listing(undecodable, len(stems), f'undecodable images ({split})',
                                             max_listed))
            rep.info[f'{split} images present'] = len(stems) - len(missing)
    return rep
