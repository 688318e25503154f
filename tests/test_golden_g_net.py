"""G_NET and its stages against g_net.pt / g_net_parts.pt (original AttnGAN; sizes and stages from the files)."""
import contextlib

import pytest
import torch

from attngan.models import G_NET, G_DCGAN
from golden_utils import assert_golden, collect, float64_replay, load, module64, seeded, seeded_draws, to64

MODES = ['train', 'eval']


def _cfg_net(cfg, **kw):
    kw.setdefault('branch_num', cfg['TREE.BRANCH_NUM'])
    return G_NET(ngf=cfg['GAN.GF_DIM'], nef=cfg['TEXT.EMBEDDING_DIM'], ncf=cfg['GAN.CONDITION_DIM'],
                 z_dim=cfg['GAN.Z_DIM'], r_num=cfg['GAN.R_NUM'], **kw)


@pytest.fixture(scope='module')
def g_fix(golden_dir):
    return load(golden_dir, 'g_net.pt')


@pytest.fixture(scope='module')
def parts_fix(golden_dir):
    return load(golden_dir, 'g_net_parts.pt')


def _net(g_fix, mode, **kw):
    net = _cfg_net(g_fix['cfg'], **kw)
    net.load_state_dict(g_fix['state_dict'])
    return net.train(mode == 'train')


def _stages(net):
    return range(1, net.branch_num + 1)


def _ca_draw(exp):
    return [('randn', exp['ca_eps'].shape)]  # CA_NET's draw: randn(B, CONDITION_DIM)


def _run(net, fix, ctx=None):
    """netG(z, sent_emb, words_emb, mask) with hooks on h_net1..n, inside ``ctx`` (the seed / the draws)."""
    hooks, caught = [], {}
    for k in _stages(net):
        def hook(_m, _i, out, k=k):
            caught[f'h_code{k}'] = out[0] if isinstance(out, tuple) else out
        hooks.append(getattr(net, f'h_net{k}').register_forward_hook(hook))
    inputs = [fix[k] for k in ('z', 'sent_emb', 'words_emb', 'mask')]
    if next(net.parameters()).dtype == torch.float64:
        inputs = to64(inputs)
    with torch.no_grad(), (ctx or contextlib.nullcontext()):
        out = net(*inputs)
    for h in hooks:
        h.remove()
    return out, caught


def run_g_net(g_fix, mode, **kw):
    """The float32 run (seeded as stored) and its float64 replay (with the stored CA draw); nets are fresh."""
    exp = g_fix[mode]
    net = _net(g_fix, mode, **kw)
    net64 = module64(net)  # before the float32 run moves the BN statistics
    got = _run(net, g_fix, seeded(exp['seed'], _ca_draw(exp)))
    exact = _run(net64, g_fix, float64_replay([('randn', exp['ca_eps'])]))
    buffers = [{k: b.clone() for k, b in m.named_buffers()} for m in (net, net64)]  # after this one forward
    return net, buffers, got, exact


def check_g_net_outputs(g_fix, mode, got, exact):
    exp = g_fix[mode]
    (fake_imgs, att_maps, mu, logvar), caught = got
    (fake64, att64, mu64, logvar64), caught64 = exact
    n = g_fix['cfg']['TREE.BRANCH_NUM']
    assert len(fake_imgs) == len(exp['fake_imgs']) == n and len(att_maps) == len(exp['att_maps']) == n - 1
    for i, img in enumerate(fake_imgs):
        assert_golden(img, fake64[i], exp['fake_imgs'][i], f'{mode}.fake_imgs[{i}]')
    for j, att in enumerate(att_maps):
        assert_golden(att, att64[j], exp['att_maps'][j], f'{mode}.att_maps[{j}]')
    assert_golden(mu, mu64, exp['mu'], f'{mode}.mu')
    assert_golden(logvar, logvar64, exp['logvar'], f'{mode}.logvar')
    assert sorted(caught) == sorted(k for k in exp if k.startswith('h_code'))
    for name in caught:
        assert_golden(caught[name], caught64[name], exp[name], f'{mode}.{name}')
    # CA noise: randn(B, CONDITION_DIM) from the global generator, in eval mode too
    eps, = seeded_draws(exp['seed'], _ca_draw(exp))
    assert eps.shape == mu.shape and torch.equal(eps, exp['ca_eps'])
    assert_golden(eps * torch.exp(0.5 * logvar) + mu, eps.double() * torch.exp(0.5 * logvar64) + mu64,
                  exp['c_code'], f'{mode}.c_code')


def check_g_net_forward(g_fix, mode, **kw):
    net, _, got, exact = run_g_net(g_fix, mode, **kw)
    check_g_net_outputs(g_fix, mode, got, exact)


@pytest.fixture(scope='module')
def g_runs(g_fix):
    """run_g_net per mode, computed once for this module (the float64 replays are the slow part)."""
    return {mode: run_g_net(g_fix, mode) for mode in MODES}


@pytest.mark.parametrize('mode', MODES)
def test_g_net_forward(g_fix, g_runs, mode):
    exp = g_fix[mode]
    net, _, got, exact = g_runs[mode]
    check_g_net_outputs(g_fix, mode, got, exact)
    (fake_imgs, _, _, _), _ = got
    # the generator consumes exactly that one draw from the global RNG (this torch's own draws), and reruns
    # are identical
    torch.manual_seed(exp['seed'])
    torch.randn(exp['ca_eps'].shape)
    expected_state = torch.get_rng_state()
    torch.manual_seed(exp['seed'])
    _run(net, g_fix)
    assert torch.equal(torch.get_rng_state(), expected_state)
    (fake2, _, _, _), _ = _run(net, g_fix, seeded(exp['seed'], _ca_draw(exp)))
    assert torch.equal(fake2[-1], fake_imgs[-1])


def test_g_net_buffers_after_one_train_forward(g_fix, g_runs):
    _, (bufs, bufs64), _, _ = g_runs['train']
    exp = g_fix['train']['buffers_after_one_forward']
    assert sorted(bufs) == sorted(exp)
    for k, v in exp.items():
        if k.endswith('num_batches_tracked'):
            assert bufs[k].item() == v.item() == 1, k
        else:
            assert_golden(bufs[k], bufs64[k], v, k)


def test_fixed_mask_changes_later_stages(g_fix):
    """The original mixes samples' masks; the fix_attn_mask flag must change the later stages only."""
    exp = g_fix['eval']
    _, _, ((fake, _, _, _), _), ((fake64, _, _, _), _) = run_g_net(g_fix, 'eval', fix_attn_mask=True)
    assert_golden(fake[0], fake64[0], exp['fake_imgs'][0], 'fixed.fake_imgs[0]')
    assert len(fake) > 1
    for i in range(1, len(fake)):
        with collect() as records:
            assert_golden(fake[i], fake64[i], exp['fake_imgs'][i], f'fixed.fake_imgs[{i}]')
        assert max(r['ratio'] for r in records) > 1, f'fixed mask: stage {i + 1} unchanged'


def _parts(net, inp, ctx):
    """Every submodule call of g_net_parts.pt -> {name: output}; the CA_NET call runs inside ``ctx``
    (seeded as stored, or a float64_replay that hands it the draw)."""
    out = {}
    with torch.no_grad():
        with ctx:
            out['ca_net.c_code'], out['ca_net.mu'], out['ca_net.logvar'] = net.ca_net(inp['sent_emb'])
        out['h_net1.h_code'] = net.h_net1(inp['z'], inp['c_code'])
        for k in range(2, net.branch_num + 1):
            stage = getattr(net, f'h_net{k}')
            out[f'h_net{k}.out'], out[f'h_net{k}.att'] = stage(inp[f'h_small_net{k}'], inp['c_code'],
                                                              inp['words_emb'], inp['mask'])
            # Original quirk: NEXT_STAGE_G ignores c_code
            out2, _ = stage(inp[f'h_small_net{k}'], None, inp['words_emb'], inp['mask'])
            assert torch.equal(out[f'h_net{k}.out'], out2)
        for k in _stages(net):
            out[f'img_net{k}.out'] = getattr(net, f'img_net{k}')(inp['img_net_inputs'][k - 1])
    return out


def check_g_net_parts(g_fix, parts_fix, mode):
    net = _net(g_fix, mode)
    net64 = module64(net)
    inp, exp = parts_fix['inputs'], parts_fix[mode]
    spec = [('randn', exp['ca_net']['mu'].shape)]  # CA_NET's draw
    got = _parts(net, inp, seeded(exp['ca_net']['seed'], spec))
    eps, = seeded_draws(exp['ca_net']['seed'], spec)
    exact = _parts(net64, to64(inp), float64_replay([('randn', eps)]))
    expected = {f'{part}.{field}': v for part, d in exp.items() if isinstance(d, dict) for field, v in d.items()
                if field != 'seed'}
    assert sorted(got) == sorted(expected)
    assert len(inp['img_net_inputs']) == net.branch_num
    for name in got:
        assert_golden(got[name], exact[name], expected[name], f'{mode}.{name}')


@pytest.mark.parametrize('mode', MODES)
def test_g_net_parts(g_fix, parts_fix, mode):
    check_g_net_parts(g_fix, parts_fix, mode)


def test_g_dcgan_shares_keys_with_one_image_net(g_fix):
    cfg = g_fix['cfg']
    n = cfg['TREE.BRANCH_NUM']
    net = G_DCGAN(ngf=cfg['GAN.GF_DIM'], nef=cfg['TEXT.EMBEDDING_DIM'], ncf=cfg['GAN.CONDITION_DIM'],
                  z_dim=cfg['GAN.Z_DIM'], r_num=cfg['GAN.R_NUM'], branch_num=n).eval()
    sd = {k: v for k, v in g_fix['state_dict'].items() if not k.startswith('img_net')}
    sd['img_net.img.0.weight'] = g_fix['state_dict'][f'img_net{n}.img.0.weight']
    net.load_state_dict(sd)
    net64 = module64(net)
    exp = g_fix['eval']
    (fake, att, _, _), _ = _run(net, g_fix, seeded(exp['seed'], _ca_draw(exp)))
    (fake64, _, _, _), _ = _run(net64, g_fix, float64_replay([('randn', exp['ca_eps'])]))
    assert len(fake) == 1 and len(att) == n - 1
    assert_golden(fake[0], fake64[0], exp['fake_imgs'][-1], 'G_DCGAN image (= G_NET last stage with its weights)')


def test_bad_branch_num(g_fix):
    with pytest.raises(ValueError, match='BRANCH_NUM'):
        _cfg_net(g_fix['cfg'], branch_num=4)
