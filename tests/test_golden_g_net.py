"""G_NET and its stages against g_net.pt / g_net_parts.pt (original AttnGAN, GF_DIM 8, 3 stages)."""
import pytest
import torch

from attngan.models import G_NET, G_DCGAN
from golden_utils import assert_close, load

MODES = ['train', 'eval']


def _cfg_net(cfg, **kw):
    return G_NET(ngf=cfg['GAN.GF_DIM'], nef=cfg['TEXT.EMBEDDING_DIM'], ncf=cfg['GAN.CONDITION_DIM'],
                 z_dim=cfg['GAN.Z_DIM'], r_num=cfg['GAN.R_NUM'], branch_num=cfg['TREE.BRANCH_NUM'], **kw)


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


def _run(net, fix, seed):
    hooks, caught = [], {}
    for name in ('h_net1', 'h_net2', 'h_net3'):
        def hook(_m, _i, out, name=name):
            caught[name] = out[0] if isinstance(out, tuple) else out
        hooks.append(getattr(net, name).register_forward_hook(hook))
    torch.manual_seed(seed)
    with torch.no_grad():
        out = net(fix['z'], fix['sent_emb'], fix['words_emb'], fix['mask'])
    for h in hooks:
        h.remove()
    return out, caught


@pytest.mark.parametrize('mode', MODES)
def test_g_net_forward(g_fix, mode):
    exp = g_fix[mode]
    net = _net(g_fix, mode)
    (fake_imgs, att_maps, mu, logvar), caught = _run(net, g_fix, exp['seed'])
    assert len(fake_imgs) == 3 and len(att_maps) == 2
    for i, img in enumerate(fake_imgs):
        assert_close(img, exp['fake_imgs'][i], f'{mode}.fake_imgs[{i}]')
    for j, att in enumerate(att_maps):
        assert_close(att, exp['att_maps'][j], f'{mode}.att_maps[{j}]')
    assert_close(mu, exp['mu'], f'{mode}.mu')
    assert_close(logvar, exp['logvar'], f'{mode}.logvar')
    for k in (1, 2, 3):
        assert_close(caught[f'h_net{k}'], exp[f'h_code{k}'], f'{mode}.h_code{k}')
    # CA noise: randn(B, CONDITION_DIM) from the global generator, in eval mode too
    torch.manual_seed(exp['seed'])
    eps = torch.randn(exp['ca_eps'].shape)
    assert torch.equal(eps, exp['ca_eps'])
    c_code = eps * torch.exp(0.5 * logvar) + mu
    assert_close(c_code, exp['c_code'], f'{mode}.c_code')
    # the generator consumes exactly that one draw from the global RNG, and reruns are identical
    torch.manual_seed(exp['seed'])
    torch.randn(exp['ca_eps'].shape)
    expected_state = torch.get_rng_state()
    (fake2, _, _, _), _ = _run(net, g_fix, exp['seed'])
    assert torch.equal(torch.get_rng_state(), expected_state)
    assert torch.equal(fake2[-1], fake_imgs[-1])


def test_g_net_buffers_after_one_train_forward(g_fix):
    net = _net(g_fix, 'train')
    _run(net, g_fix, g_fix['train']['seed'])
    exp = g_fix['train']['buffers_after_one_forward']
    bufs = dict(net.named_buffers())
    assert sorted(bufs) == sorted(exp)
    for k, v in exp.items():
        if k.endswith('num_batches_tracked'):
            assert bufs[k].item() == v.item() == 1, k
        else:
            assert_close(bufs[k], v, k)


def test_fixed_mask_changes_later_stages(g_fix):
    """The original mixes samples' masks; the fix_attn_mask flag must change stages 2/3 only."""
    exp = g_fix['eval']
    (fake, _, _, _), _ = _run(_net(g_fix, 'eval', fix_attn_mask=True), g_fix, exp['seed'])
    assert_close(fake[0], exp['fake_imgs'][0], 'fixed.fake_imgs[0]')
    with pytest.raises(AssertionError):
        assert_close(fake[1], exp['fake_imgs'][1], 'fixed.fake_imgs[1]')


@pytest.mark.parametrize('mode', MODES)
def test_g_net_parts(g_fix, parts_fix, mode):
    net = _net(g_fix, mode)
    inp, exp = parts_fix['inputs'], parts_fix[mode]
    with torch.no_grad():
        torch.manual_seed(exp['ca_net']['seed'])
        c_code, mu, logvar = net.ca_net(inp['sent_emb'])
        for name, val in (('c_code', c_code), ('mu', mu), ('logvar', logvar)):
            assert_close(val, exp['ca_net'][name], f'{mode}.ca_net.{name}')
        assert_close(net.h_net1(inp['z'], inp['c_code']), exp['h_net1']['h_code'], f'{mode}.h_net1')
        for k in (2, 3):
            out, att = getattr(net, f'h_net{k}')(inp[f'h_small_net{k}'], inp['c_code'],
                                                 inp['words_emb'], inp['mask'])
            assert_close(out, exp[f'h_net{k}']['out'], f'{mode}.h_net{k}.out')
            assert_close(att, exp[f'h_net{k}']['att'], f'{mode}.h_net{k}.att')
            # Original quirk: NEXT_STAGE_G ignores c_code
            out2, _ = getattr(net, f'h_net{k}')(inp[f'h_small_net{k}'], None, inp['words_emb'], inp['mask'])
            assert torch.equal(out, out2)
        for k in (1, 2, 3):
            out = getattr(net, f'img_net{k}')(inp['img_net_inputs'][k - 1])
            assert_close(out, exp[f'img_net{k}']['out'], f'{mode}.img_net{k}')


def test_g_dcgan_shares_keys_with_one_image_net(g_fix):
    cfg = g_fix['cfg']
    net = G_DCGAN(ngf=cfg['GAN.GF_DIM'], nef=cfg['TEXT.EMBEDDING_DIM'], ncf=cfg['GAN.CONDITION_DIM'],
                  z_dim=cfg['GAN.Z_DIM'], r_num=cfg['GAN.R_NUM'], branch_num=3).eval()
    sd = {k: v for k, v in g_fix['state_dict'].items() if not k.startswith('img_net')}
    sd['img_net.img.0.weight'] = g_fix['state_dict']['img_net3.img.0.weight']
    net.load_state_dict(sd)
    exp = g_fix['eval']
    torch.manual_seed(exp['seed'])
    with torch.no_grad():
        fake, att, _, _ = net(g_fix['z'], g_fix['sent_emb'], g_fix['words_emb'], g_fix['mask'])
    assert len(fake) == 1 and len(att) == 2
    assert_close(fake[0], exp['fake_imgs'][2], 'G_DCGAN image (= G_NET stage 3 with its weights)')


def test_bad_branch_num():
    with pytest.raises(ValueError, match='BRANCH_NUM'):
        G_NET(8, 32, 16, 16, 2, branch_num=4)
