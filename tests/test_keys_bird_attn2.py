"""Modules built by attngan.build at the real CUB-bird config have the original's state_dict layout
(keys_bird_attn2.txt: keys, shapes, param/buffer kind, order, parameter counts)."""
import logging
import re

import pytest
import torch

from attngan.build import build_discriminators, build_generator, build_image_encoder, build_text_encoder
from attngan.config import REPO_ROOT, load_config

def parse_listing(path):
    """{module: {'params', 'buffer_elems', 'entries', 'children': {name: n}, 'keys': [(k, shape, kind)]}}"""
    sections, cur = {}, None
    for line in open(path, encoding='utf-8').read().splitlines():
        m = re.match(r'## (\w+)\s+params=(\d+)\s+buffer_elems=(\d+)\s+state_dict_entries=(\d+)', line)
        if m:
            cur = sections[m.group(1)] = dict(params=int(m.group(2)), buffer_elems=int(m.group(3)),
                                              entries=int(m.group(4)), children={}, keys=[])
        elif cur is not None and line.startswith('#   params per top-level child:'):
            for item in line.split(':', 1)[1].split(','):
                name, n = item.strip().split('=')
                cur['children'][name] = int(n)
        elif cur is not None and line and not line.startswith('#'):
            key, shape, kind = line.split('\t')
            cur['keys'].append((key, [int(s) for s in shape.strip('[]').split(',') if s.strip()], kind))
    return sections


@pytest.fixture(scope='module')
def listing(golden_dir):
    sections = parse_listing(golden_dir / 'keys_bird_attn2.txt')
    sections['_path'] = golden_dir / 'keys_bird_attn2.txt'
    return sections


def _shapes(section):
    return {k: shape for k, shape, _ in section['keys']}


@pytest.fixture(scope='module')
def built(listing):
    gan_cfg = load_config(REPO_ROOT / 'cfg' / 'bird_attn2.yml')
    damsm_cfg = load_config(REPO_ROOT / 'cfg' / 'DAMSM' / 'bird.yml', ['DAMSM.INCEPTION_WEIGHTS=random'])
    nets = {'G_NET': build_generator(gan_cfg, init_weights=False)}
    for net in build_discriminators(gan_cfg, init_weights=False):
        nets[type(net).__name__] = net
    n_words = _shapes(listing['RNN_ENCODER'])['encoder.weight'][0]  # CUB vocabulary of the released encoders
    nets['RNN_ENCODER'] = build_text_encoder(damsm_cfg, n_words)
    nets['CNN_ENCODER'] = build_image_encoder(damsm_cfg)
    return nets


@pytest.mark.parametrize('name', ['G_NET', 'D_NET64', 'D_NET128', 'D_NET256', 'RNN_ENCODER', 'CNN_ENCODER'])
def test_layout(listing, built, name):
    exp, net = listing[name], built[name]
    params = dict(net.named_parameters())
    buffers = dict(net.named_buffers())
    got = [(k, list(v.shape), 'param' if k in params else 'buffer') for k, v in net.state_dict().items()]
    assert len(got) == exp['entries']
    for n, (g, e) in enumerate(zip(got, exp['keys'])):
        assert g == e, f'{name} entry {n}: {g} != {e}'
    assert sum(p.numel() for p in params.values()) == exp['params']
    assert sum(b.numel() for b in buffers.values()) == exp['buffer_elems']
    children = {c: sum(p.numel() for p in m.parameters()) for c, m in net.named_children()}
    children = {c: n for c, n in children.items() if n or c in exp['children']}  # listing omits Dropout
    assert children == exp['children']


def test_image_encoder_trainable_part(listing, built):
    """Only emb_features and emb_cnn_code train (the listing's header: 'trainable emb_features+emb_cnn_code=N')."""
    trainable = sum(p.numel() for p in built['CNN_ENCODER'].parameters() if p.requires_grad)
    children = listing['CNN_ENCODER']['children']
    assert trainable == children['emb_features'] + children['emb_cnn_code']
    header = open(listing['_path'], encoding='utf-8').read()
    m = re.search(r'trainable emb_features\+emb_cnn_code=(\d+)', header)
    assert m and trainable == int(m.group(1))


def test_parameter_counts_are_logged(listing, caplog):
    cfg = load_config(REPO_ROOT / 'cfg' / 'bird_attn2.yml', ['TREE.BRANCH_NUM=1'])
    with caplog.at_level(logging.INFO, logger='attngan.build'):
        build_generator(cfg, init_weights=False)
        build_discriminators(cfg, init_weights=False)
    assert 'G_NET: ' in caplog.text and f"D_NET64: {listing['D_NET64']['params']:,} parameters" in caplog.text


def test_nef_forced_to_256_outside_training():
    cfg = load_config(REPO_ROOT / 'cfg' / 'DAMSM' / 'bird.yml',
                      ['DAMSM.INCEPTION_WEIGHTS=random', 'TEXT.EMBEDDING_DIM=32', 'TRAIN.FLAG=False'])
    assert build_image_encoder(cfg).nef == 256
    cfg.TRAIN.FLAG = True
    assert build_image_encoder(cfg).nef == 32


def test_dcgan_dispatch():
    cfg = load_config(REPO_ROOT / 'cfg' / 'bird_attnDCGAN2.yml', ['GAN.GF_DIM=8', 'GAN.DF_DIM=4'])
    g = build_generator(cfg, init_weights=False)
    ds = build_discriminators(cfg, init_weights=False)
    assert type(g).__name__ == 'G_DCGAN'
    assert len(ds) == 1 and ds[0].UNCOND_DNET is None
    assert type(ds[0]).__name__ == ['D_NET64', 'D_NET128', 'D_NET256'][cfg.TREE.BRANCH_NUM - 1]


def test_builders_apply_original_init():
    cfg = load_config(REPO_ROOT / 'cfg' / 'bird_attn2.yml', ['GAN.GF_DIM=4', 'TREE.BRANCH_NUM=2'])
    g = build_generator(cfg)
    w = g.h_net2.upsample[1].weight.flatten(1)  # orthogonal rows (rows < cols)
    torch.testing.assert_close(w @ w.t(), torch.eye(w.size(0)), atol=1e-5, rtol=0)
    assert torch.all(g.ca_net.fc.bias == 0)
