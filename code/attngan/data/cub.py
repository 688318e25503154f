"""``TextDataset``: the original AttnGAN dataset for CUB birds and COCO (and any dataset in their layout).

Differences from the original ``code/datasets.py``, each deliberate:
- explicit constructor arguments instead of the global cfg;
- bounding boxes are used when ``CUB_200_2011/bounding_boxes.txt`` exists (``use_bbox='auto'``), not when
  the path contains 'birds' (the toy dataset and renamed CUB folders have boxes too);
- a caption file with too few captions, a missing image or layout file is an error naming the file;
- ``filenames`` restricts the split to some stems (e.g. 'existing': those whose image is present;
  ``DATA.SKIP_MISSING_IMAGES`` sets it through :func:`attngan.data.loader.build_dataset`);
- an empty split (or selection) is an error naming the split and DATA_DIR, not an empty dataset;
- caption ids are returned with shape (WORDS_NUM,) instead of (WORDS_NUM, 1).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.utils.data as data

from ..errors import ConfigError
from .cache import ImageCache, open_or_build_cache
from .text import (LAYOUT_HELP, ImageError, LayoutError, SplitError, TextData, empty_split_message,
                   load_class_info, load_text_data)
from .transforms import (branch_sizes, crop_flip_branches, final_size, get_imgs, load_size,
                         train_transform)

__all__ = ['TextDataset', 'resolve_use_bbox', 'image_root', 'load_bbox', 'prepare_data']

DEFAULT = 'default'


def resolve_use_bbox(data_dir: str | os.PathLike, use_bbox: str | bool = 'auto') -> bool:
    """'auto': True when ``CUB_200_2011/bounding_boxes.txt`` exists; True/False as given."""
    if isinstance(use_bbox, str):
        if use_bbox.lower() != 'auto':
            raise ConfigError(f"DATA.USE_BBOX must be 'auto', True or False, got {use_bbox!r}")
        return (Path(data_dir) / 'CUB_200_2011' / 'bounding_boxes.txt').is_file()
    return bool(use_bbox)


def image_root(data_dir: str | os.PathLike) -> Path:
    """``CUB_200_2011/images`` when the CUB layout is present (a CUB_200_2011 folder), else ``images``."""
    data_dir = Path(data_dir)
    cub = data_dir / 'CUB_200_2011'
    return cub / 'images' if cub.is_dir() else data_dir / 'images'


def _read_table(path: Path, columns: int) -> dict[int, list[str]]:
    if not path.is_file():
        raise LayoutError(f'missing {path}; the CUB layout needs CUB_200_2011/images.txt '
                          f'("<id> <class>/<name>.jpg") and CUB_200_2011/bounding_boxes.txt ("<id> x y w h")')
    rows = {}
    with open(path, 'r', encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != columns:
                raise LayoutError(f'{path}:{lineno}: expected {columns} fields, got {line.strip()!r}')
            try:
                rows[int(parts[0])] = parts[1:]
            except ValueError:
                raise LayoutError(f'{path}:{lineno}: the first field must be an integer id') from None
    return rows


def load_bbox(data_dir: str | os.PathLike) -> dict[str, list[int]]:
    """``{stem: [x, y, w, h]}`` (ints, truncated as the original's ``astype(int)``) from
    ``CUB_200_2011/images.txt`` and ``bounding_boxes.txt``, matched by image id."""
    cub = Path(data_dir) / 'CUB_200_2011'
    images = _read_table(cub / 'images.txt', 2)
    boxes = _read_table(cub / 'bounding_boxes.txt', 5)
    out = {}
    for img_id, (rel,) in images.items():
        if img_id not in boxes:
            raise LayoutError(f'{cub / "bounding_boxes.txt"}: no box for image id {img_id} ({rel})')
        try:
            box = [int(float(v)) for v in boxes[img_id]]
        except ValueError:
            raise LayoutError(f'{cub / "bounding_boxes.txt"}: bad box for image id {img_id}') from None
        out[os.path.splitext(rel)[0]] = box
    return out


class TextDataset(data.Dataset):
    """Images and captions of one split of an AttnGAN-layout dataset.

    Item ``(imgs, caps, cap_len, cls_id, key)``: ``imgs`` a list of BRANCH_NUM float tensors
    (3, BASE_SIZE * 2**i, same) in [-1, 1] (one tensor with ``b_dcgan``), ``caps`` int64 (words_num,)
    zero-padded ids of one of the image's captions drawn at random, ``cap_len`` its length (<= words_num),
    ``cls_id`` the class id, ``key`` the stem.

    Args:
        data_dir: DATA_DIR (see :data:`attngan.data.text.LAYOUT_HELP`).
        split: 'train' or 'test'.
        base_size, branch_num: TREE.BASE_SIZE, TREE.BRANCH_NUM.
        words_num, captions_per_image: TEXT.WORDS_NUM, TEXT.CAPTIONS_PER_IMAGE.
        use_bbox: 'auto' | True | False (DATA.USE_BBOX).
        b_dcgan: GAN.B_DCGAN: a single image tensor.
        transform: 'default' (the original's Resize/RandomCrop/Flip for the final size), a callable on
            the (cropped) PIL image, or None (no transform, as the original with transform=None).
        filenames: None (the whole split), 'existing' (stems whose image exists), a predicate on stems,
            or a sequence of stems of the split (kept in the given order).
        skip_bad_images: an undecodable image is skipped with a warning (the next item is returned)
            instead of raising :class:`ImageError`.
        require_images: check at construction that every image exists (the error names the first missing).
        captions_pickle, write_captions: where captions.pickle is read or written, and whether to write it.
        cache, cache_dir, cache_workers: use the pre-cropped cache (:mod:`attngan.data.cache`), stored in
            ``cache_dir`` (default ``DATA_DIR/cache_<load size>``), built with that many worker processes.
        text_data: an already loaded :class:`TextData` (skips reading captions again).
    """

    def __init__(self, data_dir: str | os.PathLike, split: str = 'train', base_size: int = 64,
                 branch_num: int = 3, words_num: int = 18, captions_per_image: int = 10,
                 use_bbox: str | bool = 'auto', b_dcgan: bool = False,
                 transform: Callable | str | None = DEFAULT,
                 filenames: str | Callable[[str], bool] | Sequence[str] | None = None,
                 skip_bad_images: bool = False, require_images: bool = True,
                 captions_pickle: str | os.PathLike | None = None, write_captions: bool = True,
                 cache: bool = False, cache_dir: str | os.PathLike | None = None, cache_workers: int = 0,
                 text_data: TextData | None = None):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise LayoutError(f'DATA_DIR {self.data_dir} does not exist or is not a folder; {LAYOUT_HELP}')
        if split not in ('train', 'test'):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.words_num = int(words_num)
        self.embeddings_num = int(captions_per_image)
        self.b_dcgan = bool(b_dcgan)
        self.imsize = branch_sizes(base_size, branch_num)
        self.final_size = final_size(base_size, branch_num)
        self.skip_bad_images = bool(skip_bad_images)
        if isinstance(transform, str):
            if transform != DEFAULT:
                raise ValueError(f"transform must be 'default', a callable or None, got {transform!r}")
            transform = train_transform(self.final_size)
            self._default_transform = True
        else:
            self._default_transform = False
        self.transform = transform

        self.use_bbox = resolve_use_bbox(self.data_dir, use_bbox)
        self.bbox = load_bbox(self.data_dir) if self.use_bbox else None
        self.image_dir = image_root(self.data_dir)

        self.text = text_data if text_data is not None else load_text_data(
            self.data_dir, self.embeddings_num, captions_pickle=captions_pickle, write=write_captions)
        self.ixtoword, self.wordtoix, self.n_words = self.text.ixtoword, self.text.wordtoix, self.text.n_words
        split_names, split_caps = self.text.split(split)
        if not split_names:
            raise SplitError(empty_split_message(self.data_dir, split))
        split_class = load_class_info(self.data_dir, split, len(split_names))

        #: stems of the split left out by ``filenames='existing'`` (their image is missing)
        self.left_out: list[str] = []
        positions = self._select(split_names, filenames)
        if not positions:
            raise SplitError(f'no stem of the {split} split of DATA_DIR {self.data_dir} was selected: the '
                             f'filenames filter left none of its {len(split_names)} stems')
        k = self.embeddings_num
        self.filenames = [split_names[p] for p in positions]
        self.captions = [split_caps[p * k + j] for p in positions for j in range(k)]
        self.class_id = split_class[np.asarray(positions, dtype=np.int64)] if positions else \
            np.zeros(0, dtype=np.int64)
        self.number_example = len(self.filenames)
        if self.use_bbox:
            missing = [s for s in self.filenames if s not in self.bbox]
            if missing:
                raise LayoutError(f'no bounding box for {missing[0]!r} ({len(missing)} stems in all) in '
                                  f'{self.data_dir / "CUB_200_2011" / "images.txt"}')
        if require_images:
            self._check_images()
        self.cache: ImageCache | None = None
        if cache:
            if not self._default_transform:
                raise ValueError('the image cache needs the default transform (transform="default")')
            size = load_size(self.final_size)
            cache_dir = Path(cache_dir) if cache_dir is not None else self.data_dir / f'cache_{size}'
            items = [(s, str(self.image_path(s)), self.bbox[s] if self.bbox else None) for s in self.filenames]
            self.cache = open_or_build_cache(cache_dir, split, items, size, workers=cache_workers,
                                             skip_bad_images=self.skip_bad_images, progress=len(items) > 500)
        self._warned: set[str] = set()

    # ---- construction helpers ----
    def _select(self, names: list[str], filenames) -> list[int]:
        if filenames is None:
            return list(range(len(names)))
        if isinstance(filenames, str):
            if filenames != 'existing':
                raise ValueError(f"filenames must be None, 'existing', a predicate or a list of stems, "
                                 f"got {filenames!r}")
            positions = [i for i, s in enumerate(names) if self.image_path(s).is_file()]
            kept = set(positions)
            self.left_out = [s for i, s in enumerate(names) if i not in kept]
            if not positions:
                raise LayoutError(f'none of the {len(names)} images of the {self.split} split exists under '
                                  f'{self.image_dir} (first expected: {self.image_path(names[0]) if names else "-"})')
            return positions
        if callable(filenames):
            return [i for i, s in enumerate(names) if filenames(s)]
        index = {s: i for i, s in enumerate(names)}
        positions = []
        for s in filenames:
            if s not in index:
                raise SplitError(f'stem {s!r} is not in {self.data_dir / self.split / "filenames.pickle"}')
            positions.append(index[s])
        return positions

    def _check_images(self) -> None:
        missing = [s for s in self.filenames if not self.image_path(s).is_file()]
        if missing:
            raise LayoutError(
                f'{len(missing)} of {len(self.filenames)} images of the {self.split} split are missing; first: '
                f'{self.image_path(missing[0])} (stem {missing[0]!r}). Put the images there, or set '
                f'DATA.SKIP_MISSING_IMAGES: True to leave out the stems without an image '
                f'(`python prepare_data.py check-data --cfg CFG` lists them)')

    def image_path(self, key: str) -> Path:
        return self.image_dir / f'{key}.jpg'

    # ---- items ----
    def get_caption(self, sent_ix: int) -> tuple[np.ndarray, int]:
        """Caption ``sent_ix`` as (words_num,) int64 zero-padded ids and its length. A longer caption keeps
        ``words_num`` of its words chosen at random, in their order (the original's rule)."""
        sent_caption = np.asarray(self.captions[sent_ix]).astype('int64')
        num_words = len(sent_caption)
        x = np.zeros(self.words_num, dtype='int64')
        if num_words <= self.words_num:
            x[:num_words] = sent_caption
            return x, num_words
        ix = list(np.arange(num_words))
        np.random.shuffle(ix)
        ix = np.sort(ix[:self.words_num])
        x[:] = sent_caption[ix]
        return x, self.words_num

    def get_imgs(self, index: int) -> list[torch.Tensor]:
        key = self.filenames[index]
        if self.cache is not None:
            arr = self.cache[index]
            if arr is None:
                raise ImageError(f'cannot decode image {self.image_path(key)} (skipped when the cache was built)')
            return crop_flip_branches(arr, self.final_size, self.imsize, self.b_dcgan)
        bbox = self.bbox[key] if self.bbox is not None else None
        return get_imgs(self.image_path(key), self.imsize, bbox, self.transform, self.b_dcgan)

    def __getitem__(self, index: int):
        n = len(self.filenames)
        for attempt in range(n):
            i = (index + attempt) % n
            try:
                imgs = self.get_imgs(i)
                break
            except ImageError as e:
                if not self.skip_bad_images:
                    raise
                key = self.filenames[i]
                if key not in self._warned:
                    self._warned.add(key)
                    warnings.warn(f'{e}; skipped (DATA.SKIP_BAD_IMAGES)')
        else:
            raise ImageError(f'no image of the {self.split} split under {self.image_dir} could be decoded')
        # a random caption of the image (numpy's global RNG, as the original)
        sent_ix = np.random.randint(0, self.embeddings_num)
        caps, cap_len = self.get_caption(i * self.embeddings_num + sent_ix)
        return imgs, caps, cap_len, int(self.class_id[i]), self.filenames[i]

    def __len__(self) -> int:
        return len(self.filenames)


def prepare_data(batch, device: torch.device | str | None = None):
    """Sort a collated batch by caption length, descending (the packed LSTM needs it), and move it.

    Args: ``batch = (imgs, captions, cap_lens, class_ids, keys)`` from a DataLoader over
    :class:`TextDataset`: imgs a list of (B, 3, H_i, W_i), captions (B, W) (or (B, W, 1)), cap_lens (B,).
    Returns ``(imgs, captions (B, W), sorted cap_lens (B,), class_ids numpy (B,), keys list)``, all in
    the same order, tensors on ``device`` (unchanged when None). Ties keep their batch order.
    """
    imgs, captions, cap_lens, class_ids, keys = batch
    cap_lens = torch.as_tensor(cap_lens)
    sorted_cap_lens, idx = torch.sort(cap_lens, dim=0, descending=True, stable=True)
    non_blocking = device is not None and torch.device(device).type == 'cuda'

    def move(t):
        return t if device is None else t.to(device, non_blocking=non_blocking)

    real_imgs = [move(im[idx]) for im in imgs]
    captions = torch.as_tensor(captions)[idx]
    if captions.dim() == 3:  # items of the original shape (WORDS_NUM, 1)
        captions = captions.squeeze(2)
    class_ids = torch.as_tensor(class_ids)[idx].numpy()
    keys = [keys[i] for i in idx.tolist()]
    return real_imgs, move(captions), move(sorted_cap_lens), class_ids, keys
