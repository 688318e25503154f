"""Pictures: sample grids and the attention picture (words over per-word attention maps).

The attention picture follows the original's ``build_super_images`` layout: for each sample, a strip with
the caption's words, a row with the image, the maximum over words and one map per word, and a row with the
same maps laid over the image. It is our own drawing code (no skimage, PIL's built-in font).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_write_bytes

TEXT_HEIGHT = 18
PAD = 2


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """B x 3 x H x W in [-1, 1] -> B x H x W x 3 uint8, as the original writes its samples and attention
    pictures: (x + 1) * 127.5, truncated (``astype(np.uint8)``). Clamped first, which changes nothing for
    the tanh outputs of G but keeps an interpolated picture from wrapping around."""
    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5)
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def sample_grid(stage_images: Sequence[torch.Tensor], max_samples: int = 8) -> np.ndarray:
    """One column per sample, one row per stage, every stage upsampled (nearest) to the last one's size.

    stage_images: list of B x 3 x H_i x W_i tensors in [-1, 1]. Returns an H x W x 3 uint8 array.
    """
    size = stage_images[-1].shape[-2:]
    rows = []
    for imgs in stage_images:
        imgs = imgs[:max_samples].detach().float().cpu()
        if imgs.shape[-2:] != size:
            imgs = F.interpolate(imgs, size=size, mode='nearest')
        u8 = to_uint8(imgs)
        pad = np.zeros((size[0], PAD, 3), np.uint8)
        rows.append(np.concatenate([x for img in u8 for x in (img, pad)][:-1], axis=1))
    hpad = np.zeros((PAD, rows[0].shape[1], 3), np.uint8)
    return np.concatenate([x for r in rows for x in (r, hpad)][:-1], axis=0)


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _words(caption: torch.Tensor, ixtoword) -> list[str]:
    words = []
    for ix in caption.tolist():
        if ix == 0:
            break
        words.append(str(ixtoword[ix]) if ix in ixtoword or not isinstance(ixtoword, dict) else '?')
    return words


def attention_picture(images: torch.Tensor, captions: torch.Tensor, ixtoword,
                      attn_maps: Sequence[torch.Tensor] | torch.Tensor | None,
                      lr_images: torch.Tensor | None = None, max_samples: int = 8,
                      vis_size: int | None = None) -> np.ndarray:
    """The original's attention picture as an H x W x 3 uint8 array.

    images: B x 3 x H x W in [-1, 1]; captions: B x T token ids (0 = padding / <end>);
    attn_maps: per sample a (n_words x h x w) map (a list, or a B x T x h x w tensor, or a list of
    1 x n_words x h x w tensors as words_loss returns them); None or an empty list draws the images and
    words without attention rows (the fork's generators return no maps).
    lr_images: optional lower-resolution images shown in the first column instead of ``images``.
    """
    n = min(max_samples, images.size(0))
    if vis_size is None:
        vis_size = max(64, images.size(2))
    imgs = to_uint8(F.interpolate(images[:n].detach().float().cpu(), size=(vis_size, vis_size),
                                  mode='bilinear', align_corners=False))
    first = imgs if lr_images is None else to_uint8(F.interpolate(
        lr_images[:n].detach().float().cpu(), size=(vis_size, vis_size), mode='bilinear', align_corners=False))
    has_maps = attn_maps is not None and len(attn_maps) > 0
    words = [_words(captions[i], ixtoword) for i in range(n)]
    n_cols = 2 + max(len(w) for w in words) if has_maps else 1
    cell = vis_size + PAD
    font = _font()
    blocks = []
    for i in range(n):
        rows = []
        text = Image.new('RGB', (n_cols * cell, TEXT_HEIGHT), (0, 0, 0))
        draw = ImageDraw.Draw(text)
        if has_maps:
            for j, w in enumerate(words[i]):
                draw.text(((j + 2) * cell + 2, 2), f'{j}:{w[:10]}', font=font, fill=(255, 255, 255))
        else:
            draw.text((2, 2), ' '.join(words[i])[: vis_size // 6], font=font, fill=(255, 255, 255))
        rows.append(np.asarray(text))
        if not has_maps:
            rows.append(_pad_row([first[i]], n_cols, vis_size))
        else:
            att = attn_maps[i].detach().float().cpu()
            att = att.reshape(-1, att.shape[-2], att.shape[-1])[: len(words[i])]
            att = torch.cat([att.max(dim=0, keepdim=True).values, att], 0)  # first map: max over words
            up = F.interpolate(att[:, None], size=(vis_size, vis_size), mode='bilinear',
                               align_corners=False)[:, 0]
            lo, hi = up.min(), up.max()
            up = ((up - lo) / (hi - lo).clamp_min(1e-12) * 255).numpy()  # one scale per sample, as the original
            gray = [np.repeat(m[..., None], 3, axis=2).astype(np.uint8) for m in up]
            # the original pastes the map over the image through a constant mask of 210/255
            over = [(imgs[i] * (45 / 255) + g * (210 / 255)).astype(np.uint8) for g in gray]
            rows.append(_pad_row([first[i]] + gray, n_cols, vis_size))
            rows.append(_pad_row([imgs[i]] + over, n_cols, vis_size))
        blocks.append(np.concatenate(rows, 0))
    return np.concatenate(blocks, 0)


def _pad_row(cells: list[np.ndarray], n_cols: int, vis_size: int) -> np.ndarray:
    pad = np.zeros((vis_size, PAD, 3), np.uint8)
    empty = np.zeros((vis_size, vis_size, 3), np.uint8)
    cells = cells + [empty] * (n_cols - len(cells))
    return np.concatenate([x for c in cells for x in (c, pad)], 1)


def save_png(array: np.ndarray, path: str | Path, *also: str | Path) -> Path:
    """Encode ``array`` (H x W x 3 uint8) once and write it to ``path`` and every path in ``also``.

    Each file is replaced atomically, so a viewer watching an overwritten picture never reads half of one.
    """
    buffer = io.BytesIO()
    # zlib level 1: a few times faster than PIL's default 6 on these large pictures, ~1.4x the bytes
    Image.fromarray(array).save(buffer, format='PNG', compress_level=1)
    for target in (path, *also):
        atomic_write_bytes(target, buffer.getvalue())
    return Path(path)
