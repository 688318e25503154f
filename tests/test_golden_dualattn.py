"""The fork's DualAttn_G_NET against dualattn_g_net.pt, dualattn_g_net_parts.pt, dualattn_g_net_b3.pt
(mattrent/AttnGAN; sizes from the files) and keys_bird_dualattn.txt (layout at the real bird config)."""
import contextlib
import re

import pytest
import torch

from attngan.build import build_discriminators, build_generator
from attngan.config import REPO_ROOT, load_config
from attngan.dualAttnModel import (ChannelAttentionModule, DualAttn_G_NET, DualAttn_NEXT_STAGE_G,
                                   SpatialAttentionModule)
from golden_utils import (assert_golden, check_fill, fill_by_rule, float64_replay, load, module64, seeded, seeded_draws,
                          to64)

MODES = ['train', 'eval']


def parse_listing(path):
    """keys_bird_*.txt -> {module: {'params', 'buffer_elems', 'entries', 'children', 'keys': [(k, shape, kind)]}}"""
    sections, cur = {}, None
    for line in open(path, encoding='utf-8').read().splitlines():
        m = re.match(r'## (\w+)\s+params=(\d+)\s+buffer_elems=(\d+)\s+state_dict_entries=(\d+)', line)
        if m:
            cur = sections[m.group(1)] = dict(params=int(m.group(2)), buffer_elems=int(m.group(3)),
                                              entries=int(m.group(4)), children={}, keys=[])
        elif cur is not None and line.startswith('#   params per top-level child:'):
            cur['children'] = {k.strip(): int(v) for k, v in
                               (item.split('=') for item in line.split(':', 1)[1].split(','))}
        elif cur is not None and line and not line.startswith('#'):
            key, shape, kind = line.split('\t')
            cur['keys'].append((key, [int(s) for s in shape.strip('[]').split(',') if s.strip()], kind))
    return sections


SUB = {'textual_weightedContext': ('dual_attention_module.textual_attention_module', 0),
       'textual_attn_discarded': ('dual_attention_module.textual_attention_module', 1),
       'channel_out': ('dual_attention_module.visual_attention_module.channel_attention_module', None),
       'spatial_out': ('dual_attention_module.visual_attention_module.spatial_attention_module', None),
       'dual_out': ('dual_attention_module', None)}


def _net(cfg, branch_num=None):
    return DualAttn_G_NET(ngf=cfg['GAN.GF_DIM'], nef=cfg['TEXT.EMBEDDING_DIM'], ncf=cfg['GAN.CONDITION_DIM'],
                          z_dim=cfg['GAN.Z_DIM'], r_num=cfg['GAN.R_NUM'],
                          branch_num=branch_num or cfg['TREE.BRANCH_NUM'])


@pytest.fixture(scope='module')
def g_fix(golden_dir):
    return load(golden_dir, 'dualattn_g_net.pt')


@pytest.fixture(scope='module')
def parts_fix(golden_dir):
    return load(golden_dir, 'dualattn_g_net_parts.pt')


@pytest.fixture(scope='module')
def b3_fix(golden_dir):
    return load(golden_dir, 'dualattn_g_net_b3.pt')


@pytest.fixture
def b3_net(b3_fix):
    """Freshly filled for each test (a train-mode forward updates the BN running statistics)."""
    net = _net(b3_fix['cfg'])
    fill_by_rule(net, b3_fix['fill_base'])
    return net


def _run(net, fix, ctx=None):
    """Forward with hooks on h_net1..n and the stage sub-modules, inside ``ctx`` (the seed / the draws);
    returns (outputs, caught)."""
    hooks, caught = [], {}

    def keep(key, idx):
        def hook(_m, _i, out):
            caught[key] = out if idx is None else out[idx]
        return hook
    for k in range(1, net.branch_num + 1):
        stage = getattr(net, f'h_net{k}')
        hooks.append(stage.register_forward_hook(keep(f'h_code{k}', None)))
        if k > 1:
            for name, (path, idx) in SUB.items():
                hooks.append(stage.get_submodule(path).register_forward_hook(keep(f'h_net{k}.{name}', idx)))
    inputs = [fix[k] for k in ('z', 'sent_emb', 'words_emb', 'mask')]
    if next(net.parameters()).dtype == torch.float64:
        inputs = to64(inputs)
    with torch.no_grad(), (ctx or contextlib.nullcontext()):
        out = net(*inputs)
    for h in hooks:
        h.remove()
    return out, caught


def check_forward(net, fix, mode):
    """The float32 forward (seeded as stored) and its float64 replay against the fixture; returns the float32 run."""
    exp = fix[mode]
    net.train(mode == 'train')
    net64 = module64(net)
    spec = [('randn', exp['ca_eps'].shape)]  # CA_NET's draw
    got = _run(net, fix, seeded(exp['seed'], spec))
    exact = _run(net64, fix, float64_replay([('randn', exp['ca_eps'])]))
    (fake_imgs, att_maps, mu, logvar), caught = got
    (fake64, _, mu64, logvar64), caught64 = exact
    assert len(att_maps) == exp['att_maps_len'] == 0  # fork defect: maps thrown away
    assert len(fake_imgs) == len(exp['fake_imgs']) == net.branch_num == fix['cfg']['TREE.BRANCH_NUM']
    for i, img in enumerate(fake_imgs):
        assert_golden(img, fake64[i], exp['fake_imgs'][i], f'{mode}.fake_imgs[{i}]')
    assert_golden(mu, mu64, exp['mu'], f'{mode}.mu')
    assert_golden(logvar, logvar64, exp['logvar'], f'{mode}.logvar')
    for k in range(1, net.branch_num + 1):
        assert_golden(caught[f'h_code{k}'], caught64[f'h_code{k}'], exp[f'h_code{k}'], f'{mode}.h_code{k}')
        if k > 1:
            assert sorted(exp[f'h_net{k}']) == sorted(SUB)
            for name in SUB:
                key = f'h_net{k}.{name}'
                assert_golden(caught[key], caught64[key], exp[f'h_net{k}'][name], f'{mode}.{key}')
    eps, = seeded_draws(exp['seed'], spec)
    assert eps.shape == mu.shape and torch.equal(eps, exp['ca_eps'])
    assert_golden(eps * torch.exp(0.5 * logvar) + mu, eps.double() * torch.exp(0.5 * logvar64) + mu64,
                  exp['c_code'], f'{mode}.c_code')
    return got


def _check_forward(net, fix, mode):
    exp = fix[mode]
    (fake_imgs, _, _, _), _ = check_forward(net, fix, mode)
    # only CA_NET's draw touches the global RNG (this torch's own draws), and reruns are bit-identical
    torch.manual_seed(exp['seed'])
    torch.randn(exp['ca_eps'].shape)
    expected_state = torch.get_rng_state()
    torch.manual_seed(exp['seed'])
    _run(net, fix)
    assert torch.equal(torch.get_rng_state(), expected_state)
    (fake2, _, _, _), _ = _run(net, fix, seeded(exp['seed'], [('randn', exp['ca_eps'].shape)]))
    assert torch.equal(fake2[-1], fake_imgs[-1])


def g_net(g_fix):
    net = _net(g_fix['cfg'])
    net.load_state_dict(g_fix['state_dict'])
    assert list(net.state_dict()) == list(g_fix['state_dict'])
    return net


@pytest.mark.parametrize('mode', MODES)
def test_dualattn_g_net(g_fix, mode):
    _check_forward(g_net(g_fix), g_fix, mode)


def _parts(net, fix, ctx):
    """Every submodule call of dualattn_g_net_parts.pt -> {name: output} (names as the fixture's, flattened).
    ctx: around the CA_NET call (its seed, or a float64_replay with its draw)."""
    inputs = {k: fix[k] for k in ('X', 'z', 'sent_emb', 'words_emb', 'mask')}
    if next(net.parameters()).dtype == torch.float64:
        inputs = to64(inputs)
    X, words, mask = inputs['X'], inputs['words_emb'], inputs['mask']
    dual = net.h_net2.dual_attention_module
    cam = dual.visual_attention_module.channel_attention_module
    sam = dual.visual_attention_module.spatial_attention_module
    inner = {}

    def collect_inner(key):
        def hook(_m, _i, out):
            inner.setdefault(key, []).append(out)
        return hook
    hooks = [cam.conv.register_forward_hook(collect_inner('conv_maxP_avgP')),
             cam.linear_1.register_forward_hook(collect_inner('linear_1_maxP_avgP')),
             cam.linear_2.register_forward_hook(collect_inner('linear_2_maxP_avgP')),
             cam.conv_t.register_forward_hook(collect_inner('conv_t_pre_sigmoid'))]
    out = {}
    with torch.no_grad():
        with ctx:
            c_code, out['ca_net.mu'], out['ca_net.logvar'] = net.ca_net(inputs['sent_emb'])
        out['ca_net.c_code'] = c_code
        out['h_net1.h_code'] = net.h_net1(inputs['z'], c_code)
        out['channel_attention.out'] = cam(X)
        for h in hooks:
            h.remove()
        for key, vals in inner.items():
            if key == 'conv_t_pre_sigmoid':
                assert len(vals) == 1
                out[f'channel_attention_inner.{key}'] = vals[0]
            else:  # the max-pooled and the avg-pooled branch
                for j, v in enumerate(vals):
                    out[f'channel_attention_inner.{key}[{j}]'] = v
        out['spatial_attention.out'] = sam(X)
        out['visual_attention.out'] = dual.visual_attention_module(X)
        out['textual_attention.weightedContext'], out['textual_attention.attn'] = \
            dual.textual_attention_module(X, words, mask)
        out['dual_attention.out'] = dual(X, words, mask)
        out['h_net2.out'] = net.h_net2(X, words, mask)
        ih, iw = fix['train']['img_net1']['out'].shape[-2:]  # img_net1 gets a corner of X
        out['img_net1.out'] = net.img_net1(X[:, :, :ih, :iw])
    return out


def _flatten_expected(exp):
    flat = {}
    for part, fields in exp.items():
        for field, v in fields.items():
            if field == 'seed':
                continue
            if isinstance(v, (list, tuple)):
                for j, t in enumerate(v):
                    flat[f'{part}.{field}[{j}]'] = t
            else:
                flat[f'{part}.{field}'] = v
    return flat


def check_parts(g_fix, parts_fix, mode):
    net = g_net(g_fix).train(mode == 'train')
    net64 = module64(net)
    exp = parts_fix[mode]
    spec = [('randn', exp['ca_net']['mu'].shape)]  # CA_NET's draw
    got = _parts(net, parts_fix, seeded(exp['ca_net']['seed'], spec))
    eps, = seeded_draws(exp['ca_net']['seed'], spec)
    exact = _parts(net64, parts_fix, float64_replay([('randn', eps)]))
    expected = _flatten_expected(exp)
    assert sorted(got) == sorted(expected)
    for name in got:
        assert_golden(got[name], exact[name], expected[name], f'{mode}.{name}')


@pytest.mark.parametrize('mode', MODES)
def test_dualattn_g_net_parts(g_fix, parts_fix, mode):
    check_parts(g_fix, parts_fix, mode)


def test_b3_fill_rule(b3_net, b3_fix):
    check_fill(b3_net, b3_fix)
    assert sum(p.numel() for p in b3_net.parameters()) == b3_fix['n_params']
    assert b3_net.branch_num == b3_fix['cfg']['TREE.BRANCH_NUM']


@pytest.mark.parametrize('mode', MODES)
def test_dualattn_g_net_b3(b3_net, b3_fix, mode):
    _check_forward(b3_net, b3_fix, mode)


def test_channel_gate_defect(g_fix, parts_fix):
    """Fork defect: 3 of 4 gate positions are sigmoid(conv_t.bias), whatever the input."""
    net = g_net(g_fix)
    cam = net.h_net2.dual_attention_module.visual_attention_module.channel_attention_module
    X = parts_fix['X']
    with torch.no_grad():
        gate = cam(torch.ones_like(X))  # gate * 1
        gate2 = cam(X + 1.0) / (X + 1.0)
    bias_gate = torch.sigmoid(cam.conv_t.bias)[None, :, None, None]
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        torch.testing.assert_close(gate[:, :, dy::2, dx::2], bias_gate.expand_as(gate[:, :, dy::2, dx::2]))
    assert not torch.allclose(gate[:, :, 0::2, 0::2], gate2[:, :, 0::2, 0::2])


def test_fork_constraints(g_fix, listing):
    cfg = g_fix['cfg']
    ngf, nef, ncf, z_dim, r_num = (cfg[k] for k in ('GAN.GF_DIM', 'TEXT.EMBEDDING_DIM', 'GAN.CONDITION_DIM',
                                                    'GAN.Z_DIM', 'GAN.R_NUM'))
    with pytest.raises(ValueError, match='GF_DIM'):
        DualAttn_G_NET(ngf + 4, nef, ncf, z_dim, r_num, cfg['TREE.BRANCH_NUM'])  # not a multiple of 8
    with pytest.raises(ValueError, match='BRANCH_NUM'):
        DualAttn_G_NET(ngf, nef, ncf, z_dim, r_num, 4)
    grid = 64  # the fork's stage-2 grid, built in
    stage = DualAttn_NEXT_STAGE_G(grid, ngf, nef, ncf, 1)
    B = g_fix['z'].size(0)
    with pytest.raises(ValueError, match=f'{grid}x{grid}'):
        stage(torch.zeros(B, ngf, grid // 2, grid // 2), torch.zeros(B, nef, 5), None)
    # the 128-px stage's linear_2 at the bird config, as keys_bird_dualattn.txt lists it
    bird_ngf = load_config(REPO_ROOT / 'cfg' / 'bird_dualattn.yml').GAN.GF_DIM
    key = 'h_net3.dual_attention_module.visual_attention_module.channel_attention_module.linear_2.weight'
    shapes = {k: shape for k, shape, _ in listing['DualAttn_G_NET']['keys']}
    assert list(ChannelAttentionModule(2 * grid, bird_ngf).linear_2.weight.shape) == shapes[key]
    # softmax over channels: the spatial module's output sums of attention weights are per-position 1
    sam = SpatialAttentionModule(grid, ngf)
    torch.nn.init.eye_(sam.conv_h.weight.view(ngf, ngf))
    with torch.no_grad():
        out = sam(torch.ones(1, ngf, grid, grid))  # h == 1 everywhere -> output = attention weights, summing to 1
    torch.testing.assert_close(out.sum(1), torch.ones(1, grid, grid))


# ------------------------------------------------------------------ layout at the real bird config
@pytest.fixture(scope='module')
def listing(golden_dir):
    return parse_listing(golden_dir / 'keys_bird_dualattn.txt')


@pytest.fixture(scope='module')
def bird_nets():
    cfg = load_config(REPO_ROOT / 'cfg' / 'bird_dualattn.yml')
    nets = {'DualAttn_G_NET': build_generator(cfg, init_weights=False)}
    for net in build_discriminators(cfg, init_weights=False):
        nets[type(net).__name__] = net
    return nets


@pytest.mark.parametrize('name', ['DualAttn_G_NET', 'D_NET64', 'D_NET128', 'D_NET256'])
def test_layout_bird_dualattn(listing, bird_nets, name):
    exp, net = listing[name], bird_nets[name]
    assert type(net).__name__ == name
    params = dict(net.named_parameters())
    got = [(k, list(v.shape), 'param' if k in params else 'buffer') for k, v in net.state_dict().items()]
    assert len(got) == exp['entries']
    for n, (g, e) in enumerate(zip(got, exp['keys'])):
        assert g == e, f'{name} entry {n}: {g} != {e}'
    assert sum(p.numel() for p in params.values()) == exp['params']
    assert sum(b.numel() for b in net.buffers()) == exp['buffer_elems']
    children = {c: sum(p.numel() for p in m.parameters()) for c, m in net.named_children()}
    assert {c: n for c, n in children.items() if n or c in exp['children']} == exp['children']
