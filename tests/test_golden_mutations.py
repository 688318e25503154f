"""The noise-based golden tolerance (golden_utils) is strict enough to catch real defects.

Each case monkeypatches one deliberate defect into the port (a wrong constant, a skipped BatchNorm, a
"fixed" attention mask, a softmax over the wrong axis, swapped concatenation or pair order, a wrong EMA
decay), runs the same check function the golden tests run (float32 run, float64 replay, assert_golden
with the fixture) and asserts that some comparison lands outside the tolerance, while the same check
passes unmutated. ``margin`` = the largest distance / tolerance of the mutated run (> 1 means caught);
it is printed (pytest -s) and written to the ATTNGAN_GOLDEN_REPORT file with the other records.
"""
import functools

import pytest
import torch
import torch.nn.functional as F

import test_golden_attention as t_att
import test_golden_dualattn as t_dual
import test_golden_g_net as t_g
import test_golden_losses as t_loss
import test_golden_train_step as t_step
from attngan import GlobalAttention, gan, losses, models
from attngan.dualAttnModel import SpatialAttentionModule
from golden_utils import RECORDS, collect, load


# ------------------------------------------------------------------ the defects
def gamma1_off_by_one(mp):
    """words_logits sharpens the region attention with gamma1 + 1 (a wrong constant)."""
    orig = losses.words_logits

    @functools.wraps(orig)
    def mutated(*a, gamma1, **k):
        return orig(*a, gamma1=gamma1 + 1.0, **k)
    mp.setattr(losses, 'words_logits', mutated)
    mp.setattr(t_loss, 'words_logits', mutated)


def ca_net_full_std(mp):
    """CA_NET uses std = exp(logvar) instead of exp(0.5 * logvar) (same random draw)."""
    def reparametrize(self, mu, logvar):
        std = logvar.exp()
        eps = torch.randn(std.size(), dtype=std.dtype, device=std.device)
        return eps * std + mu
    mp.setattr(models.CA_NET, 'reparametrize', reparametrize)


def resblock_skips_last_bn(mp):
    """ResBlock without its last BatchNorm: x + (conv -> BN -> GLU -> conv)(x)."""
    def forward(self, x):
        return self.block[:4](x) + x
    mp.setattr(models.ResBlock, 'forward', forward)


def attention_mask_fixed(mp):
    """GlobalAttentionGeneral gives each sample its own mask (the original tiles it across samples)."""
    def own_mask(mask, queryL):
        return mask[:, None, :].expand(mask.size(0), queryL, mask.size(1))
    mp.setattr(GlobalAttention, 'tiled_mask', own_mask)


def func_attention_first_softmax_over_regions(mp):
    """func_attention's first softmax over regions instead of over words."""
    def mutated(query, context, gamma1):
        batch_size, queryL = query.size(0), query.size(2)
        ih, iw = context.size(2), context.size(3)
        context = context.reshape(batch_size, -1, ih * iw)
        attn = torch.bmm(context.transpose(1, 2), query).softmax(dim=1)  # the defect (words: dim=-1)
        attn = (attn.transpose(1, 2) * gamma1).softmax(dim=-1)
        weightedContext = torch.bmm(context, attn.transpose(1, 2))
        return weightedContext, attn.reshape(batch_size, queryL, ih, iw)
    mp.setattr(GlobalAttention, 'func_attention', mutated)
    mp.setattr(t_att, 'func_attention', mutated)


def spatial_softmax_over_width(mp):
    """The fork's spatial attention normalised over the last axis instead of over channels."""
    orig_softmax = torch.softmax

    def forward(self, spatial_features):
        down = F.max_pool2d(F.avg_pool2d(spatial_features, kernel_size=3, stride=2), kernel_size=3, stride=2)
        f, g, h = self.conv_f(down), self.conv_g(down), self.conv_h(down)
        attention_map = orig_softmax(f.transpose(2, 3) * g, dim=-1)  # the defect (channels: dim=1)
        return F.interpolate(h * attention_map, size=(self.input_size, self.input_size), mode='bilinear',
                             align_corners=False)
    mp.setattr(SpatialAttentionModule, 'forward', forward)


def next_stage_concat_swapped(mp):
    """NEXT_STAGE_G concatenates (word context, h) instead of (h, word context)."""
    def forward(self, h_code, c_code, word_embs, mask):
        self.att.applyMask(mask)
        context, att = self.att(h_code, word_embs, mask)
        return self.upsample(self.residual(torch.cat((context, h_code), 1))), att
    mp.setattr(models.NEXT_STAGE_G, 'forward', forward)


def wrong_pairs_reversed(mp):
    """discriminator_loss pairs real codes [1:B] with conditions [0:B-1] (the original: [0:B-1] with [1:B])."""
    def mutated(netD, real_imgs, fake_imgs, conditions, real_labels, fake_labels):
        real_features = netD(real_imgs)
        fake_features = netD(fake_imgs.detach())
        cond_real_errD = losses._bce(netD.COND_DNET(real_features, conditions), real_labels)
        cond_fake_errD = losses._bce(netD.COND_DNET(fake_features, conditions), fake_labels)
        B = real_features.size(0)
        cond_wrong_errD = losses._bce(netD.COND_DNET(real_features[1:B], conditions[:B - 1]), fake_labels[1:B])
        real_errD = losses._bce(netD.UNCOND_DNET(real_features), real_labels)
        fake_errD = losses._bce(netD.UNCOND_DNET(fake_features), fake_labels)
        return (real_errD + cond_real_errD) / 2. + (fake_errD + cond_fake_errD + cond_wrong_errD) / 3.
    mp.setattr(losses, 'discriminator_loss', mutated)
    mp.setattr(t_loss, 'discriminator_loss', mutated)


def ema_decay_099(mp):
    """The generator's EMA with decay 0.99 instead of the original's 0.999."""
    orig = gan.ema_update
    mp.setattr(gan, 'ema_update', lambda avg, model, decay=0.999: orig(avg, model, 0.99))


# ------------------------------------------------------------------ the golden checks they must fail
def _fixtures(golden_dir, *names):
    return [load(golden_dir, n) for n in names]


def words_loss_check(golden_dir):
    fix, = _fixtures(golden_dir, 'losses.pt')
    return lambda: t_loss.check_words_loss(fix, True)


def g_parts_check(mode):
    def make(golden_dir):
        g_fix, parts = _fixtures(golden_dir, 'g_net.pt', 'g_net_parts.pt')
        return lambda: t_g.check_g_net_parts(g_fix, parts, mode)
    return make


def g_forward_check(mode):
    def make(golden_dir):
        g_fix, = _fixtures(golden_dir, 'g_net.pt')
        return lambda: t_g.check_g_net_forward(g_fix, mode)
    return make


def global_attention_check(golden_dir):
    fix, = _fixtures(golden_dir, 'attention.pt')
    return lambda: t_att.check_global_attention(fix, 'masked')


def func_attention_check(golden_dir):
    fix, = _fixtures(golden_dir, 'attention.pt')
    return lambda: t_att.check_func_attention(fix)


def dual_parts_check(golden_dir):
    g_fix, parts = _fixtures(golden_dir, 'dualattn_g_net.pt', 'dualattn_g_net_parts.pt')
    return lambda: t_dual.check_parts(g_fix, parts, 'eval')


def d_loss_check(golden_dir):
    fix, dfix = _fixtures(golden_dir, 'losses.pt', 'd_nets.pt')
    return lambda: t_loss.check_discriminator_loss(fix, dfix, 0, 'b_jcu_true')


def train_step_params_check(golden_dir):
    def check():
        t_step.check_parameters(t_step.run_step(golden_dir), t_step.replay_step(golden_dir))
    return check


MUTATIONS = {
    'gamma1_off_by_one': (gamma1_off_by_one, words_loss_check),
    'ca_net_full_std': (ca_net_full_std, g_parts_check('eval')),
    'resblock_skips_last_bn': (resblock_skips_last_bn, g_forward_check('eval')),
    'attention_mask_fixed': (attention_mask_fixed, global_attention_check),
    'func_attention_softmax_axis': (func_attention_first_softmax_over_regions, func_attention_check),
    'spatial_softmax_axis': (spatial_softmax_over_width, dual_parts_check),
    'next_stage_concat_swapped': (next_stage_concat_swapped, g_parts_check('train')),
    'wrong_pairs_reversed': (wrong_pairs_reversed, d_loss_check),
    'ema_decay_099': (ema_decay_099, train_step_params_check),
}
#: whose unmutated check is the expensive train_step one, already asserted by test_golden_train_step
CLEAN_ELSEWHERE = {'ema_decay_099'}


def _margin(check):
    """Largest distance / tolerance over the check's comparisons (tolerance failures recorded, not raised)."""
    with collect() as records:
        try:
            check()
        except AssertionError as e:  # an exact check (shape, keys, ...) failed: also a detection
            records.append(dict(name=f'exact check: {e}', ratio=float('inf')))
    assert records, 'the check made no comparison'
    worst = max(records, key=lambda r: r['ratio'])
    return worst['ratio'], worst['name']


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.slow) if n in CLEAN_ELSEWHERE else n
                                  for n in MUTATIONS])
def test_mutation_is_caught(golden_dir, monkeypatch, name):
    mutate, make_check = MUTATIONS[name]
    check = make_check(golden_dir)
    if name not in CLEAN_ELSEWHERE:
        clean, clean_where = _margin(check)
        assert clean <= 1, f'unmutated check fails: {clean_where} at {clean:.3g} x tolerance'
    with monkeypatch.context() as mp:
        mutate(mp)
        margin, where = _margin(check)
    RECORDS.append(dict(name=f'MUTATION {name}: {where}', dist=margin, noise=0.0, scale=0.0, tol=1.0,
                        ratio=margin, extra_tol=0.0, mutation=True))
    print(f'\n{name}: caught at {margin:.4g} x tolerance ({where})')
    assert margin > 1, f'{name} passes the golden comparison (worst {where} at {margin:.3g} x tolerance)'
