"""miscc/losses.py port against losses.pt (D weights / real images from d_nets.pt)."""
import pytest
import torch
import torch.nn.functional as F

from attngan import losses
from attngan.losses import (KL_loss, cosine_similarity, discriminator_loss, format_g_logs, generator_loss,
                            sent_logits, sent_loss, words_logits, words_loss)
from attngan.models import CNN_ENCODER, D_NET64, D_NET128, D_NET256
from golden_utils import assert_golden, decode_u8, fill_by_rule, float64_replay, load, module64, to64

D_CLASSES = [D_NET64, D_NET128, D_NET256]


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'losses.pt')


@pytest.fixture(scope='module')
def dfix(golden_dir):
    return load(golden_dir, 'd_nets.pt')


@pytest.fixture(scope='module')
def cnn_fill_base(golden_dir):
    return load(golden_dir, 'cnn_encoder.pt')['fill_base']  # losses.pt's image encoder: that file's fill


def _gammas(cfg):
    return dict(gamma1=cfg['TRAIN.SMOOTH.GAMMA1'], gamma2=cfg['TRAIN.SMOOTH.GAMMA2'],
                gamma3=cfg['TRAIN.SMOOTH.GAMMA3'])


def _batch(fix):
    return fix['labels'].size(0)


def _d(dfix, i):
    cfg = dfix['cfg']
    net = D_CLASSES[i](cfg['GAN.DF_DIM'], cfg['TEXT.EMBEDDING_DIM'])
    net.load_state_dict(dfix['state_dicts'][i])
    return net.train()


def pair(fn, *args, given64=None, **kw):
    """fn(*args, **kw) in float32, and again on the float64 versions of the float arguments (modules too;
    given64: {position: a float64 argument made beforehand})."""
    out = fn(*args, **kw)
    given64 = given64 or {}
    cast = [given64[i] if i in given64 else module64(a) if isinstance(a, torch.nn.Module) else to64(a)
            for i, a in enumerate(args)]
    with float64_replay():
        exact = fn(*cast, **{k: to64(v) for k, v in kw.items()})
    return out, exact


class Recorder:
    """Wraps F.binary_cross_entropy / F.cross_entropy to record every call in order (a context manager)."""

    def __init__(self):
        self.calls = []
        self.saved = {}

    def __enter__(self):
        for kind, name in (('BCE', 'binary_cross_entropy'), ('CE', 'cross_entropy')):
            orig = self.saved[name] = getattr(F, name)

            def wrapped(inp, target, *a, _orig=orig, _kind=kind, **k):
                loss = _orig(inp, target, *a, **k)
                self.calls.append(dict(kind=_kind, input=inp.detach().clone(), target=target.clone(),
                                       loss=loss.detach().clone()))
                return loss
            setattr(F, name, wrapped)
        return self

    def __exit__(self, *exc):
        for name, orig in self.saved.items():
            setattr(F, name, orig)


def recorded(fn, *args, given64=None, **kw):
    """pair() of fn, with the loss calls of each run: ((out, calls), (out64, calls64))."""
    def run(*a, **k):
        with Recorder() as rec:
            return fn(*a, **k), rec.calls
    return pair(run, *args, given64=given64, **kw)


def _check_calls(calls, calls64, expected, name):
    assert len(calls) == len(calls64) == len(expected), \
        f'{name}: {len(calls)} loss calls, expected {len(expected)}'
    for n, (c, c64, e) in enumerate(zip(calls, calls64, expected)):
        if 'kind' in e:
            assert c['kind'] == e['kind'], f'{name}[{n}]'
        assert_golden(c['input'], c64['input'], e['input'], f'{name}[{n}].input')
        assert torch.equal(c['target'], e['target']), f'{name}[{n}].target'
        assert_golden(c['loss'], c64['loss'], e['loss'], f'{name}[{n}].loss')


def check_words_loss(fix, with_ids):
    name = 'with_class_ids' if with_ids else 'no_class_ids'
    exp = fix[f'words_loss_{name}']
    ids = fix['class_ids'] if with_ids else None
    kw = _gammas(fix['cfg'])
    B = _batch(fix)
    (loss0, loss1, att_maps), (l0_64, l1_64, maps64) = pair(
        words_loss, fix['img_features'], fix['words_emb'], fix['labels'], fix['cap_lens'], ids, B, **kw)
    assert_golden(loss0, l0_64, exp['loss0'], f'{name}.loss0')
    assert_golden(loss1, l1_64, exp['loss1'], f'{name}.loss1')
    assert len(att_maps) == len(exp['att_maps']) == B
    for i, (a, a64, e) in enumerate(zip(att_maps, maps64, exp['att_maps'])):
        assert a.shape == (1, int(fix['cap_lens'][i]), *fix['img_features'].shape[2:])
        assert_golden(a, a64, e, f'{name}.att_maps[{i}]')
    (sims, _), (sims64, _) = pair(words_logits, fix['img_features'], fix['words_emb'], fix['cap_lens'], ids, B, **kw)
    assert_golden(sims, sims64, exp['ce_inputs'][0], f'{name}.ce_inputs[0]')
    assert_golden(sims.t(), sims64.t(), exp['ce_inputs'][1], f'{name}.ce_inputs[1]')
    return loss0


@pytest.mark.parametrize('with_ids', [True, False])
def test_words_loss(fix, with_ids):
    ids = fix['class_ids'] if with_ids else None
    kw = _gammas(fix['cfg'])
    B = _batch(fix)
    loss0 = check_words_loss(fix, with_ids)
    # class_ids as the original trainer passes them (numpy array) give the same
    if with_ids:
        l0, _, _ = words_loss(fix['img_features'], fix['words_emb'], fix['labels'], fix['cap_lens'],
                              fix['class_ids'].numpy(), B, **kw)
        assert torch.equal(l0, loss0)
    none0, none1, maps = words_loss(fix['img_features'], fix['words_emb'], None, fix['cap_lens'], ids, B, **kw)
    assert none0 is None and none1 is None and len(maps) == B


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


def test_words_logits_equal_loop_on_unpadded_longer_tensor(fix):
    """Padding beyond the caption length (even non-zero values) never leaks into the logits.
    Sizes and gammas are the fixture's; the lengths run from WORDS_NUM down to 1, with a tie."""
    g = torch.Generator().manual_seed(0)
    B, nef, ih, iw = fix['img_features'].shape
    T = fix['cfg']['TEXT.WORDS_NUM']
    feats = torch.randn(B + 1, nef, ih, iw, generator=g)
    words = torch.randn(B + 1, nef, T, generator=g)
    lens = torch.linspace(T, 1, B + 1).round().long()
    lens[1] = lens[2]
    sims, _ = words_logits(feats, words, lens, None, B + 1, **_gammas(fix['cfg']))
    ref = _words_loss_loop(feats, words, lens, *_gammas(fix['cfg']).values())
    torch.testing.assert_close(sims, ref, atol=1e-4, rtol=1e-5)


def check_sent_loss(fix, with_ids):
    name = 'with_class_ids' if with_ids else 'no_class_ids'
    exp = fix[f'sent_loss_{name}']
    ids = fix['class_ids'] if with_ids else None
    gamma3 = fix['cfg']['TRAIN.SMOOTH.GAMMA3']
    B = _batch(fix)
    (loss0, loss1), (l0_64, l1_64) = pair(sent_loss, fix['cnn_code'], fix['sent_emb'], fix['labels'], ids, B,
                                          gamma3=gamma3)
    assert_golden(loss0, l0_64, exp['loss0'], f'sent.{name}.loss0')
    assert_golden(loss1, l1_64, exp['loss1'], f'sent.{name}.loss1')
    scores, scores64 = pair(sent_logits, fix['cnn_code'], fix['sent_emb'], ids, B, gamma3=gamma3)
    assert_golden(scores, scores64, exp['ce_inputs'][0], f'sent.{name}.ce_inputs[0]')
    assert_golden(scores.t(), scores64.t(), exp['ce_inputs'][1], f'sent.{name}.ce_inputs[1]')


@pytest.mark.parametrize('with_ids', [True, False])
def test_sent_loss(fix, with_ids):
    check_sent_loss(fix, with_ids)


def test_cosine_similarity_clamps_norm_product():
    x1 = torch.tensor([[1e-5, 0.0], [3.0, 4.0]])
    x2 = torch.tensor([[1e-5, 0.0], [4.0, 3.0]])
    got = cosine_similarity(x1, x2)
    assert got[0].item() == pytest.approx(1e-10 / 1e-8)  # product of norms clamped, not each norm
    assert got[1].item() == pytest.approx(24 / 25)
    assert F.cosine_similarity(x1, x2)[0].item() != pytest.approx(got[0].item())


def check_discriminator_loss(fix, dfix, i, case):
    if i >= len(fix['discriminator_loss']):
        pytest.skip(f"losses.pt has {len(fix['discriminator_loss'])} discriminator_loss entries")
    exp = fix['discriminator_loss'][i][case]
    net = _d(dfix, i)
    if case == 'uncond_none':
        net.UNCOND_DNET = None
    real = decode_u8(dfix['real_u8'][i])
    fake = decode_u8(255 - dfix['real_u8'][i]).requires_grad_()
    (errD, calls), (errD64, calls64) = recorded(discriminator_loss, net, real, fake, fix['sent_emb'],
                                                fix['real_labels'], fix['fake_labels'])
    assert_golden(errD, errD64, exp['errD'], f'D{i}.{case}.errD')
    _check_calls(calls, calls64, exp['bce'], f'D{i}.{case}.bce')
    return errD, fake


@pytest.mark.parametrize('i', range(len(D_CLASSES)))
@pytest.mark.parametrize('case', ['b_jcu_true', 'uncond_none'])
def test_discriminator_loss(fix, dfix, i, case):
    errD, fake = check_discriminator_loss(fix, dfix, i, case)
    errD.backward()
    assert fake.grad is None  # fakes are detached


def image_encoder_for(fix, fill_base):
    net = CNN_ENCODER(fix['cfg']['TEXT.EMBEDDING_DIM'], weights='random')
    fill_by_rule(net, fill_base)
    for p in net.parameters():
        p.requires_grad = False
    return net.eval()


@pytest.fixture(scope='module')
def image_encoder(fix, cnn_fill_base):
    net = image_encoder_for(fix, cnn_fill_base)
    return net, module64(net)  # frozen: one float64 copy serves every run


def check_generator_loss(fix, dfix, image_encoder):
    image_encoder, image_encoder64 = image_encoder
    exp = fix['generator_loss']
    n = exp['n_discriminators']
    assert n == fix['cfg']['TREE.BRANCH_NUM']
    nets = [_d(dfix, i) for i in range(n)]
    fakes = [decode_u8(255 - dfix['real_u8'][i]).requires_grad_() for i in range(n)]
    args = (fix['real_labels'], fix['words_emb'], fix['sent_emb'], fix['labels'], fix['cap_lens'], fix['class_ids'])
    kw = dict(lambda_=fix['cfg']['TRAIN.SMOOTH.LAMBDA'], **_gammas(fix['cfg']))

    def run(encoder, ds, *a, **k):
        caught = {}
        hook = encoder.register_forward_hook(lambda _m, _i, out: caught.__setitem__('out', out))
        try:
            return generator_loss(list(ds), encoder, *a, **k), caught['out']
        finally:
            hook.remove()
    # (a ModuleList, as pair() makes float64 copies of module arguments)
    (((errG, logs, terms), enc), calls), (((errG64, _, _), enc64), calls64) = recorded(
        run, image_encoder, torch.nn.ModuleList(nets), fakes, *args, given64={0: image_encoder64}, **kw)
    assert_golden(errG, errG64, exp['errG_total'], 'errG_total')
    assert logs == exp['logs']
    assert format_g_logs(terms, n) == logs
    assert all(not t.requires_grad for t in terms.values())
    assert_golden(enc[0], enc64[0], exp['image_encoder_on_last_fake']['region_features'], 'region_features')
    assert_golden(enc[1], enc64[1], exp['image_encoder_on_last_fake']['cnn_code'], 'cnn_code')
    _check_calls(calls, calls64, exp['recorded'], 'generator_loss.recorded')
    return nets, fakes, errG, args, kw


def test_generator_loss(fix, dfix, image_encoder):
    nets, fakes, errG, args, kw = check_generator_loss(fix, dfix, image_encoder)
    image_encoder = image_encoder[0]
    errG.backward()
    assert all(f.grad is not None and torch.isfinite(f.grad).all() for f in fakes)
    # without logs: no string, same loss
    errG2, logs2, _ = generator_loss(nets, image_encoder, fakes, *args, with_logs=False, **kw)
    assert logs2 is None and torch.equal(errG2, errG)


def test_kl_loss(fix):
    exp = fix['KL_loss']
    kl, kl64 = pair(KL_loss, exp['mu'], exp['logvar'])
    assert_golden(kl, kl64, exp['kl'], 'KL_loss')


def test_module_has_no_global_config():
    assert not hasattr(losses, 'cfg')
