"""Image side of the pipeline: bounding-box crop, the original transforms, per-branch tensors.

As the original (``datasets.py:get_imgs`` and the transform built in ``main.py`` / ``pretrain_DAMSM.py``):
RGB -> optional box crop -> Resize(int(imsize * 76 / 64)) -> RandomCrop(imsize) -> RandomHorizontalFlip
-> one tensor per branch (branch i resized to BASE_SIZE * 2**i, the last branch the crop itself), each
normalised to [-1, 1]; with B_DCGAN a single tensor. ``imsize = BASE_SIZE * 2**(BRANCH_NUM - 1)``.
``transforms.Scale`` of the original is today's ``Resize`` (same PIL bilinear resize, same rounding).
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError

from .text import ImageError

__all__ = ['branch_sizes', 'final_size', 'load_size', 'train_transform', 'bbox_crop_box', 'crop_to_bbox',
           'load_image', 'to_normalized_tensor', 'image_branches', 'get_imgs', 'crop_flip_params',
           'random_crop_flip_array', 'resize_uint8', 'normalize_uint8', 'crop_flip_branches']


def branch_sizes(base_size: int, branch_num: int) -> list[int]:
    """Side of each branch's image: ``[base_size * 2**i for i in range(branch_num)]``."""
    return [base_size * 2 ** i for i in range(branch_num)]


def final_size(base_size: int, branch_num: int) -> int:
    return base_size * 2 ** (branch_num - 1)


def load_size(imsize: int) -> int:
    """The first resize of the original transform (304 for 256 px, 355 for the DAMSM's 299)."""
    return int(imsize * 76 / 64)


def train_transform(imsize: int) -> Callable[[Image.Image], Image.Image]:
    """The original transform (used for both splits): Resize, RandomCrop, RandomHorizontalFlip."""
    return T.Compose([T.Resize(load_size(imsize)), T.RandomCrop(imsize), T.RandomHorizontalFlip()])


def bbox_crop_box(width: int, height: int, bbox: Sequence[int]) -> tuple[int, int, int, int]:
    """Crop ``(x1, y1, x2, y2)`` of the original: a square of half-side int(0.75 * max(w, h)) around the
    box centre, clipped to the image. ``bbox`` is integer (x-left, y-top, w, h)."""
    x, y, w, h = (int(v) for v in bbox)
    r = int(max(w, h) * 0.75)
    # the original's int((2 * x + w) / 2): true division then truncation, equal to // for x, w >= 0
    center_x = int((2 * x + w) / 2)
    center_y = int((2 * y + h) / 2)
    y1 = max(0, center_y - r)
    y2 = min(height, center_y + r)
    x1 = max(0, center_x - r)
    x2 = min(width, center_x + r)
    return x1, y1, x2, y2


def crop_to_bbox(img: Image.Image, bbox: Sequence[int] | None) -> Image.Image:
    if bbox is None:
        return img
    return img.crop(bbox_crop_box(img.size[0], img.size[1], bbox))


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image as RGB (CUB has grayscale and CMYK JPEGs); :class:`ImageError` names the file."""
    try:
        with Image.open(path) as im:
            return im.convert('RGB')
    except FileNotFoundError:
        raise ImageError(f'missing image {path}') from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f'cannot decode image {path}: {e}') from None


def to_normalized_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """(3, H, W) float32 in [-1, 1]; equal to ToTensor() then Normalize((0.5,) * 3, (0.5,) * 3)."""
    arr = np.array(img, dtype=np.uint8, copy=True)
    t = torch.from_numpy(arr).permute(2, 0, 1).contiguous().float()
    return t.div_(255).sub_(0.5).div_(0.5)


def image_branches(img: Image.Image | np.ndarray, imsize: Sequence[int],
                   b_dcgan: bool = False) -> list[torch.Tensor]:
    """One normalised tensor per branch: branch i resized to ``imsize[i]`` (short side, as Scale), the
    last one the image itself; with ``b_dcgan`` only the image itself. Each is (3, H_i, W_i)."""
    if b_dcgan:
        return [to_normalized_tensor(img)]
    pil = img if isinstance(img, Image.Image) else None
    out = []
    for i in range(len(imsize)):
        if i < len(imsize) - 1:
            if pil is None:
                pil = Image.fromarray(img)
            out.append(to_normalized_tensor(TF.resize(pil, imsize[i])))
        else:
            out.append(to_normalized_tensor(img))
    return out


def get_imgs(img_path: str | os.PathLike, imsize: Sequence[int], bbox: Sequence[int] | None = None,
             transform: Callable | None = None, b_dcgan: bool = False) -> list[torch.Tensor]:
    """The original ``get_imgs``: load RGB, box crop, ``transform``, per-branch tensors."""
    img = crop_to_bbox(load_image(img_path), bbox)
    if transform is not None:
        img = transform(img)
    return image_branches(img, imsize, b_dcgan)


def crop_flip_params(height: int, width: int, size: int) -> tuple[int, int, bool]:
    """``(top, left, flip)`` drawn with the same torch RNG calls as RandomCrop(size) followed by
    RandomHorizontalFlip(), so a seed gives the same crop and flip as torchvision's transforms."""
    if height < size or width < size:
        raise ValueError(f'crop size {size} is larger than the image ({height}, {width})')
    if height == size and width == size:
        i = j = 0
    else:
        i = int(torch.randint(0, height - size + 1, size=(1,)).item())
        j = int(torch.randint(0, width - size + 1, size=(1,)).item())
    return i, j, bool(torch.rand(1) < 0.5)


def random_crop_flip_array(arr: np.ndarray, size: int) -> np.ndarray:
    """RandomCrop(size) then RandomHorizontalFlip() on an (H, W, 3) uint8 array (torchvision's draws)."""
    i, j, flip = crop_flip_params(arr.shape[0], arr.shape[1], size)
    out = arr[i:i + size, j:j + size]
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


# torch's uint8 antialiased bilinear kernel (AVX2/AVX512) reproduces PIL's fixed-point resize exactly for
# integer down-scaling factors (tested in test_data_cub.py); elsewhere PIL is used
_TORCH_RESIZE_EXACT = torch.backends.cpu.get_cpu_capability() in ('AVX2', 'AVX512')


def resize_uint8(t: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size', size) uint8 with the short side ``size``, equal to PIL's bilinear
    ``Resize(size)`` (the original's ``transforms.Scale``)."""
    h, w = t.shape[1:]
    if h == w and h % size == 0 and _TORCH_RESIZE_EXACT:
        return F.interpolate(t[None], size=(size, size), mode='bilinear', antialias=True,
                             align_corners=False)[0]
    img = TF.resize(Image.fromarray(t.permute(1, 2, 0).numpy()), size)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


def normalize_uint8(t: torch.Tensor) -> torch.Tensor:
    """(3, H, W) uint8 -> contiguous float32 in [-1, 1], equal to :func:`to_normalized_tensor`."""
    return t.contiguous().float().div_(255).sub_(0.5).div_(0.5)


def crop_flip_branches(arr: np.ndarray, size: int, imsize: Sequence[int],
                       b_dcgan: bool = False) -> list[torch.Tensor]:
    """The cache path: RandomCrop + RandomHorizontalFlip of a pre-resized (H, W, 3) uint8 image and the
    per-branch tensors, in torch on uint8; pixel-equal to the PIL path for the same seed."""
    i, j, flip = crop_flip_params(arr.shape[0], arr.shape[1], size)
    t = torch.from_numpy(np.ascontiguousarray(arr[i:i + size, j:j + size])).permute(2, 0, 1)
    if flip:
        t = t.flip(2)
    if b_dcgan:
        return [normalize_uint8(t)]
    return [normalize_uint8(resize_uint8(t, s) if k < len(imsize) - 1 else t) for k, s in enumerate(imsize)]
