"""D_NET64 / D_NET128 / D_NET256 (b_jcu=True) against d_nets.pt, train and eval mode."""
import pytest
import torch

from attngan.models import D_NET64, D_NET128, D_NET256
from golden_utils import assert_close, decode_u8, load

D_CLASSES = [D_NET64, D_NET128, D_NET256]
STAGES = [['img_code_s16'],
          ['img_code_s16', 'img_code_s32', 'img_code_s32_1'],
          ['img_code_s16', 'img_code_s32', 'img_code_s64', 'img_code_s64_1', 'img_code_s64_2']]


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'd_nets.pt')


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('i', [0, 1, 2])
def test_d_net(fix, i, mode):
    cfg = fix['cfg']
    net = D_CLASSES[i](ndf=cfg['GAN.DF_DIM'], nef=cfg['TEXT.EMBEDDING_DIM'], b_jcu=True)
    assert list(net.state_dict()) == list(fix['state_dicts'][i])
    net.load_state_dict(fix['state_dicts'][i])
    net.train(mode == 'train')
    caught = {}
    for name in STAGES[i]:
        getattr(net, name).register_forward_hook(
            lambda _m, _i, out, name=name: caught.__setitem__(name, out.clone()))
    exp = fix['results'][i][mode]
    with torch.no_grad():
        x_code4 = net(decode_u8(fix['real_u8'][i]))
        cond = net.COND_DNET(x_code4, fix['conditions'])
        uncond = net.UNCOND_DNET(x_code4)
    for name in STAGES[i]:
        assert_close(caught[name], exp[name], f'D{i}.{mode}.{name}')
    assert_close(x_code4, exp['x_code4'], f'D{i}.{mode}.x_code4')
    assert cond.shape == uncond.shape == (3,)
    assert_close(cond, exp['cond_logits'], f'D{i}.{mode}.cond_logits')
    assert_close(uncond, exp['uncond_logits'], f'D{i}.{mode}.uncond_logits')


def test_no_uncond_head():
    net = D_NET64(ndf=4, nef=32, b_jcu=False)
    assert net.UNCOND_DNET is None
    assert not any(k.startswith('UNCOND_DNET') for k in net.state_dict())
