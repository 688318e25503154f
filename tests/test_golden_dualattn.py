"""The fork's DualAttn_G_NET against dualattn_g_net.pt, dualattn_g_net_parts.pt, dualattn_g_net_b3.pt
(mattrent/AttnGAN, GF_DIM 8) and keys_bird_dualattn.txt (layout at the real bird config)."""
import re

import pytest
import torch

from attngan.build import build_discriminators, build_generator
from attngan.config import REPO_ROOT, load_config
from attngan.dualAttnModel import (ChannelAttentionModule, DualAttn_G_NET, DualAttn_NEXT_STAGE_G,
                                   SpatialAttentionModule)
from golden_utils import assert_close, check_fill, fill_by_rule, load

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


def _run(net, fix, seed):
    """Forward with hooks on h_net1..3 and the stage sub-modules; returns (outputs, caught)."""
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
    torch.manual_seed(seed)
    with torch.no_grad():
        out = net(fix['z'], fix['sent_emb'], fix['words_emb'], fix['mask'])
    for h in hooks:
        h.remove()
    return out, caught


def _check_forward(net, fix, mode):
    exp = fix[mode]
    net.train(mode == 'train')
    (fake_imgs, att_maps, mu, logvar), caught = _run(net, fix, exp['seed'])
    assert len(att_maps) == exp['att_maps_len'] == 0  # fork defect: maps thrown away
    assert len(fake_imgs) == net.branch_num
    for i, img in enumerate(fake_imgs):
        assert_close(img, exp['fake_imgs'][i], f'{mode}.fake_imgs[{i}]')
    assert_close(mu, exp['mu'], f'{mode}.mu')
    assert_close(logvar, exp['logvar'], f'{mode}.logvar')
    for k in range(1, net.branch_num + 1):
        assert_close(caught[f'h_code{k}'], exp[f'h_code{k}'], f'{mode}.h_code{k}')
        if k > 1:
            for name in SUB:
                assert_close(caught[f'h_net{k}.{name}'], exp[f'h_net{k}'][name], f'{mode}.h_net{k}.{name}')
    torch.manual_seed(exp['seed'])
    eps = torch.randn(exp['ca_eps'].shape)
    assert torch.equal(eps, exp['ca_eps'])
    assert_close(eps * torch.exp(0.5 * logvar) + mu, exp['c_code'], f'{mode}.c_code')
    # only CA_NET's draw touches the global RNG, and reruns are bit-identical
    expected_state = torch.get_rng_state()
    (fake2, _, _, _), _ = _run(net, fix, exp['seed'])
    assert torch.equal(torch.get_rng_state(), expected_state)
    assert torch.equal(fake2[-1], fake_imgs[-1])


@pytest.mark.parametrize('mode', MODES)
def test_dualattn_g_net(g_fix, mode):
    net = _net(g_fix['cfg'])
    net.load_state_dict(g_fix['state_dict'])
    assert list(net.state_dict()) == list(g_fix['state_dict'])
    _check_forward(net, g_fix, mode)


@pytest.mark.parametrize('mode', MODES)
def test_dualattn_g_net_parts(g_fix, parts_fix, mode):
    net = _net(g_fix['cfg']).train(mode == 'train')
    net.load_state_dict(g_fix['state_dict'])
    exp, X = parts_fix[mode], parts_fix['X']
    dual = net.h_net2.dual_attention_module
    cam = dual.visual_attention_module.channel_attention_module
    inner = {}

    def collect(key):
        def hook(_m, _i, out):
            inner.setdefault(key, []).append(out)
        return hook
    hooks = [cam.conv.register_forward_hook(collect('conv_maxP_avgP')),
             cam.linear_1.register_forward_hook(collect('linear_1_maxP_avgP')),
             cam.linear_2.register_forward_hook(collect('linear_2_maxP_avgP')),
             cam.conv_t.register_forward_hook(collect('conv_t_pre_sigmoid'))]
    with torch.no_grad():
        torch.manual_seed(exp['ca_net']['seed'])
        c_code, mu, logvar = net.ca_net(parts_fix['sent_emb'])
        for name, val in (('c_code', c_code), ('mu', mu), ('logvar', logvar)):
            assert_close(val, exp['ca_net'][name], f'{mode}.ca_net.{name}')
        assert_close(net.h_net1(parts_fix['z'], c_code), exp['h_net1']['h_code'], f'{mode}.h_net1')
        assert_close(cam(X), exp['channel_attention']['out'], f'{mode}.channel_attention')
        for h in hooks:
            h.remove()
        for key, vals in inner.items():
            if key == 'conv_t_pre_sigmoid':
                assert_close(vals[0], exp['channel_attention_inner'][key], f'{mode}.{key}')
            else:
                assert len(vals) == 2
                for j in range(2):
                    assert_close(vals[j], exp['channel_attention_inner'][key][j], f'{mode}.{key}[{j}]')
        sam = dual.visual_attention_module.spatial_attention_module
        assert_close(sam(X), exp['spatial_attention']['out'], f'{mode}.spatial_attention')
        assert_close(dual.visual_attention_module(X), exp['visual_attention']['out'], f'{mode}.visual_attention')
        ctx, attn = dual.textual_attention_module(X, parts_fix['words_emb'], parts_fix['mask'])
        assert_close(ctx, exp['textual_attention']['weightedContext'], f'{mode}.textual.weightedContext')
        assert_close(attn, exp['textual_attention']['attn'], f'{mode}.textual.attn')
        assert_close(dual(X, parts_fix['words_emb'], parts_fix['mask']), exp['dual_attention']['out'],
                     f'{mode}.dual_attention')
        assert_close(net.h_net2(X, parts_fix['words_emb'], parts_fix['mask']), exp['h_net2']['out'],
                     f'{mode}.h_net2')
        assert_close(net.img_net1(X[:, :, :16, :16]), exp['img_net1']['out'], f'{mode}.img_net1')


def test_b3_fill_rule(b3_net, b3_fix):
    check_fill(b3_net, b3_fix)
    assert sum(p.numel() for p in b3_net.parameters()) == b3_fix['n_params'] == 2675610


@pytest.mark.parametrize('mode', MODES)
def test_dualattn_g_net_b3(b3_net, b3_fix, mode):
    _check_forward(b3_net, b3_fix, mode)


def test_channel_gate_defect(g_fix, parts_fix):
    """Fork defect: 3 of 4 gate positions are sigmoid(conv_t.bias), whatever the input."""
    net = _net(g_fix['cfg'])
    net.load_state_dict(g_fix['state_dict'])
    cam = net.h_net2.dual_attention_module.visual_attention_module.channel_attention_module
    X = parts_fix['X']
    with torch.no_grad():
        gate = cam(torch.ones_like(X))  # gate * 1
        gate2 = cam(X + 1.0) / (X + 1.0)
    bias_gate = torch.sigmoid(cam.conv_t.bias)[None, :, None, None]
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        torch.testing.assert_close(gate[:, :, dy::2, dx::2], bias_gate.expand_as(gate[:, :, dy::2, dx::2]))
    assert not torch.allclose(gate[:, :, 0::2, 0::2], gate2[:, :, 0::2, 0::2])


def test_fork_constraints():
    with pytest.raises(ValueError, match='GF_DIM'):
        DualAttn_G_NET(12, 32, 16, 16, 2, 2)
    with pytest.raises(ValueError, match='BRANCH_NUM'):
        DualAttn_G_NET(8, 32, 16, 16, 2, 4)
    stage = DualAttn_NEXT_STAGE_G(64, 8, 32, 16, 1)
    with pytest.raises(ValueError, match='64x64'):
        stage(torch.zeros(2, 8, 32, 32), torch.zeros(2, 32, 5), None)
    assert ChannelAttentionModule(128, 32).linear_2.weight.shape == (16384, 2048)
    # softmax over channels: the spatial module's output sums of attention weights are per-position 1
    sam = SpatialAttentionModule(64, 8)
    torch.nn.init.eye_(sam.conv_h.weight.view(8, 8))
    with torch.no_grad():
        out = sam(torch.ones(1, 8, 64, 64))  # h == 1 everywhere -> output = attention weights, summing to 1
    torch.testing.assert_close(out.sum(1), torch.ones(1, 64, 64))


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
