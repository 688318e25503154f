"""miscc/losses.py port against losses.pt (D weights / real images from d_nets.pt)."""
import pytest
import torch
import torch.nn.functional as F

from attngan import losses
from attngan.losses import (KL_loss, cosine_similarity, discriminator_loss, format_g_logs, generator_loss,
                            sent_logits, sent_loss, words_logits, words_loss)
from attngan.models import CNN_ENCODER, D_NET64, D_NET128, D_NET256
from golden_utils import assert_close, assert_scalar, decode_u8, fill_by_rule, load

D_CLASSES = [D_NET64, D_NET128, D_NET256]


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'losses.pt')


@pytest.fixture(scope='module')
def dfix(golden_dir):
    return load(golden_dir, 'd_nets.pt')


def _gammas(cfg):
    return dict(gamma1=cfg['TRAIN.SMOOTH.GAMMA1'], gamma2=cfg['TRAIN.SMOOTH.GAMMA2'],
                gamma3=cfg['TRAIN.SMOOTH.GAMMA3'])


def _d(dfix, i):
    cfg = dfix['cfg']
    net = D_CLASSES[i](cfg['GAN.DF_DIM'], cfg['TEXT.EMBEDDING_DIM'])
    net.load_state_dict(dfix['state_dicts'][i])
    return net.train()


class Recorder:
    """Wraps F.binary_cross_entropy / F.cross_entropy to record every call in order."""

    def __init__(self, monkeypatch):
        self.calls = []
        for kind, name in (('BCE', 'binary_cross_entropy'), ('CE', 'cross_entropy')):
            orig = getattr(F, name)

            def wrapped(inp, target, *a, _orig=orig, _kind=kind, **k):
                loss = _orig(inp, target, *a, **k)
                self.calls.append(dict(kind=_kind, input=inp.detach().clone(), target=target.clone(),
                                       loss=loss.item()))
                return loss
            monkeypatch.setattr(F, name, wrapped)


def _check_calls(calls, expected, name):
    assert len(calls) == len(expected), f'{name}: {len(calls)} loss calls, expected {len(expected)}'
    for n, (c, e) in enumerate(zip(calls, expected)):
        if 'kind' in e:
            assert c['kind'] == e['kind'], f'{name}[{n}]'
        assert_close(c['input'], e['input'], f'{name}[{n}].input')
        assert torch.equal(c['target'], e['target']), f'{name}[{n}].target'
        assert_scalar(c['loss'], e['loss'], f'{name}[{n}].loss')


@pytest.mark.parametrize('with_ids', [True, False])
def test_words_loss(fix, with_ids):
    name = 'with_class_ids' if with_ids else 'no_class_ids'
    exp = fix[f'words_loss_{name}']
    ids = fix['class_ids'] if with_ids else None
    kw = _gammas(fix['cfg'])
    loss0, loss1, att_maps = words_loss(fix['img_features'], fix['words_emb'], fix['labels'], fix['cap_lens'],
                                        ids, 3, **kw)
    assert_scalar(loss0, exp['loss0'], 'loss0')
    assert_scalar(loss1, exp['loss1'], 'loss1')
    assert len(att_maps) == 3
    for i, (a, e) in enumerate(zip(att_maps, exp['att_maps'])):
        assert_close(a, e, f'att_maps[{i}]')
    sims, _ = words_logits(fix['img_features'], fix['words_emb'], fix['cap_lens'], ids, 3, **kw)
    assert_close(sims, exp['ce_inputs'][0], 'ce_inputs[0]')
    assert_close(sims.t(), exp['ce_inputs'][1], 'ce_inputs[1]')
    # class_ids as the original trainer passes them (numpy array) give the same
    if with_ids:
        l0, _, _ = words_loss(fix['img_features'], fix['words_emb'], fix['labels'], fix['cap_lens'],
                              fix['class_ids'].numpy(), 3, **kw)
        assert torch.equal(l0, loss0)
    none0, none1, maps = words_loss(fix['img_features'], fix['words_emb'], None, fix['cap_lens'], ids, 3, **kw)
    assert none0 is None and none1 is None and len(maps) == 3


def _words_loss_loop(img_features, words_emb, cap_lens, gamma1, gamma2, gamma3):
    """The original's per-caption loop (reference for the vectorised words_logits)."""
    from attngan.GlobalAttention import func_attention
    B = img_features.size(0)
    cols = []
    for i, n in enumerate(cap_lens.tolist()):
        word = words_emb[i, :, :n].unsqueeze(0).repeat(B, 1, 1)
        wc, _ = func_attention(word, img_features, gamma1)
        sim = cosine_similarity(word.transpose(1, 2).reshape(B * n, -1), wc.transpose(1, 2).reshape(B * n, -1))
        cols.append(torch.log(sim.view(B, n).mul(gamma2).exp().sum(1, keepdim=True)))
    return torch.cat(cols, 1) * gamma3


def test_words_logits_equal_loop_on_unpadded_longer_tensor():
    """Padding beyond the caption length (even non-zero values) never leaks into the logits."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(4, 16, 17, 17, generator=g)
    words = torch.randn(4, 16, 18, generator=g)
    lens = torch.tensor([18, 11, 7, 1])
    sims, _ = words_logits(feats, words, lens, None, 4, gamma1=4.0, gamma2=5.0, gamma3=10.0)
    ref = _words_loss_loop(feats, words, lens, 4.0, 5.0, 10.0)
    torch.testing.assert_close(sims, ref, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('with_ids', [True, False])
def test_sent_loss(fix, with_ids):
    name = 'with_class_ids' if with_ids else 'no_class_ids'
    exp = fix[f'sent_loss_{name}']
    ids = fix['class_ids'] if with_ids else None
    gamma3 = fix['cfg']['TRAIN.SMOOTH.GAMMA3']
    loss0, loss1 = sent_loss(fix['cnn_code'], fix['sent_emb'], fix['labels'], ids, 3, gamma3=gamma3)
    assert_scalar(loss0, exp['loss0'], 'loss0')
    assert_scalar(loss1, exp['loss1'], 'loss1')
    scores = sent_logits(fix['cnn_code'], fix['sent_emb'], ids, 3, gamma3=gamma3)
    assert_close(scores, exp['ce_inputs'][0], 'ce_inputs[0]')
    assert_close(scores.t(), exp['ce_inputs'][1], 'ce_inputs[1]')


def test_cosine_similarity_clamps_norm_product():
    x1 = torch.tensor([[1e-5, 0.0], [3.0, 4.0]])
    x2 = torch.tensor([[1e-5, 0.0], [4.0, 3.0]])
    got = cosine_similarity(x1, x2)
    assert got[0].item() == pytest.approx(1e-10 / 1e-8)  # product of norms clamped, not each norm
    assert got[1].item() == pytest.approx(24 / 25)
    assert F.cosine_similarity(x1, x2)[0].item() != pytest.approx(got[0].item())


@pytest.mark.parametrize('i', [0, 1, 2])
@pytest.mark.parametrize('case', ['b_jcu_true', 'uncond_none'])
def test_discriminator_loss(fix, dfix, monkeypatch, i, case):
    exp = fix['discriminator_loss'][i][case]
    net = _d(dfix, i)
    if case == 'uncond_none':
        net.UNCOND_DNET = None
    real = decode_u8(dfix['real_u8'][i])
    fake = decode_u8(255 - dfix['real_u8'][i]).requires_grad_()
    rec = Recorder(monkeypatch)
    errD = discriminator_loss(net, real, fake, fix['sent_emb'], fix['real_labels'], fix['fake_labels'])
    assert_scalar(errD, exp['errD'], f'D{i}.{case}.errD')
    _check_calls(rec.calls, exp['bce'], f'D{i}.{case}.bce')
    errD.backward()
    assert fake.grad is None  # fakes are detached


@pytest.fixture(scope='module')
def image_encoder(fix):
    net = CNN_ENCODER(fix['cfg']['TEXT.EMBEDDING_DIM'], weights='random')
    fill_by_rule(net, 1000)  # BASE of cnn_encoder.pt
    for p in net.parameters():
        p.requires_grad = False
    return net.eval()


def test_generator_loss(fix, dfix, image_encoder, monkeypatch):
    exp = fix['generator_loss']
    n = exp['n_discriminators']
    nets = [_d(dfix, i) for i in range(n)]
    fakes = [decode_u8(255 - dfix['real_u8'][i]).requires_grad_() for i in range(n)]
    caught = {}
    image_encoder.register_forward_hook(lambda _m, _i, out: caught.__setitem__('out', out))
    rec = Recorder(monkeypatch)
    errG, logs, terms = generator_loss(nets, image_encoder, fakes, fix['real_labels'], fix['words_emb'],
                                       fix['sent_emb'], fix['labels'], fix['cap_lens'], fix['class_ids'],
                                       lambda_=fix['cfg']['TRAIN.SMOOTH.LAMBDA'], **_gammas(fix['cfg']))
    image_encoder._forward_hooks.clear()
    assert_scalar(errG, exp['errG_total'], 'errG_total')
    assert logs == exp['logs']
    assert format_g_logs(terms, n) == logs
    assert all(not t.requires_grad for t in terms.values())
    assert_close(caught['out'][0], exp['image_encoder_on_last_fake']['region_features'], 'region_features')
    assert_close(caught['out'][1], exp['image_encoder_on_last_fake']['cnn_code'], 'cnn_code')
    _check_calls(rec.calls, exp['recorded'], 'generator_loss.recorded')
    errG.backward()
    assert all(f.grad is not None and torch.isfinite(f.grad).all() for f in fakes)
    # without logs: no string, same loss
    errG2, logs2, _ = generator_loss(nets, image_encoder, fakes, fix['real_labels'], fix['words_emb'],
                                     fix['sent_emb'], fix['labels'], fix['cap_lens'], fix['class_ids'],
                                     lambda_=fix['cfg']['TRAIN.SMOOTH.LAMBDA'], with_logs=False,
                                     **_gammas(fix['cfg']))
    assert logs2 is None


def test_kl_loss(fix):
    exp = fix['KL_loss']
    assert_scalar(KL_loss(exp['mu'], exp['logvar']), exp['kl'], 'KL_loss')


def test_module_has_no_global_config():
    assert not hasattr(losses, 'cfg')
