"""DualAttn-GAN, paper variant (attngan.dualAttnModel.Paper*), the builder's dispatch and spectral norm, and
two real training steps (attngan.gan.GANStep) of each DualAttnGAN variant on tiny random inputs."""
import io

import pytest
import torch
import torch.nn as nn

from attngan.build import build_discriminators, build_generator
from attngan.config import REPO_ROOT, load_config
from attngan.dualAttnModel import (AttentionEmbedding, DualAttn_G_NET, InvertedResidual, PaperChannelAttention,
                                   PaperDualAttn_G_NET, PaperSpatialAttention,
                                   apply_spectral_norm, count_spectral_norm, sagan_attention,
                                   spectral_norm_discriminator)
from attngan.gan import GANStep, copy_G_params
from attngan.models import CNN_ENCODER, D_NET64, GLU, INIT_STAGE_G, RNN_ENCODER

NGF, NEF, NCF, ZD, T = 8, 16, 8, 8, 6


def _inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, T, dtype=torch.bool)
    mask[1:, T - 2:] = True
    return (torch.randn(b, ZD, generator=g), torch.randn(b, NEF, generator=g), torch.randn(b, NEF, T, generator=g),
            mask)


def _paper(branch_num=3, **kw):
    return PaperDualAttn_G_NET(NGF, NEF, NCF, ZD, r_num=2, branch_num=branch_num, **kw)


def _paper_cfg(*extra):
    return load_config(REPO_ROOT / 'cfg' / 'bird_dualattn_paper.yml',
                       ['GAN.GF_DIM=8', 'GAN.DF_DIM=4', 'TEXT.EMBEDDING_DIM=16', 'GAN.Z_DIM=8',
                        'GAN.CONDITION_DIM=8', *extra])


# ------------------------------------------------------------------ shapes
def test_stage_shapes_and_attention_maps():
    net = _paper().train()
    z, s, w, m = _inputs()
    caught = {}
    for k in (1, 2, 3):
        getattr(net, f'h_net{k}').register_forward_hook(
            lambda _m, _i, out, k=k: caught.__setitem__(k, out[0] if isinstance(out, tuple) else out))
    fake, att, mu, logvar = net(z, s, w, m)
    assert [tuple(f.shape) for f in fake] == [(2, 3, 64, 64), (2, 3, 128, 128), (2, 3, 256, 256)]
    assert [tuple(caught[k].shape) for k in (1, 2, 3)] == [(2, NGF, 64, 64), (2, NGF, 128, 128), (2, NGF, 256, 256)]
    # textual attention maps are returned, as AttnGAN: B x T x H x W per refinement stage, softmax over words
    assert [tuple(a.shape) for a in att] == [(2, T, 64, 64), (2, T, 128, 128)]
    for a in att:
        torch.testing.assert_close(a.sum(1), torch.ones(2, a.size(2), a.size(3)))
    assert mu.shape == logvar.shape == (2, NCF)
    dual, _ = net.h_net2.dual_attention(caught[1], w, m)
    assert dual.shape == (2, 2 * NGF, 64, 64)


@pytest.mark.parametrize('init_relu', ['fc', 'upsample', 'both', 'none'])
def test_init_stage_relu_choice(init_relu):
    stage = INIT_STAGE_G(NGF * 16, NCF, ZD, init_relu)
    relu_fc, relu_up = init_relu in ('fc', 'both'), init_relu in ('upsample', 'both')
    assert stage.fc[0].out_features == NGF * 16 * 16 * (1 if relu_fc else 2)
    assert isinstance(stage.fc[2], nn.ReLU if relu_fc else GLU)
    assert isinstance(stage.upsample1[-1], nn.ReLU if relu_up else GLU)
    out = stage(torch.randn(3, ZD), torch.randn(3, NCF))
    assert out.shape == (3, NGF, 64, 64)
    with pytest.raises(ValueError, match='PAPER_INIT_RELU'):
        INIT_STAGE_G(NGF * 16, NCF, ZD, 'glu')


# ------------------------------------------------------------------ attention modules
def test_spatial_attention_gamma_zero_is_identity():
    torch.manual_seed(0)
    sam = PaperSpatialAttention(16)
    x = torch.randn(2, 16, 12, 10)
    assert sam.gamma.item() == 0.0
    assert torch.equal(sam(x), x)
    with torch.no_grad():
        sam.gamma.fill_(0.5)
    assert not torch.allclose(sam(x), x)


@pytest.mark.parametrize('pool', [1, 2])
def test_sdpa_equals_materialised_attention(pool):
    torch.manual_seed(1)
    sam = PaperSpatialAttention(20, pool=pool)  # 20 channels: query/key width 2, value 20 (padding exercised)
    x = torch.randn(3, 20, 8, 12, dtype=torch.float64)
    sam.double()
    torch.testing.assert_close(sam.attention_output(x), sam.attention_output(x, materialise=True))
    q, k, v = torch.randn(2, 50, 3), torch.randn(2, 40, 3), torch.randn(2, 40, 11)
    torch.testing.assert_close(sagan_attention(q, k, v), sagan_attention(q, k, v, materialise=True),
                               atol=1e-5, rtol=1e-5)
    # softmax over keys (SAGAN): with constant values the output is that constant
    torch.testing.assert_close(sagan_attention(q, k, torch.ones(2, 40, 11)), torch.ones(2, 50, 11))


def test_sdpa_never_materialises_the_map():
    """The fused kernel is used (a silent fallback to the math path would store the N x N map)."""
    sam = PaperSpatialAttention(32)
    x = torch.randn(1, 32, 16, 16, requires_grad=True)
    o = sam.attention_output(x)
    names, stack, seen = set(), [o.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    assert any('ScaledDotProduct' in n for n in names), names
    assert not any(n.startswith(('Softmax', 'Bmm')) for n in names), names


def test_channel_gate_in_unit_interval_and_shared_mlp():
    torch.manual_seed(2)
    cam = PaperChannelAttention(16, reduction=4)
    assert [m.weight.shape for m in cam.modules() if isinstance(m, nn.Linear)] == [(4, 16), (16, 4)]
    x = torch.randn(3, 16, 9, 9) * 5
    gate = cam.gate(x)
    assert gate.shape == (3, 16, 1, 1)
    assert torch.all((gate > 0) & (gate < 1))
    expected = torch.sigmoid(cam.mlp(x.mean((2, 3))) + cam.mlp(x.amax((2, 3))))  # ONE mlp on both paths
    torch.testing.assert_close(gate.flatten(1), expected)
    torch.testing.assert_close(cam(x), x * gate)
    # global pooling: the gate ignores where things are
    perm = torch.randperm(81)
    x_perm = x.flatten(2)[:, :, perm].view_as(x)
    torch.testing.assert_close(cam.gate(x_perm), gate)


def test_attention_embedding():
    h, t, v = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    out = AttentionEmbedding(4)(h, t, v)
    torch.testing.assert_close(out, torch.cat((h + t, h + v), 1))
    assert AttentionEmbedding(4, conv=True)(h, t, v).shape == (2, 8, 5, 5)


def test_inverted_residual_shape_and_checkpoint():
    torch.manual_seed(3)
    plain = InvertedResidual(12, expansion=6)
    ckpt = InvertedResidual(12, expansion=6, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(72, 12, 1, 1), (72, 1, 3, 3), (12, 72, 1, 1)]
    assert convs[1].groups == 72
    x = torch.randn(2, 12, 7, 7)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outs = [m(xi) for m, xi in zip((plain, ckpt), xs)]
    assert outs[0].shape == x.shape
    for o in outs:
        (o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum().backward()
    torch.testing.assert_close(outs[1], outs[0])
    torch.testing.assert_close(xs[1].grad, xs[0].grad)
    for (n, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=lambda m, n=n: f'{n}: {m}')
    # the recomputation in backward must not update the BN running statistics a second time
    for (n, b), c in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(c, b, msg=lambda m, n=n: f'{n}: {m}')
    assert InvertedResidual(12, expansion=1)(x).shape == x.shape


# ------------------------------------------------------------------ spectral norm
def _sigma(w):
    return torch.linalg.matrix_norm(w.flatten(1), ord=2)


def test_spectral_norm_present_when_enabled():
    on = build_generator(_paper_cfg(), init_weights=True)
    off = build_generator(_paper_cfg('GAN.PAPER_SN_G=false'), init_weights=True)
    n_sn, n_layers = count_spectral_norm(on)
    assert n_sn == n_layers > 20
    assert count_spectral_norm(off) == (0, n_layers)
    assert any(k.endswith('parametrizations.weight.original') for k in on.state_dict())
    assert not any('parametrizations' in k for k in off.state_dict())
    # Ds: only the paper variant with PAPER_SN_D
    for extra, expect in (((), True), (('GAN.PAPER_SN_D=false',), False),
                          (('GAN.DUAL_ATTN_VARIANT=fork',), False), (('GAN.DUAL_ATTN=false',), False)):
        for d in build_discriminators(_paper_cfg(*extra)):
            n, total = count_spectral_norm(d)
            assert n == (total if expect else 0), extra
    # the init ran before the parametrisation: CA_NET's fc bias is zeroed by weights_init
    assert torch.all(on.ca_net.fc.bias == 0)


def test_spectral_norm_normalises():
    torch.manual_seed(4)
    d = spectral_norm_discriminator(D_NET64(4, 8)).train()
    conv = d.img_code_s16[0]
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(10.0)
    assert _sigma(conv.parametrizations.weight.original.detach()).item() > 2.0
    x = torch.randn(2, 3, 64, 64)
    for _ in range(30):  # power iterations run in train-mode forwards
        d(x)
    assert abs(_sigma(conv.weight.detach()).item() - 1.0) < 1e-2
    lin = apply_spectral_norm(nn.Linear(30, 20))
    for _ in range(30):
        lin(torch.randn(1, 30))
    assert abs(_sigma(lin.weight.detach()).item() - 1.0) < 1e-2


# ------------------------------------------------------------------ gradients, round trip
def test_gradients_reach_every_parameter():
    torch.manual_seed(5)
    net = apply_spectral_norm(_paper(branch_num=2, aem_conv=True)).train()
    z, s, w, m = _inputs()
    fake, att, mu, logvar = net(z, s, w, m)
    (sum(f.square().mean() for f in fake) + mu.sum() + logvar.sum()).backward()
    # with gamma = 0 (its init) the self-attention's convs get zero gradient, but gamma itself does not
    gammas = [p for n, p in net.named_parameters() if n.endswith('gamma')]
    assert gammas and all(g.grad.abs().item() > 0 for g in gammas)
    net.zero_grad()
    with torch.no_grad():
        for g in gammas:
            g.fill_(0.3)
    fake, att, mu, logvar = net(z, s, w, m)
    (sum(f.square().mean() for f in fake) + mu.sum() + logvar.sum()).backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead


def test_state_dict_round_trip():
    cfg = _paper_cfg('TREE.BRANCH_NUM=2')
    torch.manual_seed(6)
    a = build_generator(cfg).train()
    z, s, w, m = _inputs()
    a(z, s, w, m)  # moves BN statistics and the spectral-norm vectors away from their init
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(7)
    b = build_generator(cfg)
    b.load_state_dict(torch.load(buf, weights_only=True))
    a.eval()
    b.eval()
    outs = []
    for net in (a, b):
        torch.manual_seed(8)
        with torch.no_grad():
            outs.append(net(z, s, w, m))
    for x, y in zip(outs[0][0] + outs[0][1], outs[1][0] + outs[1][1]):
        assert torch.equal(x, y)
    assert list(a.state_dict()) == list(b.state_dict())


# ------------------------------------------------------------------ builder dispatch and configs
def test_builder_dispatch_and_config_errors():
    fork = load_config(REPO_ROOT / 'cfg' / 'bird_dualattn.yml', ['GAN.GF_DIM=8', 'TEXT.EMBEDDING_DIM=16',
                                                                  'TREE.BRANCH_NUM=2'])
    assert type(build_generator(fork, init_weights=False)) is DualAttn_G_NET
    assert type(build_generator(_paper_cfg(), init_weights=False)) is PaperDualAttn_G_NET
    with pytest.raises(ValueError, match='DUAL_ATTN_VARIANT'):
        build_generator(_paper_cfg('GAN.DUAL_ATTN_VARIANT=both'))
    with pytest.raises(ValueError, match='B_DCGAN'):
        build_generator(_paper_cfg('GAN.B_DCGAN=true'))
    fork.TREE.BASE_SIZE = 128
    with pytest.raises(ValueError, match='BASE_SIZE'):
        build_generator(fork)
    fork.TREE.BASE_SIZE, fork.GAN.GF_DIM = 64, 12
    with pytest.raises(ValueError, match='GF_DIM'):
        build_generator(fork)
    with pytest.raises(ValueError, match='PAPER_SAM_POOL'):
        PaperSpatialAttention(8, pool=0)


@pytest.mark.parametrize('name', ['bird_dualattn_paper.yml', 'toy_dualattn.yml', 'toy_dualattn_paper.yml'])
def test_configs_load(name):
    cfg = load_config(REPO_ROOT / 'cfg' / name)
    assert cfg.GAN.DUAL_ATTN
    assert cfg.GAN.DUAL_ATTN_VARIANT == ('fork' if name == 'toy_dualattn.yml' else 'paper')
    if name.startswith('bird'):
        assert cfg.TRAIN.BATCH_SIZE == 20 and cfg.GAN.GF_DIM == 32 and cfg.TREE.BRANCH_NUM == 3
    else:
        assert cfg.GAN.GF_DIM % 8 == 0 and cfg.TREE.BASE_SIZE == 64


# ------------------------------------------------------------------ real training steps
@pytest.fixture(scope='module')
def encoders():
    torch.manual_seed(9)
    text = RNN_ENCODER(30, nhidden=NEF).requires_grad_(False).eval()
    image = CNN_ENCODER(NEF, weights='random').requires_grad_(False).eval()
    return text, image


@pytest.mark.parametrize('variant', ['fork', 'paper'])
def test_two_train_steps(encoders, variant):
    cfg = _paper_cfg('TREE.BRANCH_NUM=2', f'GAN.DUAL_ATTN_VARIANT={variant}')
    torch.manual_seed(10)
    netG = build_generator(cfg).train()
    netsD = [d.train() for d in build_discriminators(cfg)]
    assert type(netG) is (DualAttn_G_NET if variant == 'fork' else PaperDualAttn_G_NET)
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optsD = [torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999)) for d in netsD]
    avg = copy_G_params(netG)
    B = 3
    g = torch.Generator().manual_seed(11)
    cap_lens = torch.tensor([T, T - 1, 3])
    captions = torch.randint(1, 30, (B, T), generator=g)
    captions[torch.arange(T)[None, :] >= cap_lens[:, None]] = 0
    imgs = [torch.rand(B, 3, 64 * 2 ** i, 64 * 2 ** i, generator=g) * 2 - 1 for i in range(2)]
    before = [p.detach().clone() for p in netG.parameters()]
    step = GANStep(*encoders, netG, netsD, optG, optsD, avg, batch_size=B, z_dim=cfg.GAN.Z_DIM, gamma1=4.0,
                   gamma2=5.0, gamma3=10.0, lambda_=5.0)
    for _ in range(2):
        losses, outputs = step(imgs, captions, cap_lens, torch.tensor([1, 2, 1]))
        out = {**losses, **outputs}
        for k, v in out.items():
            for t in (v if isinstance(v, list) else [v]):
                if torch.is_tensor(t):
                    assert torch.isfinite(t).all(), k
    assert [tuple(f.shape) for f in out['fake_imgs']] == [(B, 3, 64, 64), (B, 3, 128, 128)]
    assert any(not torch.equal(a, p) for a, p in zip(before, netG.parameters()))
    for p in netG.parameters():
        assert torch.isfinite(p).all()


def test_inverted_residual_checkpoint_under_compile():
    """torch.compile (the FAST path) traces the checkpointed block; BN statistics still move once."""
    torch.manual_seed(12)
    ref, ckpt = InvertedResidual(8, 6), InvertedResidual(8, 6, checkpoint=True)
    ckpt.load_state_dict(ref.state_dict())
    compiled = torch.compile(ckpt, backend='aot_eager')
    x = torch.randn(2, 8, 6, 6)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    ref(xs[0]).sum().backward()
    compiled(xs[1]).sum().backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad)
    for (n, b), c in zip(ref.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(c, b, msg=lambda m, n=n: f'{n}: {m}')
