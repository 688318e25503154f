"""Validation report of a DATA_DIR: layout, split sizes, caption files, images, boxes, vocabulary.

``python prepare_data.py check-data --cfg CFG`` prints :meth:`CheckReport.format` and exits non-zero when
:attr:`CheckReport.problems` is not empty.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .cub import image_root, load_bbox, resolve_use_bbox
from .safe_pickle import UnsafePickleError, safe_load
from .text import (LAYOUT_HELP, CaptionError, DatasetError, build_vocab, load_class_info, load_filenames,
                   read_caption_file, validate_captions_pickle)
from .transforms import load_image

__all__ = ['CheckReport', 'check_data']


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
        except (DatasetError, UnsafePickleError) as e:
            rep.problems.append(str(e))
            continue
        try:
            cls = load_class_info(data_dir, split, len(names[split]))
            n_cls = len(set(cls.tolist()))
            has_info = (data_dir / split / 'class_info.pickle').is_file()
            rep.info[f'{split} split'] = (f'{len(names[split])} stems, '
                                          + (f'{n_cls} classes' if has_info else 'no class_info.pickle'))
        except (DatasetError, UnsafePickleError) as e:
            rep.problems.append(str(e))
            rep.info[f'{split} split'] = f'{len(names[split])} stems'
    if 'train' in names and 'test' in names:
        overlap = len(set(names['train']) & set(names['test']))
        if overlap:
            rep.info['stems in both splits'] = overlap

    try:
        bbox_on = resolve_use_bbox(data_dir, use_bbox)
    except ValueError as e:
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

    if len(tokens) == 2 and not any('caption files' in p for p in rep.problems):
        ixtoword, _ = build_vocab(tokens['train'], tokens['test'])
        pickle_path = Path(captions_pickle) if captions_pickle else data_dir / 'captions.pickle'
        if pickle_path.is_file():
            try:
                _, _, ix, _ = validate_captions_pickle(safe_load(pickle_path), pickle_path,
                                                       len(names['train']), len(names['test']),
                                                       captions_per_image)
                rep.info['vocabulary'] = (f'{len(ix)} words from {pickle_path} '
                                          f'({len(ixtoword)} when built from text/)')
            except (DatasetError, UnsafePickleError) as e:
                rep.problems.append(str(e))
        else:
            rep.info['vocabulary'] = f'{len(ixtoword)} words (built from text/; captions.pickle absent)'
    else:
        rep.info['vocabulary'] = 'not computed (caption files missing or unusable)'

    if rep.layout != 'unknown':
        root = image_root(data_dir)
        for split, stems in names.items():
            paths = [root / f'{s}.jpg' for s in stems]
            missing = [p.relative_to(data_dir) for p in paths if not p.is_file()]
            if missing:
                rep.problems.append(_listing(missing, len(stems), f'missing images ({split})', max_listed))
            if decode_images:
                bad = []
                for p in paths:
                    if p.is_file():
                        try:
                            load_image(p)
                        except DatasetError as e:
                            bad.append(str(e))
                if bad:
                    rep.problems.append(_listing(bad, len(stems), f'undecodable images ({split})', max_listed))
            rep.info[f'{split} images present'] = len(stems) - len(missing)
    return rep
