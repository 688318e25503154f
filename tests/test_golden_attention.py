"""GlobalAttentionGeneral and func_attention against attention.pt."""
import pytest
import torch

from attngan.GlobalAttention import GlobalAttentionGeneral, func_attention, tiled_mask
from golden_utils import assert_close, load


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'attention.pt')


def _module(fix, **kw):
    cfg = fix['cfg']
    m = GlobalAttentionGeneral(cfg['GAN.GF_DIM'], cfg['TEXT.EMBEDDING_DIM'], **kw)
    m.load_state_dict(fix['state_dict'])
    return m


def test_default_init_matches_original(fix):
    torch.manual_seed(fix['seed_init'])
    m = GlobalAttentionGeneral(fix['cfg']['GAN.GF_DIM'], fix['cfg']['TEXT.EMBEDDING_DIM'])
    assert list(m.state_dict()) == ['conv_context.weight']
    assert torch.equal(m.conv_context.weight, fix['state_dict']['conv_context.weight'])


@pytest.mark.parametrize('case', ['masked', 'unmasked'])
def test_global_attention(fix, case):
    m = _module(fix)
    m.applyMask(fix['mask'] if case == 'masked' else None)
    w, attn = m(fix['input'], fix['context'])
    assert_close(w, fix[case]['weightedContext'], f'{case}.weightedContext')
    assert_close(attn, fix[case]['attn'], f'{case}.attn')
    # explicit mask argument gives the same as applyMask
    w2, _ = m(fix['input'], fix['context'], fix['mask'] if case == 'masked' else None)
    assert torch.equal(w, w2)


def test_mask_tiling_quirk(fix):
    ih, iw = fix['input'].shape[2:]
    eff = tiled_mask(fix['mask'], ih * iw)
    assert torch.equal(eff, fix['effective_mask'])
    # the quirk really mixes samples here, and the masked logits are exactly those
    assert not torch.equal(eff, fix['mask'][:, None, :].expand_as(eff))
    _, attn = _module(fix)(fix['input'], fix['context'], fix['mask'])
    attn = attn.flatten(2).transpose(1, 2)  # B x queryL x sourceL
    assert torch.all(attn[eff] == 0) and torch.all(attn[~eff] > 0)


def test_fixed_mask_uses_own_mask(fix):
    w_fix, attn = _module(fix, fix_mask=True)(fix['input'], fix['context'], fix['mask'])
    attn = attn.flatten(2).transpose(1, 2)
    own = fix['mask'][:, None, :].expand_as(attn)
    assert torch.all(attn[own] == 0) and torch.all(attn[~own] > 0)
    assert not torch.allclose(w_fix, fix['masked']['weightedContext'])


def test_func_attention(fix):
    f = fix['func_attention']
    w, attn = func_attention(f['query'], f['context'], f['gamma1'])
    assert_close(w, f['weightedContext'], 'func_attention.weightedContext')
    assert_close(attn, f['attn'], 'func_attention.attn')
