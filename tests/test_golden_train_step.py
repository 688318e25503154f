"""One full training iteration (D steps, G step, Adam, EMA) against train_step.pt."""
import math

import pytest
import torch

from attngan.gan import copy_G_params, ema_update, format_logs, load_params, train_step
from attngan.models import CNN_ENCODER, D_NET64, D_NET128, D_NET256, G_NET, RNN_ENCODER
from golden_utils import (GRAD_NORM_RTOL, LOSS_RTOL, PARAM_SUM_ATOL, assert_close, assert_scalar, decode_u8,
                          fill_by_rule, load)


VARIANTS = ['original', 'fused_adam']


@pytest.fixture(scope='module', params=VARIANTS)
def run(golden_dir, request):
    """Build everything as train_step.pt describes, run train_step once, record grads before each step.

    'original': torch.optim.Adam defaults, as the original. 'fused_adam' (Adam(fused=True), same fp32
    math, other rounding) must stay within the same tolerances. (channels_last does not: it moves the
    256 px image's abs_sum by ~1.1e-5 relative, just over the digest tolerance.)
    """
    variant = request.param
    fix = load(golden_dir, 'train_step.pt')
    rnn, gfix, dfix = (load(golden_dir, n) for n in ('rnn_encoder.pt', 'g_net.pt', 'd_nets.pt'))
    cfg = fix['cfg']
    nef, n_d = cfg['TEXT.EMBEDDING_DIM'], cfg['TREE.BRANCH_NUM']

    text_encoder = RNN_ENCODER(rnn['vocab'], nhidden=nef)
    text_encoder.load_state_dict(rnn['state_dict'])
    text_encoder.requires_grad_(False).eval()
    image_encoder = CNN_ENCODER(nef, weights='random')
    fill_by_rule(image_encoder, 1000)
    image_encoder.requires_grad_(False).eval()
    netG = G_NET(cfg['GAN.GF_DIM'], nef, cfg['GAN.CONDITION_DIM'], cfg['GAN.Z_DIM'], cfg['GAN.R_NUM'], n_d)
    netG.load_state_dict(gfix['state_dict'])
    netsD = []
    for i, cls in enumerate([D_NET64, D_NET128, D_NET256][:n_d]):
        netsD.append(cls(cfg['GAN.DF_DIM'], nef))
        netsD[i].load_state_dict(dfix['state_dicts'][i])
    netG.train()
    for d in netsD:
        d.train()
    adam = dict(lr=fix['adam']['lr'], betas=tuple(fix['adam']['betas']))
    if variant == 'fused_adam':
        adam['fused'] = True
    optimizersD = [torch.optim.Adam(d.parameters(), **adam) for d in netsD]
    optimizerG = torch.optim.Adam(netG.parameters(), **adam)
    avg = copy_G_params(netG)

    grads = {}

    def recorder(tag, module):
        names = {p: n for n, p in module.named_parameters()}

        def hook(opt, _args, _kwargs):
            grads[tag] = {names[p]: p.grad.detach().double().clone()
                          for g in opt.param_groups for p in g['params'] if p.grad is not None}
        return hook
    for i, (d, o) in enumerate(zip(netsD, optimizersD)):
        o.register_step_pre_hook(recorder(f'D{i}', d))
    optimizerG.register_step_pre_hook(recorder('G', netG))

    B = rnn['captions'].size(0)
    noise = torch.empty(B, cfg['GAN.Z_DIM'])
    torch.manual_seed(fix['seed_before_noise'])
    out = train_step(text_encoder, image_encoder, netG, netsD, optimizerG, optimizersD, avg,
                     [decode_u8(dfix['real_u8'][i]) for i in range(n_d)], rnn['captions'], rnn['cap_lens'],
                     fix['class_ids'], noise, torch.ones(B), torch.zeros(B), torch.arange(B),
                     gamma1=cfg['TRAIN.SMOOTH.GAMMA1'], gamma2=cfg['TRAIN.SMOOTH.GAMMA2'],
                     gamma3=cfg['TRAIN.SMOOTH.GAMMA3'], lambda_=cfg['TRAIN.SMOOTH.LAMBDA'])
    return dict(fix=fix, out=out, grads=grads, netG=netG, netsD=netsD, avg=avg, noise=noise, n_d=n_d)


def test_noise_and_fakes(run):
    fix, out = run['fix'], run['out']
    assert torch.equal(run['noise'], fix['noise'])  # same RNG order: noise first, then CA noise
    for i, img in enumerate(out['fake_imgs']):
        assert_close(img, fix['fake_imgs'][i], f'fake_imgs[{i}]')


def test_losses_and_logs(run):
    fix, out = run['fix'], run['out']
    for i in range(run['n_d']):
        assert_scalar(out[f'errD{i}'], fix['errD'][i], f'errD{i}')
    assert_scalar(out['errG_total'], fix['errG_total'], 'errG_total')
    assert_scalar(out['kl_loss'], fix['kl_loss'], 'kl_loss', rtol=LOSS_RTOL * 10)
    assert all(not torch.is_tensor(v) or not v.requires_grad for v in out.values())
    D_logs, G_logs = format_logs(out, run['n_d'])
    assert D_logs == fix['D_logs']
    assert G_logs == fix['G_logs']


def _check_grads(got, expected, name):
    assert sorted(got) == sorted(expected), f'{name}: parameters with gradients differ'
    for k, (s, norm) in expected.items():
        g = got[k]
        assert abs(g.norm().item() - norm) <= GRAD_NORM_RTOL * norm + 1e-12, f'{name}.{k}: grad norm'
        # sums of signed gradients can cancel: compare relative to the scale of the gradient
        scale = norm * math.sqrt(g.numel())
        assert abs(g.sum().item() - s) <= GRAD_NORM_RTOL * scale + 1e-9, f'{name}.{k}: grad sum'


def test_gradients_before_each_step(run):
    fix, grads = run['fix'], run['grads']
    for i in range(run['n_d']):
        _check_grads(grads[f'D{i}'], fix['D_grads'][i], f'D{i}')
    _check_grads(grads['G'], fix['G_grads'], 'G')


def _check_param_sums(module, expected, name):
    params = dict(module.named_parameters())
    assert sorted(params) == sorted(expected)
    for k, s in expected.items():
        assert abs(params[k].double().sum().item() - s) <= PARAM_SUM_ATOL, f'{name}.{k}: sum after step'


def test_parameters_after_adam_and_ema(run):
    fix = run['fix']
    _check_param_sums(run['netG'], fix['G_params_after'], 'G')
    for i, d in enumerate(run['netsD']):
        _check_param_sums(d, fix['D_params_after'][i], f'D{i}')
    names = [n for n, _ in run['netG'].named_parameters()]
    assert sorted(names) == sorted(fix['G_avg_params_after'])
    for n, a in zip(names, run['avg']):
        assert abs(a.double().sum().item() - fix['G_avg_params_after'][n]) <= PARAM_SUM_ATOL, f'G_avg.{n}'


def test_buffers_after(run):
    fix = run['fix']
    mods = [('G', run['netG'], fix['G_buffers_after'])]
    mods += [(f'D{i}', d, fix['D_buffers_after'][i]) for i, d in enumerate(run['netsD'])]
    for name, module, expected in mods:
        bufs = dict(module.named_buffers())
        assert sorted(bufs) == sorted(expected)
        for k, v in expected.items():
            if k.endswith('num_batches_tracked'):
                assert bufs[k].item() == v.item(), f'{name}.{k}'
            else:
                assert_close(bufs[k], v, f'{name}.{k}')


def test_ema_helpers():
    net = torch.nn.Linear(3, 2)
    avg = copy_G_params(net)
    start = [a.clone() for a in avg]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema_update(avg, net, 0.999)
    for a, s, p in zip(avg, start, net.parameters()):
        torch.testing.assert_close(a, s.mul(0.999).add(p.detach(), alpha=0.001), rtol=0, atol=0)
    load_params(net, avg)
    assert all(torch.equal(p, a) for p, a in zip(net.parameters(), avg))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_cpu(monkeypatch):
    """Every piece runs on CUDA (no hard-coded device) and gives the CPU numbers; then train_step runs there."""
    import copy
    from attngan.losses import discriminator_loss, generator_loss
    from attngan.models import CA_NET
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    torch.manual_seed(0)
    B, nef = 3, 32
    te = RNN_ENCODER(40, nhidden=nef).eval().requires_grad_(False)
    ie = CNN_ENCODER(nef, weights='random').eval().requires_grad_(False)
    G = G_NET(8, nef, 16, 16, 2, 3).train()
    Ds = [cls(4, nef).train() for cls in (D_NET64, D_NET128, D_NET256)]
    eps = torch.randn(B, 16)
    monkeypatch.setattr(CA_NET, 'reparametrize',
                        lambda self, mu, logvar: eps.to(mu.device) * torch.exp(0.5 * logvar) + mu)
    captions = torch.randint(1, 40, (B, 18))
    cap_lens = torch.tensor([18, 11, 6])
    captions[torch.arange(18)[None] >= cap_lens[:, None]] = 0
    z = torch.randn(B, 16)
    real = [torch.rand(B, 3, 64 * 2 ** i, 64 * 2 ** i) * 2 - 1 for i in range(3)]
    gam = dict(gamma1=4.0, gamma2=5.0, gamma3=10.0, lambda_=5.0)

    def pieces(dev):
        t, i, g, ds = (copy.deepcopy(m).to(dev) for m in (te, ie, G, torch.nn.ModuleList(Ds)))
        w, s = t(captions.to(dev), cap_lens, t.init_hidden(B))
        mask = (captions.to(dev) == 0)[:, :w.size(2)]
        fake, att, mu, logvar = g(z.to(dev), s, w, mask)
        ones, zeros = torch.ones(B, device=dev), torch.zeros(B, device=dev)
        errD = [discriminator_loss(d, r.to(dev), f, s, ones, zeros) for d, r, f in zip(ds, real, fake)]
        errG, _, _ = generator_loss(list(ds), i, fake, ones, w, s, torch.arange(B, device=dev), cap_lens,
                                    torch.tensor([1, 2, 1], device=dev), **gam)
        errG.backward()
        gn = torch.stack([p.grad.norm() for p in g.parameters()])
        return [x.detach().cpu() for x in (w, s, fake[2], att[1], torch.stack(errD), errG, gn)]

    for a, b in zip(pieces('cpu'), pieces('cuda')):
        torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-4)

    dev = torch.device('cuda')
    te, ie, G = te.to(dev), ie.to(dev), G.to(dev)
    Ds = [d.to(dev) for d in Ds]
    opts = [torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999)) for d in Ds]
    optG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    avg = copy_G_params(G)
    before = [a.clone() for a in avg]
    out = train_step(te, ie, G, Ds, optG, opts, avg, [r.to(dev) for r in real], captions.to(dev),
                     cap_lens.to(dev), torch.tensor([1, 2, 1], device=dev), torch.empty(B, 16, device=dev),
                     torch.ones(B, device=dev), torch.zeros(B, device=dev), torch.arange(B, device=dev), **gam)
    assert out['errG_total'].is_cuda and torch.isfinite(out['errG_total'])
    assert all(a.is_cuda for a in avg) and any(not torch.equal(a, b) for a, b in zip(avg, before))
    format_logs(out, 3)
