"""One full training iteration (D steps, G step, Adam, EMA) against train_step.pt."""
import inspect

import pytest
import torch

from attngan.gan import GANStep, copy_G_params, ema_update, format_logs, load_params
from attngan.models import CNN_ENCODER, D_NET64, D_NET128, D_NET256, G_NET, RNN_ENCODER
from golden_utils import (NOISE_MULTIPLE, assert_golden, assert_golden_norm, assert_golden_sum, decode_u8,
                          fill_by_rule, float64_replay, load, seeded, seeded_draws)


VARIANTS = ['original', 'fused_adam']
EMA_DECAY = inspect.signature(GANStep).parameters['ema_decay'].default  # the original's 0.999
#: No sanity cap on gradient noise: G's gradient comes back through the frozen Inception encoder, where
#: max-pool argmax and ReLU decisions on near-ties differ between float32 and float64, so whole G
#: gradients differ by up to about 1e-2 relative (measured), while the forward values (capped) agree to 1e-6.
GRAD_CAP = None


def build(golden_dir, float64=False, fused=False):
    """Everything as train_step.pt describes (float64: the same weights in float64, for the replay)."""
    fix = load(golden_dir, 'train_step.pt')
    rnn, gfix, dfix, cnn = (load(golden_dir, n) for n in ('rnn_encoder.pt', 'g_net.pt', 'd_nets.pt',
                                                          'cnn_encoder.pt'))
    cfg = fix['cfg']
    nef, n_d = cfg['TEXT.EMBEDDING_DIM'], cfg['TREE.BRANCH_NUM']
    cast = (lambda m: m.double()) if float64 else (lambda m: m)

    text_encoder = RNN_ENCODER(rnn['vocab'], nhidden=nef)
    text_encoder.load_state_dict(rnn['state_dict'])
    text_encoder = cast(text_encoder.requires_grad_(False).eval())
    image_encoder = CNN_ENCODER(nef, weights='random')
    fill_by_rule(image_encoder, cnn['fill_base'])  # "image encoder as in losses.pt": cnn_encoder.pt's fill
    image_encoder = cast(image_encoder.requires_grad_(False).eval())
    netG = G_NET(cfg['GAN.GF_DIM'], nef, cfg['GAN.CONDITION_DIM'], cfg['GAN.Z_DIM'], cfg['GAN.R_NUM'], n_d)
    netG.load_state_dict(gfix['state_dict'])
    netG = cast(netG.train())
    netsD = []
    for i, cls in enumerate([D_NET64, D_NET128, D_NET256][:n_d]):
        netsD.append(cls(cfg['GAN.DF_DIM'], nef))
        netsD[i].load_state_dict(dfix['state_dicts'][i])
        netsD[i] = cast(netsD[i].train())
    adam = dict(lr=fix['adam']['lr'], betas=tuple(fix['adam']['betas']))
    if fused:
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
    dtype = torch.float64 if float64 else torch.float32
    imgs = [decode_u8(dfix['real_u8'][i]).to(dtype) for i in range(n_d)]
    step = GANStep(text_encoder, image_encoder, netG, netsD, optimizerG, optimizersD, avg, batch_size=B,
                   z_dim=cfg['GAN.Z_DIM'], gamma1=cfg['TRAIN.SMOOTH.GAMMA1'], gamma2=cfg['TRAIN.SMOOTH.GAMMA2'],
                   gamma3=cfg['TRAIN.SMOOTH.GAMMA3'], lambda_=cfg['TRAIN.SMOOTH.LAMBDA'], dtype=dtype)
    batch = (imgs, rnn['captions'], rnn['cap_lens'], fix['class_ids'])
    return dict(fix=fix, step=step, batch=batch, grads=grads, netG=netG, netsD=netsD, avg=avg, noise=step.noise,
                n_d=n_d, optimizerG=optimizerG, optimizersD=optimizersD)


def _call(run):
    losses, outputs = run['step'](*run['batch'])
    return {**losses, **outputs}


def run_step(golden_dir, variant='original'):
    """The float32 iteration, seeded as stored, with the gradients seen by each optimizer step."""
    run = build(golden_dir, fused=variant == 'fused_adam')
    with seeded(run['fix']['seed_before_noise'], _draws(run)):
        run['out'] = _call(run)
    return run


def _draws(run):
    """The iteration's draws: the z noise (B x Z_DIM), then CA_NET's eps (B x CONDITION_DIM)."""
    noise = run['noise']
    return [('normal_', noise.shape), ('randn', (noise.size(0), run['netG'].ca_net.c_dim))]


def replay_step(golden_dir):
    """The same iteration in float64, with the float32 run's draws: the z noise, then CA_NET's eps."""
    run = build(golden_dir, float64=True)
    fix = run['fix']
    z, eps = seeded_draws(fix['seed_before_noise'], _draws(run))
    assert torch.equal(z, fix['noise'])
    with float64_replay([('normal_', z), ('randn', eps)]):
        run['out'] = _call(run)
    return run


@pytest.fixture(scope='module')
def exact(golden_dir):
    """The float64 replay, once for this module (both variants' float32 runs are measured against it)."""
    return replay_step(golden_dir)


@pytest.fixture(scope='module', params=VARIANTS)
def run(golden_dir, request):
    """'original': torch.optim.Adam defaults, as the original. 'fused_adam' (Adam(fused=True), same fp32
    math, other rounding) must stay within the same tolerances."""
    return run_step(golden_dir, request.param)


def check_noise_and_fakes(run, exact):
    fix, out = run['fix'], run['out']
    assert torch.equal(run['noise'], fix['noise'])  # same RNG order: noise first, then CA noise
    assert len(out['fake_imgs']) == len(fix['fake_imgs']) == run['n_d']
    for i, img in enumerate(out['fake_imgs']):
        assert_golden(img, exact['out']['fake_imgs'][i], fix['fake_imgs'][i], f'fake_imgs[{i}]')


def test_noise_and_fakes(run, exact):
    check_noise_and_fakes(run, exact)


def check_losses(run, exact):
    fix, out, out64 = run['fix'], run['out'], exact['out']
    assert len(fix['errD']) == run['n_d']
    for i in range(run['n_d']):
        assert_golden(out[f'errD{i}'], out64[f'errD{i}'], fix['errD'][i], f'errD{i}')
    assert_golden(out['errG_total'], out64['errG_total'], fix['errG_total'], 'errG_total')
    assert_golden(out['kl_loss'], out64['kl_loss'], fix['kl_loss'], 'kl_loss')


def test_losses_and_logs(run, exact):
    check_losses(run, exact)
    fix, out = run['fix'], run['out']
    assert all(not torch.is_tensor(v) or not v.requires_grad for v in out.values())
    D_logs, G_logs = format_logs(out, run['n_d'])
    assert D_logs == fix['D_logs']
    assert G_logs == fix['G_logs']


def _check_grads(got, got64, expected, name):
    assert sorted(got) == sorted(got64) == sorted(expected), f'{name}: parameters with gradients differ'
    for k, (s, norm) in expected.items():
        assert_golden_norm(got[k], got64[k], norm, f'{name}.{k}: grad norm', cap=GRAD_CAP)
        # sums of signed gradients can cancel: the sum rule compares them at the scale of sum |g|
        assert_golden_sum(got[k], got64[k], s, f'{name}.{k}: grad sum', cap=GRAD_CAP)


def check_gradients(run, exact):
    fix, grads, grads64 = run['fix'], run['grads'], exact['grads']
    assert len(fix['D_grads']) == run['n_d']
    for i in range(run['n_d']):
        _check_grads(grads[f'D{i}'], grads64[f'D{i}'], fix['D_grads'][i], f'D{i}')
    _check_grads(grads['G'], grads64['G'], fix['G_grads'], 'G')


def test_gradients_before_each_step(run, exact):
    check_gradients(run, exact)


def adam_flip_bound(grad, grad64, optimizer) -> float:
    """How far the parameter sum may move when the gradient is off by up to K times its noise.

    Adam's first step is lr * g / (|g| + eps), about lr * sign(g): an element whose gradient lies within
    K * noise of zero may step the other way in the fixture's run. Returns
    sum_i max over |g' - g_i| <= K * max|grad - grad64| of |step(g') - step(g_i)|.
    """
    group = optimizer.param_groups[0]
    lr, eps = group['lr'], group['eps']
    w = NOISE_MULTIPLE * (grad - grad64).abs().max().item()

    def step(g):
        return lr * g / (g.abs() + eps)
    s = step(grad)
    return torch.maximum(step(grad + w) - s, s - step(grad - w)).sum().item()


def _check_param_sums(module, module64, grads, grads64, optimizer, expected, name):
    params, params64 = dict(module.named_parameters()), dict(module64.named_parameters())
    assert sorted(params) == sorted(expected)
    for k, s in expected.items():
        flip = adam_flip_bound(grads[k], grads64[k], optimizer) if k in grads else 0.0
        assert_golden_sum(params[k], params64[k], s, f'{name}.{k}: sum after step', extra_tol=flip, cap=None)


def check_parameters(run, exact):
    fix = run['fix']
    _check_param_sums(run['netG'], exact['netG'], run['grads']['G'], exact['grads']['G'], run['optimizerG'],
                      fix['G_params_after'], 'G')
    assert len(fix['D_params_after']) == run['n_d']
    for i, (d, d64, opt) in enumerate(zip(run['netsD'], exact['netsD'], run['optimizersD'])):
        _check_param_sums(d, d64, run['grads'][f'D{i}'], exact['grads'][f'D{i}'], opt, fix['D_params_after'][i],
                          f'D{i}')
    names = [n for n, _ in run['netG'].named_parameters()]
    assert sorted(names) == sorted(fix['G_avg_params_after'])
    grads, grads64 = run['grads']['G'], exact['grads']['G']
    for n, a, a64 in zip(names, run['avg'], exact['avg']):
        flip = adam_flip_bound(grads[n], grads64[n], run['optimizerG']) if n in grads else 0.0
        assert_golden_sum(a, a64, fix['G_avg_params_after'][n], f'G_avg.{n}', extra_tol=(1 - EMA_DECAY) * flip,
                          cap=None)


def test_parameters_after_adam_and_ema(run, exact):
    check_parameters(run, exact)


def check_buffers(run, exact):
    fix = run['fix']
    assert len(fix['D_buffers_after']) == run['n_d']
    mods = [('G', run['netG'], exact['netG'], fix['G_buffers_after'])]
    mods += [(f'D{i}', d, d64, fix['D_buffers_after'][i])
             for i, (d, d64) in enumerate(zip(run['netsD'], exact['netsD']))]
    for name, module, module64_, expected in mods:
        bufs, bufs64 = dict(module.named_buffers()), dict(module64_.named_buffers())
        assert sorted(bufs) == sorted(expected)
        for k, v in expected.items():
            if k.endswith('num_batches_tracked'):
                assert bufs[k].item() == v.item(), f'{name}.{k}'
            else:
                assert_golden(bufs[k], bufs64[k], v, f'{name}.{k}')


def test_buffers_after(run, exact):
    check_buffers(run, exact)


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
def test_cuda_matches_cpu(golden_dir, monkeypatch):
    """Every piece runs on CUDA (no hard-coded device) and gives the CPU numbers; then train_step runs there.
    Random weights; the sizes are train_step.pt's."""
    import copy
    from attngan.losses import discriminator_loss, generator_loss
    from attngan.models import CA_NET
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    fix, rnn = load(golden_dir, 'train_step.pt'), load(golden_dir, 'rnn_encoder.pt')
    cfg = fix['cfg']
    B, nef, n_d = rnn['captions'].size(0), cfg['TEXT.EMBEDDING_DIM'], cfg['TREE.BRANCH_NUM']
    ncf, z_dim, T = cfg['GAN.CONDITION_DIM'], cfg['GAN.Z_DIM'], cfg['TEXT.WORDS_NUM']
    torch.manual_seed(0)
    te = RNN_ENCODER(rnn['vocab'], nhidden=nef).eval().requires_grad_(False)
    ie = CNN_ENCODER(nef, weights='random').eval().requires_grad_(False)
    G = G_NET(cfg['GAN.GF_DIM'], nef, ncf, z_dim, cfg['GAN.R_NUM'], n_d).train()
    Ds = [cls(cfg['GAN.DF_DIM'], nef).train() for cls in (D_NET64, D_NET128, D_NET256)[:n_d]]
    eps = torch.randn(B, ncf)
    monkeypatch.setattr(CA_NET, 'reparametrize',
                        lambda self, mu, logvar: eps.to(mu.device) * torch.exp(0.5 * logvar) + mu)
    captions = torch.randint(1, rnn['vocab'], (B, T))
    cap_lens = torch.linspace(T, max(1, T // 3), B).round().long()  # descending, the longest = WORDS_NUM
    captions[torch.arange(T)[None] >= cap_lens[:, None]] = 0
    z = torch.randn(B, z_dim)
    real = [torch.rand(B, 3, 64 * 2 ** i, 64 * 2 ** i) * 2 - 1 for i in range(n_d)]
    gam = dict(gamma1=cfg['TRAIN.SMOOTH.GAMMA1'], gamma2=cfg['TRAIN.SMOOTH.GAMMA2'],
               gamma3=cfg['TRAIN.SMOOTH.GAMMA3'], lambda_=cfg['TRAIN.SMOOTH.LAMBDA'])
    class_ids = fix['class_ids']

    def pieces(dev):
        t, i, g, ds = (copy.deepcopy(m).to(dev) for m in (te, ie, G, torch.nn.ModuleList(Ds)))
        w, s = t(captions.to(dev), cap_lens, t.init_hidden(B))
        mask = (captions.to(dev) == 0)[:, :w.size(2)]
        fake, att, mu, logvar = g(z.to(dev), s, w, mask)
        ones, zeros = torch.ones(B, device=dev), torch.zeros(B, device=dev)
        errD = [discriminator_loss(d, r.to(dev), f, s, ones, zeros) for d, r, f in zip(ds, real, fake)]
        errG, _, _ = generator_loss(list(ds), i, fake, ones, w, s, torch.arange(B, device=dev), cap_lens,
                                    class_ids.to(dev), **gam)
        errG.backward()
        gn = torch.stack([p.grad.norm() for p in g.parameters()])
        return [x.detach().cpu() for x in (w, s, fake[-1], att[-1], torch.stack(errD), errG, gn)]

    for a, b in zip(pieces('cpu'), pieces('cuda')):
        torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-4)

    dev = torch.device('cuda')
    te, ie, G = te.to(dev), ie.to(dev), G.to(dev)
    Ds = [d.to(dev) for d in Ds]
    opts = [torch.optim.Adam(d.parameters(), lr=fix['adam']['lr'], betas=tuple(fix['adam']['betas'])) for d in Ds]
    optG = torch.optim.Adam(G.parameters(), lr=fix['adam']['lr'], betas=tuple(fix['adam']['betas']))
    avg = copy_G_params(G)
    before = [a.clone() for a in avg]
    step = GANStep(te, ie, G, Ds, optG, opts, avg, batch_size=B, z_dim=z_dim, device=dev, **gam)
    losses, outputs = step([r.to(dev) for r in real], captions.to(dev), cap_lens.to(dev), class_ids.to(dev))
    out = {**losses, **outputs}
    assert out['errG_total'].is_cuda and torch.isfinite(out['errG_total'])
    assert all(a.is_cuda for a in avg) and any(not torch.equal(a, b) for a, b in zip(avg, before))
    format_logs(out, n_d)
