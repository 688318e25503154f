"""The fast training path (TRAIN.FAST): bf16 autocast, channels_last, fused Adam, torch.compile.

The faithful fp32 path (TRAIN.FAST False, the default) is untouched by everything here and keeps
matching the goldens. With TRAIN.FAST True:

* forwards run under ``torch.autocast(dtype=bfloat16)`` (fp32 master weights; the BCE terms, the DAMSM
  log-softmaxes and KL stay in fp32, see ``losses.py``); on the CPU too, which is how the tests check it.
  A CPU with native bf16 (AMX or AVX512-BF16, :func:`cpu_has_native_bf16`) runs the toy GAN step ~1.3x
  faster than fp32 (``bench/train_step.py --models toy``); elsewhere bf16 is emulated and slower (a warning);
* on CUDA: ``channels_last`` modules and images, ``cudnn.benchmark``, fused Adam, and (TRAIN.COMPILE)
  ``nn.Module.compile`` of G and the Ds in place, so parameter names and state_dict keys do not change;
* the trainer checks losses for NaN/Inf at log steps only (no host synchronisation per step).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn as nn

log = logging.getLogger('attngan')


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 convolutions and matmuls natively (AMX tiles or AVX512-BF16).

    Uses torch.cpu's capability probes (private; absent in an older torch means False).
    """
    probes = ('_is_amx_tile_supported', '_is_avx512_bf16_supported')
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


@dataclass(frozen=True)
class FastPath:
    """What the fast path turns on for one device (all off: the faithful path)."""

    enabled: bool = False
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    fused_adam: bool = False
    compile: bool = False

    def describe(self) -> str:
        if not self.enabled:
            return 'faithful fp32 path (TRAIN.FAST False)'
        on = [f'autocast {str(self.amp_dtype).replace("torch.", "")}']
        on += [name for name, flag in (('channels_last', self.channels_last), ('fused Adam', self.fused_adam),
                                       ('torch.compile', self.compile)) if flag]
        return 'fast path: ' + ', '.join(on)


def fast_path(cfg, device: torch.device) -> FastPath:
    """The fast-path settings TRAIN.FAST / TRAIN.COMPILE give on ``device``."""
    if not cfg.TRAIN.FAST:
        return FastPath()
    cuda = device.type == 'cuda'
    if cuda:
        torch.backends.cudnn.benchmark = True
    fp = FastPath(enabled=True, amp_dtype=torch.bfloat16, channels_last=cuda, fused_adam=cuda,
                  compile=cuda and cfg.TRAIN.COMPILE)
    log.info(fp.describe() + ('' if cuda else ' (channels_last, fused Adam and compile are CUDA-only)'))
    if device.type == 'cpu' and not cpu_has_native_bf16():
        log.warning('TRAIN.FAST on a CPU without native bf16 (no AMX or AVX512-BF16): bf16 is emulated here and '
                    'likely slower than the fp32 path (TRAIN.FAST False)')
    return fp


def prepare_module(module: nn.Module, fp: FastPath, heads: Iterable[str] = ()) -> nn.Module:
    """channels_last and in-place compile when the fast path asks for them; returns the same module.

    heads: names of submodules the caller invokes directly (a discriminator's COND_DNET / UNCOND_DNET),
    compiled too since compiling ``module`` covers its ``forward`` only.
    """
    if fp.channels_last:
        module.to(memory_format=torch.channels_last)
    if fp.compile:
        module.compile()
        for name in heads:
            head = getattr(module, name, None)
            if head is not None:
                head.compile()
    return module


def adam(params: Iterable[torch.nn.Parameter], lr: float, fp: FastPath) -> torch.optim.Adam:
    """The original's Adam(lr, betas=(0.5, 0.999)); fused on the fast path's CUDA device."""
    if fp.fused_adam:
        return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999), fused=True)
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))


def images_to(imgs, fp: FastPath):
    """Real images in the memory format the modules use."""
    if not fp.channels_last:
        return imgs
    return [im.contiguous(memory_format=torch.channels_last) for im in imgs]
