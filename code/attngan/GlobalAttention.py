"""Word-level attention of AttnGAN: ``GlobalAttentionGeneral`` (generator) and ``func_attention`` (DAMSM).

Both follow the original ``code/GlobalAttention.py`` (taoxugit/AttnGAN) number for number. The
softmax axes are those of the original's implicit-dim ``nn.Softmax()`` (dim 1 of the 2-D views it
builds): over words in ``GlobalAttentionGeneral``; over words, then over regions, in ``func_attention``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

_STORED = object()  # sentinel: "use the mask given to applyMask"


def conv1x1(in_planes: int, out_planes: int, bias: bool = False) -> nn.Conv2d:
    """1x1 convolution (no bias by default, as the original)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, padding=0, bias=bias)


def func_attention(query: torch.Tensor, context: torch.Tensor, gamma1: float
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """DAMSM word-region attention (AttnGAN paper Eq. 7-9).

    query: B x ndf x queryL (words); context: B x ndf x ih x iw (regions, sourceL = ih*iw).
    Returns weightedContext (B x ndf x queryL) and attn (B x queryL x ih x iw).
    The first softmax is over words for each region, the second over regions (logits x gamma1).
    """
    batch_size, queryL = query.size(0), query.size(2)
    ih, iw = context.size(2), context.size(3)
    sourceL = ih * iw
    context = context.reshape(batch_size, -1, sourceL)
    # B x sourceL x queryL, softmax over words (Eq. 8)
    attn = torch.bmm(context.transpose(1, 2), query).softmax(dim=-1)
    # B x queryL x sourceL, softmax over regions (Eq. 9)
    attn = (attn.transpose(1, 2) * gamma1).softmax(dim=-1)
    weightedContext = torch.bmm(context, attn.transpose(1, 2))
    return weightedContext, attn.reshape(batch_size, queryL, ih, iw)


def tiled_mask(mask: torch.Tensor, queryL: int) -> torch.Tensor:
    """The mask the original actually applies: B x queryL x sourceL, row q of sample b = mask[(b*queryL+q) % B].

    Original quirk (attention-mask tiling): ``mask.repeat(queryL, 1)`` is laid over the
    (B*queryL) x sourceL logits, so for B > 1 samples use each other's word masks.
    """
    batch_size, sourceL = mask.shape
    return mask.repeat(queryL, 1).view(batch_size, queryL, sourceL)


class GlobalAttentionGeneral(nn.Module):
    """Attention of image sub-regions (queries) over words (context), used by NEXT_STAGE_G.

    idf: channels of the image features; cdf: word-embedding size. ``conv_context`` (1x1, no bias)
    maps words to idf. fix_mask=False reproduces the original's mask tiling (samples' masks mixed);
    True gives each sample its own mask.
    """

    def __init__(self, idf: int, cdf: int, fix_mask: bool = False):
        super().__init__()
        self.conv_context = conv1x1(cdf, idf)
        self.fix_mask = fix_mask
        self.mask: Optional[torch.Tensor] = None

    def applyMask(self, mask: Optional[torch.Tensor]) -> None:
        """Store the B x sourceL bool mask (True = padding) used when forward gets no mask."""
        self.mask = mask

    def forward(self, input: torch.Tensor, context: torch.Tensor, mask=_STORED
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """input: B x idf x ih x iw (queryL = ih*iw); context: B x cdf x sourceL;
        mask: B x sourceL bool (True = padding), None for no mask; omitted: the one from applyMask.

        Returns weightedContext (B x idf x ih x iw) and attn (B x sourceL x ih x iw).
        """
        if mask is _STORED:
            mask = self.mask
        ih, iw = input.size(2), input.size(3)
        queryL = ih * iw
        batch_size, sourceL = context.size(0), context.size(2)

        target = input.reshape(batch_size, -1, queryL)                    # B x idf x queryL
        sourceT = self.conv_context(context.unsqueeze(3)).squeeze(3)     # B x idf x sourceL
        attn = torch.bmm(target.transpose(1, 2), sourceT)                # B x queryL x sourceL
        if mask is not None:
            if self.fix_mask:
                full = mask.view(batch_size, 1, sourceL)
            else:
                full = tiled_mask(mask, queryL)
            attn = attn.masked_fill(full, -float('inf'))
        attn = attn.softmax(dim=-1)  # over words (Eq. 2)
        attnT = attn.transpose(1, 2)                                     # B x sourceL x queryL
        weightedContext = torch.bmm(sourceT, attnT).view(batch_size, -1, ih, iw)
        return weightedContext, attnT.reshape(batch_size, sourceL, ih, iw)
