"""Pre-cropped image cache: the deterministic part of the image pipeline done once per split.

For each image the box crop (CUB) and the first resize of the original transform (shorter side to
``int(imsize * 76 / 64)``) are computed once and stored as raw uint8 pixels in one flat file
(``<split>-<hash>.u8``, read through ``numpy.memmap``) with an index (``<split>-<hash>.npz``: keys, byte
offsets, shapes). Training still draws RandomCrop and RandomHorizontalFlip each step from the same torch
RNG calls, so the distribution (and, for a given seed, the pixels) equal the faithful path.

The hash covers the split's keys, boxes, image sizes and modification times, the resize and the box flag:
a changed list or image gives a new cache file. Both files are written to temporary names and renamed, the
index last, so an interrupted build leaves no usable half-file. Full CUB at 256 px is about 3.5 GB.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch.utils.data
import torchvision.transforms.functional as TF

from ..atomic import atomic_open, atomic_write_bytes
from .text import ImageError
from .transforms import crop_to_bbox, load_image

__all__ = ['CACHE_VERSION', 'ImageCache', 'cache_paths', 'build_cache', 'open_or_build_cache']

CACHE_VERSION = 1


class ImageCache:
    """Read side of a cache: ``cache[i]`` is the (H, W, 3) uint8 image of item i, or None for an image
    that could not be decoded when the cache was built (with skip_bad_images)."""

    def __init__(self, data_path: str | os.PathLike, index_path: str | os.PathLike):
        self.data_path, self.index_path = Path(data_path), Path(index_path)
        try:
            with np.load(self.index_path, allow_pickle=False) as z:
                self.keys = [str(k) for k in z['keys']]
                self.offsets = z['offsets'].astype(np.int64)
                self.shapes = z['shapes'].astype(np.int64)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:  # a damaged or foreign file
            raise ImageError(f'{self.index_path}: not a readable cache index ({type(e).__name__}: {e}); '
                             f'delete it and {self.data_path.name} to rebuild the cache') from None
        total = int(self.offsets[-1]) if len(self.offsets) else 0
        if self.data_path.stat().st_size != total:
            raise ImageError(f'{self.data_path}: size {self.data_path.stat().st_size} does not match its '
                             f'index {self.index_path} ({total}); delete both to rebuild the cache')
        self._mm = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> np.ndarray | None:
        if self._mm is None:  # opened lazily, once per DataLoader worker
            size = int(self.offsets[-1])
            self._mm = np.memmap(self.data_path, dtype=np.uint8, mode='r', shape=(max(size, 1),))
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        if start == end:
            return None
        return np.asarray(self._mm[start:end]).reshape(self.shapes[i])

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_mm'] = None  # memmaps are not sent to workers; each opens its own
        return state

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1]) if len(self.offsets) else 0


def _fingerprint(split: str, items: Sequence[tuple[str, str, Sequence[int] | None]], size: int) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([CACHE_VERSION, split, size]).encode())
    for key, path, bbox in items:
        try:
            st = os.stat(path)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None
        h.update(json.dumps([key, None if bbox is None else [int(v) for v in bbox], stamp]).encode())
    return h.hexdigest()[:16]


def cache_paths(cache_dir: str | os.PathLike, split: str, items, size: int) -> tuple[Path, Path]:
    """``(data_path, index_path)`` of the cache for these items."""
    stem = f'{split}-{_fingerprint(split, items, size)}'
    return Path(cache_dir) / f'{stem}.u8', Path(cache_dir) / f'{stem}.npz'


class _Preprocess(torch.utils.data.Dataset):
    def __init__(self, items, size, skip_bad_images):
        self.items, self.size, self.skip = items, size, skip_bad_images

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        key, path, bbox = self.items[i]
        try:
            img = crop_to_bbox(load_image(path), bbox)
        except ImageError as e:
            if not self.skip:
                raise
            warnings.warn(f'{e}; skipped (DATA.SKIP_BAD_IMAGES)')
            return None
        return np.array(TF.resize(img, self.size), dtype=np.uint8)


def _identity(x):
    return x


def build_cache(items: Sequence[tuple[str, str, Sequence[int] | None]], size: int,
                data_path: str | os.PathLike, index_path: str | os.PathLike, *, workers: int = 0,
                skip_bad_images: bool = False, progress: bool = True) -> ImageCache:
    """Crop and resize every ``(key, image_path, bbox)`` and write the cache files atomically."""
    data_path, index_path = Path(data_path), Path(index_path)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    # A DataLoader draws its workers' base seed from the global RNG unless given a generator: its own one
    # keeps a run that builds the cache on the same random stream as a run (or a resumed run) that reuses it.
    loader = torch.utils.data.DataLoader(_Preprocess(list(items), size, skip_bad_images), batch_size=None,
                                         num_workers=workers, collate_fn=_identity, generator=torch.Generator())
    if progress:
        try:
            from tqdm import tqdm
            loader = tqdm(loader, desc=f'caching {data_path.name}', unit='img', leave=False)
        except ImportError:
            pass
    offsets = [0]
    shapes = []
    with atomic_open(data_path) as f:
        for arr in loader:
            if arr is None:
                shapes.append((0, 0, 3))
                offsets.append(offsets[-1])
                continue
            f.write(arr.tobytes())
            shapes.append(arr.shape)
            offsets.append(offsets[-1] + arr.nbytes)
    buf = io.BytesIO()
    np.savez(buf, keys=np.array([k for k, _, _ in items], dtype=str),
             offsets=np.asarray(offsets, dtype=np.int64), shapes=np.asarray(shapes, dtype=np.int32).reshape(-1, 3))
    atomic_write_bytes(index_path, buf.getvalue())
    return ImageCache(data_path, index_path)


def open_or_build_cache(cache_dir: str | os.PathLike, split: str,
                        items: Sequence[tuple[str, str, Sequence[int] | None]], size: int, *,
                        workers: int = 0, skip_bad_images: bool = False, progress: bool = True) -> ImageCache:
    """The cache for ``items`` under ``cache_dir``, built first when absent."""
    data_path, index_path = cache_paths(cache_dir, split, items, size)
    if data_path.is_file() and index_path.is_file():
        cache = ImageCache(data_path, index_path)
        if cache.keys == [k for k, _, _ in items]:
            return cache
    try:
        return build_cache(items, size, data_path, index_path, workers=workers,
                           skip_bad_images=skip_bad_images, progress=progress)
    except PermissionError as e:
        raise ImageError(f'cannot write the image cache under {cache_dir} ({e}); pass another cache_dir '
                         f'or turn DATA.CACHE off') from None
