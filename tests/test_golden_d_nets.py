"""D_NET64 / D_NET128 / D_NET256 (b_jcu=True) against d_nets.pt, train and eval mode."""
import pytest
import torch

from attngan.models import D_NET64, D_NET128, D_NET256
from golden_utils import assert_golden, decode_u8, load, module64, to64

D_CLASSES = [D_NET64, D_NET128, D_NET256]
STAGES = [['img_code_s16'],
          ['img_code_s16', 'img_code_s32', 'img_code_s32_1'],
          ['img_code_s16', 'img_code_s32', 'img_code_s64', 'img_code_s64_1', 'img_code_s64_2']]


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'd_nets.pt')


def d_net(fix, i, **kw):
    """D number i of the fixture (its class by position: 64, 128, 256 px), with the stored weights."""
    if i >= len(fix['state_dicts']):
        pytest.skip(f"the fixture has {len(fix['state_dicts'])} discriminators")
    cfg = fix['cfg']
    net = D_CLASSES[i](ndf=cfg['GAN.DF_DIM'], nef=cfg['TEXT.EMBEDDING_DIM'], **kw)
    assert list(net.state_dict()) == list(fix['state_dicts'][i])
    net.load_state_dict(fix['state_dicts'][i])
    return net


def _forward(net, x, conditions):
    caught = {}
    stages = STAGES[D_CLASSES.index(type(net))]
    hooks = [getattr(net, name).register_forward_hook(
        lambda _m, _i, out, name=name: caught.__setitem__(name, out.clone())) for name in stages]
    with torch.no_grad():
        x_code4 = net(x)
        caught.update(x_code4=x_code4, cond_logits=net.COND_DNET(x_code4, conditions),
                      uncond_logits=net.UNCOND_DNET(x_code4))
    for h in hooks:
        h.remove()
    return caught


def check_d_net(fix, i, mode):
    net = d_net(fix, i, b_jcu=True).train(mode == 'train')
    net64 = module64(net)
    x = decode_u8(fix['real_u8'][i])
    got = _forward(net, x, fix['conditions'])
    exact = _forward(net64, to64(x), to64(fix['conditions']))
    exp = fix['results'][i][mode]
    B = x.size(0)
    assert got['cond_logits'].shape == got['uncond_logits'].shape == (B,)
    assert sorted(got) == sorted(exp)
    for name in STAGES[i] + ['x_code4', 'cond_logits', 'uncond_logits']:
        assert_golden(got[name], exact[name], exp[name], f'D{i}.{mode}.{name}')


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('i', range(len(D_CLASSES)))
def test_d_net(fix, i, mode):
    check_d_net(fix, i, mode)


def test_no_uncond_head(fix):
    net = D_NET64(ndf=fix['cfg']['GAN.DF_DIM'], nef=fix['cfg']['TEXT.EMBEDDING_DIM'], b_jcu=False)
    assert net.UNCOND_DNET is None
    assert not any(k.startswith('UNCOND_DNET') for k in net.state_dict())
