"""The fast path (TRAIN.FAST): bf16 autocast keeps the fp32 losses in fp32 and tracks the faithful path.

On the CPU the fast path is autocast bf16 only (channels_last, fused Adam and compile are CUDA-only);
tests/test_golden_train_step.py covers fused Adam against the goldens, bench/train_step.py the speed.
"""
import copy
import logging

import pytest
import torch
import torch.nn.functional as F

from attngan.build import build_discriminators, build_generator, build_image_encoder, build_text_encoder
from attngan.config import load_config
from attngan.engine import fast as fast_module
from attngan.engine.fast import FastPath, cpu_has_native_bf16, fast_path
from attngan.gan import GANStep, copy_G_params
from attngan.losses import _bce
from attngan.models import D_GET_LOGITS
from conftest import TINY_GAN

N_STEPS = 50
# Tolerances, from measurement (torch 2.14, CPU with avx512_bf16): the losses of step 0 differ by at most
# 0.6% (bf16 rounding of the forwards); over 50 Adam steps the runs drift apart (a GAN is chaotic), but
# the mean of each loss over the last 20 steps stays within 1.1% (errD, errG, w, s, kl: 0.1, 0.6, 1.1,
# 0.03, 0.02%). The bounds leave room for other CPUs' bf16 kernels.
FIRST_STEP_RTOL = 0.02
MEAN_RTOL = 0.05


def test_bce_is_fp32_under_autocast_and_equal_without():
    p = torch.rand(8) * 0.98 + 0.01
    t = (torch.rand(8) > 0.5).float()
    torch.testing.assert_close(_bce(p, t), F.binary_cross_entropy(p, t), rtol=0, atol=0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = _bce(p.bfloat16(), t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.binary_cross_entropy(p.bfloat16().float(), t), rtol=0, atol=0)


def test_logits_head_sigmoid_runs_in_fp32():
    head = D_GET_LOGITS(4, 8, bcondition=True)
    h, c = torch.randn(3, 32, 4, 4), torch.randn(3, 8)
    ref = head(h, c)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = head(h, c)
    assert ref.dtype == out.dtype == torch.float32
    # a confident real: bf16 would round 1 - 1e-4 to 1.0; the fp32 sigmoid keeps the distance to 1
    head.outlogits[0].bias.data.fill_(9.0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        p = head(h, c)
    assert bool((p < 1).all())


def test_fast_path_settings_on_cpu():
    cfg = load_config('cfg/toy_attn2.yml')
    assert fast_path(cfg, torch.device('cpu')) == FastPath()
    cfg.TRAIN.FAST = True
    fp = fast_path(cfg, torch.device('cpu'))
    assert fp.enabled and fp.amp_dtype == torch.bfloat16
    assert not (fp.channels_last or fp.fused_adam or fp.compile)  # CUDA-only
    assert 'autocast bfloat16' in fp.describe()


def test_native_bf16_probe(monkeypatch):
    for name in ('_is_amx_tile_supported', '_is_avx512_bf16_supported'):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: True)
    assert cpu_has_native_bf16() is True
    monkeypatch.delattr(torch.cpu, '_is_avx512_bf16_supported')  # an older torch without the probe
    assert cpu_has_native_bf16() is False


@pytest.mark.parametrize('native', [True, False])
def test_cpu_fast_path_warns_where_bf16_is_emulated(monkeypatch, caplog, native):
    monkeypatch.setattr(fast_module, 'cpu_has_native_bf16', lambda: native)
    cfg = load_config('cfg/toy_attn2.yml', ['TRAIN.FAST=true'])
    with caplog.at_level(logging.WARNING, logger='attngan'):
        assert fast_path(cfg, torch.device('cpu')).enabled
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and 'emulated' in r.getMessage()]
    assert len(warned) == (0 if native else 1)


def _run(amp_dtype, modules, batch, seed=3):
    text_encoder, image_encoder, netG, netsD = copy.deepcopy(modules)
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optsD = [torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999)) for d in netsD]
    avg = copy_G_params(netG)
    imgs, captions, cap_lens, class_ids = batch
    step = GANStep(text_encoder, image_encoder, netG, netsD, optG, optsD, avg, batch_size=captions.size(0),
                   z_dim=load_config('cfg/toy_attn2.yml', TINY_GAN).GAN.Z_DIM, gamma1=4.0, gamma2=5.0, gamma3=10.0, lambda_=5.0,
                   amp_dtype=amp_dtype)
    torch.manual_seed(seed)
    trace = []
    for _ in range(N_STEPS):
        out, _ = step(imgs, captions, cap_lens, class_ids)
        assert out['errG_total'].dtype == torch.float32
        trace.append([float(out[k]) for k in ('errD_total', 'errG_total', 'w_loss', 's_loss', 'kl_loss')])
    return torch.tensor(trace, dtype=torch.float64)


@pytest.fixture(scope='module')
def tiny_setup():
    torch.manual_seed(0)
    cfg = load_config('cfg/toy_attn2.yml', TINY_GAN)
    n_words, b = 30, 6
    text_encoder = build_text_encoder(cfg, n_words).requires_grad_(False).eval()
    image_encoder = build_image_encoder(cfg, weights='random').requires_grad_(False).eval()
    netG = build_generator(cfg).train()
    netsD = [d.train() for d in build_discriminators(cfg)]
    g = torch.Generator().manual_seed(1)
    imgs = [torch.rand(b, 3, s, s, generator=g) * 2 - 1 for s in (64, 128)]
    cap_lens = torch.tensor([9, 8, 8, 6, 5, 4])
    captions = torch.randint(1, n_words, (b, 9), generator=g)
    for i, n in enumerate(cap_lens.tolist()):
        captions[i, n:] = 0
    class_ids = torch.arange(b)
    return (text_encoder, image_encoder, netG, netsD), (imgs, captions, cap_lens, class_ids)


def test_bf16_fast_path_tracks_fp32_over_50_steps(tiny_setup):
    modules, batch = tiny_setup
    ref = _run(None, modules, batch)
    fast = _run(torch.bfloat16, modules, batch)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast[0], ref[0], rtol=FIRST_STEP_RTOL, atol=1e-3)
    tail_ref, tail_fast = ref[-20:].mean(0), fast[-20:].mean(0)
    rel = ((tail_fast - tail_ref).abs() / tail_ref.abs().clamp(min=0.05))
    assert bool((rel < MEAN_RTOL).all()), f'last-20-step mean relative difference per loss: {rel.tolist()}'
    # the runs really train: the faithful path's losses move over the 50 steps
    assert (ref[-10:].mean(0) - ref[:10].mean(0)).abs().max() > 0.1
