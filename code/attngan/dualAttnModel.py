"""DualAttnGAN generators: the student fork's variant (faithful) and the paper's complete design.

Two generators share the AttnGAN conditioning (CA_NET), image heads (GET_IMAGE_G), discriminators
and trainer; ``GAN.DUAL_ATTN`` selects them and ``GAN.DUAL_ATTN_VARIANT`` picks one:

``'fork'``: :class:`DualAttn_G_NET`, a faithful port of ``code/dualAttnModel.py`` of the fork
    mattrent/AttnGAN. Class names, attribute names and ``state_dict`` keys, shapes and order are the
    fork's, so its checkpoints load unchanged and the numbers match the fork's. Its defects are kept
    on purpose (each is marked ``# Fork defect:`` where it happens):

    1. The channel "attention" is not CBAM: it is a per-POSITION gate computed from locally pooled
       maps (3x3 pools with stride 4, a strided 1x1 conv) through a large MLP whose size grows with
       the square of the grid (about 36M parameters in the 128-px stage at the bird config).
    2. Its last layer is a 1x1 ConvTranspose2d with stride 2, which only writes the even positions:
       3 of every 4 gate positions are sigmoid(bias), independent of the input.
    3. The "spatial attention" multiplies the query and key maps ELEMENT-WISE (no sum over
       positions), normalises with a softmax over CHANNELS (implicit-dim ``nn.Softmax()``), works on
       a grid pooled twice (64 -> 15) and bilinearly upsampled back, and has no learned gamma nor
       residual connection.
    4. The word-attention maps are computed and thrown away: ``forward`` returns an empty
       attention list (the trainer then draws pictures without attention rows).
    5. The grid sizes 64 and 128 are built in (TREE.BASE_SIZE must be 64) and GF_DIM must be a
       multiple of 8 (the channel module reshapes by GF_DIM // 8).

    Other departures from the paper (not bugs, just not implemented by the fork): only the first
    stage's fc uses ReLU instead of GLU (its upsampling blocks keep GLU); the refinement stages keep
    AttnGAN's residual blocks (no inverted residuals); no spectral normalisation.

``'paper'``: :class:`PaperDualAttn_G_NET`, the design of Cai et al., "DualAttn-GAN: Text to Image
    Synthesis with Dual Attentional Generative Adversarial Network", IEEE Access 2019, with its own
    ``state_dict`` names. Per refinement stage: textual attention (AttnGAN's word attention, maps
    returned) and visual attention = spatial(channel(h)) with CBAM channel attention and SAGAN
    spatial attention (gamma initialised to 0; computed with
    ``torch.nn.functional.scaled_dot_product_attention``, so the N x N map is never materialised);
    attention embedding cat(h + text context, h + visual) -> 2C; inverted residual blocks
    (MobileNetV2) instead of residual blocks; ReLU instead of GLU in the first stage; spectral
    normalisation of G and D (see :func:`apply_spectral_norm`; the builder applies it). The paper's
    text does not settle every detail: each such choice is a constructor argument and a config key
    ``GAN.PAPER_*`` documented as "assumed" in :mod:`attngan.config`.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _torch_spectral_norm
from torch.utils.checkpoint import checkpoint

from .errors import ConfigError
from .GlobalAttention import GlobalAttentionGeneral, conv1x1
from .models import CA_NET, GET_IMAGE_G, INIT_STAGE_G, ResBlock, upBlock

__all__ = [
    # fork variant
    'ChannelAttentionModule', 'SpatialAttentionModule', 'VisualAttentionModule', 'DualAttentionModule',
    'DualAttn_NEXT_STAGE_G', 'DualAttn_G_NET',
    # paper variant
    'PaperChannelAttention', 'PaperSpatialAttention', 'PaperVisualAttention', 'AttentionEmbedding',
    'PaperDualAttentionModule', 'InvertedResidual',
    'PaperDualAttn_NEXT_STAGE_G', 'PaperDualAttn_G_NET', 'sagan_attention',
    # spectral normalisation
    'SN_LAYER_TYPES', 'apply_spectral_norm', 'spectral_norm_discriminator', 'count_spectral_norm',
]


def _check_branch_num(branch_num: int) -> None:
    if branch_num not in (1, 2, 3):
        raise ConfigError(f'TREE.BRANCH_NUM must be 1, 2 or 3 (as the original), got {branch_num}')


def _check_grid(module: str, x: torch.Tensor, size: int) -> None:
    if x.dim() != 4 or x.shape[-2:] != (size, size):
        raise ConfigError(f'{module} was built for {size}x{size} maps (the fork has the grid size built in; '
                         f'TREE.BASE_SIZE must be 64), got input of shape {tuple(x.shape)}')


# ====================================================================================== fork
class ChannelAttentionModule(nn.Module):
    """The fork's channel "attention": x (B x C x S x S) -> gate(x) * x, gate B x C x S x S in (0, 1).

    input_size: S (64 or 128 in the fork); input_channels: C (a multiple of 8).
    maxpool / avgpool (3x3, stride 4) -> shared strided 1x1 conv C -> C/8 (S/8 x S/8) -> flattened ->
    shared MLP (linear_1: h -> 2h, ReLU, linear_2: 2h -> (S/2)^2 C/8), max + avg -> reshaped to
    C/8 x S/2 x S/2 -> 1x1 ConvTranspose2d stride 2 (C/8 -> C, S x S) -> sigmoid.
    """

    def __init__(self, input_size: int, input_channels: int):
        super().__init__()
        if input_channels % 8 or input_size % 8:
            raise ConfigError(f'ChannelAttentionModule: the fork needs channels (GAN.GF_DIM) and grid size '
                             f'divisible by 8, got {input_channels} channels, {input_size} px')
        self.input_size = input_size
        self.input_channels = input_channels
        # Fork defect: the MLP width scales with the grid area (per-position gate, not CBAM)
        self.hidden_size = (input_size // 8) * (input_size // 8) * input_channels // 8
        self.conv = nn.Conv2d(input_channels, input_channels // 8, kernel_size=1, stride=2)
        self.linear_1 = nn.Linear(self.hidden_size, self.hidden_size * 2)
        self.linear_2 = nn.Linear(self.hidden_size * 2, (input_size // 2) * (input_size // 2) * (input_channels // 8))
        # Fork defect: a 1x1 transposed conv with stride 2 only writes even positions; the other 3 of 4
        # outputs are its bias, so the gate there is sigmoid(bias) whatever the input
        self.conv_t = nn.ConvTranspose2d(input_channels // 8, input_channels, kernel_size=1, stride=2,
                                         output_padding=(1, 1))

    def _mlp(self, code: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.relu(self.linear_1(code.reshape(-1, self.hidden_size))))

    def forward(self, spatial_features: torch.Tensor) -> torch.Tensor:
        _check_grid('ChannelAttentionModule', spatial_features, self.input_size)
        # Fork defect: LOCAL 3x3 pools with stride 4, not global pooling over space
        maxP = F.max_pool2d(spatial_features, kernel_size=3, stride=4)
        avgP = F.avg_pool2d(spatial_features, kernel_size=3, stride=4)
        compressed_maxP = self.conv(maxP)
        compressed_avgP = self.conv(avgP)
        mlp_out = self._mlp(compressed_maxP) + self._mlp(compressed_avgP)
        s = self.input_size // 2
        gate = torch.sigmoid(self.conv_t(mlp_out.reshape(-1, self.input_channels // 8, s, s)))
        return gate * spatial_features


class SpatialAttentionModule(nn.Module):
    """The fork's "spatial attention" (meant as SAGAN's): x (B x C x S x S) -> B x C x S x S.

    avgpool 3x3/2 then maxpool 3x3/2 (S=64 -> 15), 1x1 convs f, g, h (C -> C, no bias),
    softmax(f^T * g over channels) * h, bilinear upsampling back to S x S.
    """

    def __init__(self, input_size: int, input_channels: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = input_size // 2 - 1  # stored, unused, as in the fork
        self.conv_f = conv1x1(input_channels, input_channels)
        self.conv_g = conv1x1(input_channels, input_channels)
        self.conv_h = conv1x1(input_channels, input_channels)

    def forward(self, spatial_features: torch.Tensor) -> torch.Tensor:
        downsampled = F.max_pool2d(F.avg_pool2d(spatial_features, kernel_size=3, stride=2), kernel_size=3, stride=2)
        f = self.conv_f(downsampled)
        g = self.conv_g(downsampled)
        h = self.conv_h(downsampled)
        # Fork defect: element-wise product of f^T (H and W swapped) and g instead of a sum over positions,
        # softmax over CHANNELS (implicit-dim nn.Softmax() picks dim 1 for 4-D input), no gamma, no residual
        attention_map = torch.softmax(f.transpose(2, 3) * g, dim=1)
        return F.interpolate(h * attention_map, size=(self.input_size, self.input_size), mode='bilinear',
                             align_corners=False)


class VisualAttentionModule(nn.Module):
    """spatial_attention_module(channel_attention_module(h)); B x C x S x S in and out."""

    def __init__(self, input_size: int, input_channels: int):
        super().__init__()
        self.channel_attention_module = ChannelAttentionModule(input_size, input_channels)
        self.spatial_attention_module = SpatialAttentionModule(input_size, input_channels)

    def forward(self, hidden_stage_result: torch.Tensor) -> torch.Tensor:
        return self.spatial_attention_module(self.channel_attention_module(hidden_stage_result))


class DualAttentionModule(nn.Module):
    """cat(h + word context, h + visual(h)): B x C x S x S -> B x 2C x S x S.

    hidden_stage_result_size: S; hidden_stage_result_channels: C; word_features_size: nef;
    fix_attn_mask: give each sample its own word mask (the fork, like AttnGAN, mixes them).
    """

    def __init__(self, hidden_stage_result_size: int, hidden_stage_result_channels: int,
                 word_features_size: int, fix_attn_mask: bool = False):
        super().__init__()
        self.textual_attention_module = GlobalAttentionGeneral(hidden_stage_result_channels, word_features_size,
                                                               fix_mask=fix_attn_mask)
        self.visual_attention_module = VisualAttentionModule(hidden_stage_result_size,
                                                             hidden_stage_result_channels)

    def forward(self, hidden_stage_result: torch.Tensor, word_features: torch.Tensor,
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        self.textual_attention_module.applyMask(mask)
        # Fork defect: the word-attention map is discarded
        results_t, _ = self.textual_attention_module(hidden_stage_result, word_features)
        results_v = self.visual_attention_module(hidden_stage_result)
        return torch.cat((hidden_stage_result + results_t, hidden_stage_result + results_v), 1)


class DualAttn_NEXT_STAGE_G(nn.Module):
    """Refinement stage: h B x C x S x S -> dual attention (2C) -> r_num ResBlocks -> upBlock -> B x C x 2S x 2S.

    hidden_state_result_size: S (64 or 128); hidden_state_result_channels: C (GF_DIM); word_features_size:
    nef; sentence_features_size: ncf (stored by the fork's signature, unused); r_num: GAN.R_NUM.
    """

    def __init__(self, hidden_state_result_size: int, hidden_state_result_channels: int, word_features_size: int,
                 sentence_features_size: int, r_num: int = 2, fix_attn_mask: bool = False):
        super().__init__()
        c = hidden_state_result_channels
        self.dual_attention_module = DualAttentionModule(hidden_state_result_size, c, word_features_size,
                                                         fix_attn_mask)
        self.residual = nn.Sequential(*[ResBlock(c * 2) for _ in range(r_num)])
        self.upsample = upBlock(c * 2, c)

    def forward(self, hidden_stage_result: torch.Tensor, word_features: torch.Tensor,
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        """word_features: B x nef x T; mask: B x T bool (True = padding). No c_code, no attention returned."""
        out = self.dual_attention_module(hidden_stage_result, word_features, mask)
        return self.upsample(self.residual(out))


class DualAttn_G_NET(nn.Module):
    """The fork's DualAttnGAN generator (64, 128, 256 px stages).

    ngf: GAN.GF_DIM (multiple of 8); nef: TEXT.EMBEDDING_DIM; ncf: GAN.CONDITION_DIM; z_dim: GAN.Z_DIM;
    r_num: GAN.R_NUM; branch_num: TREE.BRANCH_NUM; fix_attn_mask: GAN.FIX_ATTN_MASK.
    """

    def __init__(self, ngf: int, nef: int, ncf: int, z_dim: int, r_num: int = 2, branch_num: int = 3,
                 fix_attn_mask: bool = False):
        super().__init__()
        _check_branch_num(branch_num)
        if ngf % 8:
            raise ConfigError(f'GAN.GF_DIM must be a multiple of 8 for the fork DualAttnGAN, got {ngf}')
        self.branch_num = branch_num
        self.hidden_state_result_channels = ngf
        self.word_features_size = nef
        self.sentence_features_size = ncf
        self.ca_net = CA_NET(nef, ncf)
        self.h_net1 = INIT_STAGE_G(ngf * 16, ncf, z_dim, init_relu='fc')  # the fork: Linear, BN, ReLU (no GLU)
        self.img_net1 = GET_IMAGE_G(ngf)
        # Fork defect: grid sizes 64 and 128 are built in (BASE_SIZE 64 only)
        if branch_num > 1:
            self.h_net2 = DualAttn_NEXT_STAGE_G(64, ngf, nef, ncf, r_num, fix_attn_mask)
            self.img_net2 = GET_IMAGE_G(ngf)
        if branch_num > 2:
            self.h_net3 = DualAttn_NEXT_STAGE_G(128, ngf, nef, ncf, r_num, fix_attn_mask)
            self.img_net3 = GET_IMAGE_G(ngf)

    def forward(self, z_code: torch.Tensor, sentence_features: torch.Tensor, word_features: torch.Tensor,
                mask: Optional[torch.Tensor]):
        """As G_NET.forward: returns fake_imgs (B x 3 x 64*2^i), att_maps (always [], fork defect), mu, logvar."""
        fake_imgs: List[torch.Tensor] = []
        c_code, mu, logvar = self.ca_net(sentence_features)
        h_code = self.h_net1(z_code, c_code)
        fake_imgs.append(self.img_net1(h_code))
        if self.branch_num > 1:
            h_code = self.h_net2(h_code, word_features, mask)
            fake_imgs.append(self.img_net2(h_code))
        if self.branch_num > 2:
            h_code = self.h_net3(h_code, word_features, mask)
            fake_imgs.append(self.img_net3(h_code))
        return fake_imgs, [], mu, logvar


# ====================================================================================== paper
class PaperChannelAttention(nn.Module):
    """CBAM channel attention: x * sigmoid(mlp(avgpool(x)) + mlp(maxpool(x))), pools global over space.

    channels: C; reduction: r (hidden width max(1, C // r)); one MLP (C -> C/r, ReLU, C/r -> C) shared
    by both pooled descriptors.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        if reduction < 1:
            raise ConfigError(f'GAN.PAPER_CAM_REDUCTION must be >= 1, got {reduction}')
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x H x W -> B x C x 1 x 1 gate in (0, 1)."""
        g = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return torch.sigmoid(g)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def sagan_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, materialise: bool = False) -> torch.Tensor:
    """o_i = sum_j softmax_j(q_i . k_j) v_j (unscaled logits, as SAGAN).

    q: B x N x d; k: B x M x d; v: B x M x c. Returns B x N x c. By default through
    ``scaled_dot_product_attention`` (flash / memory-efficient kernels: the N x M map is never stored);
    q, k, v are zero-padded to one common width, a multiple of 8, which the fused kernels need and
    which changes no dot product. materialise=True: the plain softmax(q k^T) v (for tests).
    """
    if materialise:
        return torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
    d, c = q.size(-1), v.size(-1)
    width = 8 * math.ceil(max(d, c) / 8)
    # the fused kernels also need a contiguous last dim; otherwise torch silently falls back to the N x M map
    q, k, v = (F.pad(t, (0, width - t.size(-1))) if t.size(-1) != width else t.contiguous() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0)
    return out.squeeze(1)[..., :c]


class PaperSpatialAttention(nn.Module):
    """SAGAN self-attention: x + gamma * o, o_i = sum_j softmax_j(q_i . k_j) v_j over all positions j.

    channels: C; query/key: 1x1 convs to max(1, C // 8); value: 1x1 conv to C; gamma: a learned scalar
    initialised to 0 (the module starts as the identity). pool: keys and values are max-pooled by this
    factor after their convs (SAGAN/BigGAN-style downsampling, 1 = none); the map is never materialised.
    """

    def __init__(self, channels: int, pool: int = 1):
        super().__init__()
        if pool < 1:
            raise ConfigError(f'GAN.PAPER_SAM_POOL must be >= 1, got {pool}')
        self.pool = pool
        qk = max(1, channels // 8)
        self.query = conv1x1(channels, qk, bias=True)
        self.key = conv1x1(channels, qk, bias=True)
        self.value = conv1x1(channels, channels, bias=True)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention_output(self, x: torch.Tensor, materialise: bool = False) -> torch.Tensor:
        """o (B x C x H x W), before gamma and the residual."""
        b, c, h, w = x.shape
        k, v = self.key(x), self.value(x)
        if self.pool > 1:
            if h % self.pool or w % self.pool:
                raise ConfigError(f'GAN.PAPER_SAM_POOL={self.pool} does not divide the {h}x{w} grid')
            k, v = F.max_pool2d(k, self.pool), F.max_pool2d(v, self.pool)
        q = self.query(x).flatten(2).transpose(1, 2)  # B x N x d
        o = sagan_attention(q, k.flatten(2).transpose(1, 2), v.flatten(2).transpose(1, 2), materialise)
        return o.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.attention_output(x)


class PaperVisualAttention(nn.Module):
    """spatial_attention(channel_attention(h)): B x C x H x W in and out."""

    def __init__(self, channels: int, cam_reduction: int = 8, sam_pool: int = 1):
        super().__init__()
        self.channel_attention = PaperChannelAttention(channels, cam_reduction)
        self.spatial_attention = PaperSpatialAttention(channels, sam_pool)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.spatial_attention(self.channel_attention(h))


class AttentionEmbedding(nn.Module):
    """cat(h + text context, h + visual) -> B x 2C x H x W; with conv=True followed by 1x1 conv, BN, ReLU."""

    def __init__(self, channels: int, conv: bool = False):
        super().__init__()
        self.fuse = nn.Sequential(conv1x1(2 * channels, 2 * channels), nn.BatchNorm2d(2 * channels),
                                  nn.ReLU(inplace=True)) if conv else None

    def forward(self, h: torch.Tensor, text_context: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        out = torch.cat((h + text_context, h + visual), 1)
        return self.fuse(out) if self.fuse is not None else out


class PaperDualAttentionModule(nn.Module):
    """Textual attention || visual attention, then the attention embedding.

    h: B x C x H x W, words: B x nef x T, mask: B x T (True = padding) -> (B x 2C x H x W, att B x T x H x W).
    """

    def __init__(self, channels: int, nef: int, cam_reduction: int = 8, sam_pool: int = 1, aem_conv: bool = False,
                 fix_attn_mask: bool = False):
        super().__init__()
        self.textual_attention = GlobalAttentionGeneral(channels, nef, fix_mask=fix_attn_mask)
        self.visual_attention = PaperVisualAttention(channels, cam_reduction, sam_pool)
        self.embedding = AttentionEmbedding(channels, aem_conv)

    def forward(self, h: torch.Tensor, word_embs: torch.Tensor, mask: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        context, att = self.textual_attention(h, word_embs, mask)
        return self.embedding(h, context, self.visual_attention(h)), att


@contextlib.contextmanager
def _frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Restore the BatchNorm running statistics on exit (a checkpoint's recomputation must not update them twice)."""
    saved = [(b, b.clone()) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: x + BN(1x1)(ReLU6(BN(dw3x3)(ReLU6(BN(1x1 expand)(x))))); C x H x W in and out.

    channels: C; expansion: t (hidden width t*C; t = 1 skips the expansion conv);
    checkpoint: in training, recompute the block's activations in backward instead of storing them
    (about t times fewer stored bytes; BN running statistics are updated once, not twice).
    """

    def __init__(self, channels: int, expansion: int = 6, checkpoint: bool = False):
        super().__init__()
        if expansion < 1:
            raise ConfigError(f'GAN.PAPER_IR_EXPANSION must be >= 1, got {expansion}')
        hidden = channels * expansion
        layers: List[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True),
                   nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels)]
        self.block = nn.Sequential(*layers)
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and self.training and torch.is_grad_enabled():
            if torch.compiler.is_compiling():  # compiled checkpoints recompute without the buffer updates
                out = checkpoint(self.block, x, use_reentrant=False, preserve_rng_state=False)
            else:
                out = checkpoint(self.block, x, use_reentrant=False, preserve_rng_state=False,
                                 context_fn=lambda: (contextlib.nullcontext(), _frozen_bn_stats(self.block)))
        else:
            out = self.block(x)
        return out + x


class PaperDualAttn_NEXT_STAGE_G(nn.Module):
    """Refinement stage: h B x C x H x W -> dual attention + embedding (2C) -> r_num inverted residuals ->
    upBlock -> (B x C x 2H x 2W, word attention B x T x H x W).

    ngf: C; nef: word-embedding size; the other arguments as :class:`PaperDualAttn_G_NET`.
    """

    def __init__(self, ngf: int, nef: int, r_num: int = 2, cam_reduction: int = 8, sam_pool: int = 1,
                 ir_expansion: int = 6, ir_checkpoint: bool = False, aem_conv: bool = False,
                 fix_attn_mask: bool = False):
        super().__init__()
        self.dual_attention = PaperDualAttentionModule(ngf, nef, cam_reduction, sam_pool, aem_conv, fix_attn_mask)
        self.residual = nn.Sequential(*[InvertedResidual(ngf * 2, ir_expansion, ir_checkpoint)
                                        for _ in range(r_num)])
        self.upsample = upBlock(ngf * 2, ngf)

    def forward(self, h_code: torch.Tensor, word_embs: torch.Tensor, mask: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        out, att = self.dual_attention(h_code, word_embs, mask)
        return self.upsample(self.residual(out)), att


class PaperDualAttn_G_NET(nn.Module):
    """DualAttn-GAN generator as the paper describes it (64, 128, 256 px stages).

    ngf: GAN.GF_DIM; nef: TEXT.EMBEDDING_DIM; ncf: GAN.CONDITION_DIM; z_dim: GAN.Z_DIM; r_num: GAN.R_NUM
    (inverted residual blocks per stage); branch_num: TREE.BRANCH_NUM; cam_reduction: GAN.PAPER_CAM_REDUCTION;
    sam_pool: GAN.PAPER_SAM_POOL; ir_expansion: GAN.PAPER_IR_EXPANSION; ir_checkpoint:
    GAN.PAPER_IR_CHECKPOINT; init_relu: GAN.PAPER_INIT_RELU; aem_conv: GAN.PAPER_AEM_CONV;
    fix_attn_mask: GAN.FIX_ATTN_MASK. Spectral normalisation (GAN.PAPER_SN_G) is applied by the builder,
    after the weight init, with :func:`apply_spectral_norm`.
    """

    def __init__(self, ngf: int, nef: int, ncf: int, z_dim: int, r_num: int = 2, branch_num: int = 3,
                 cam_reduction: int = 8, sam_pool: int = 1, ir_expansion: int = 6, ir_checkpoint: bool = False,
                 init_relu: str = 'both', aem_conv: bool = False, fix_attn_mask: bool = False):
        super().__init__()
        _check_branch_num(branch_num)
        if ngf < 1:
            raise ConfigError(f'GAN.GF_DIM must be a positive integer, got {ngf}')
        self.branch_num = branch_num
        self.ca_net = CA_NET(nef, ncf)
        self.h_net1 = INIT_STAGE_G(ngf * 16, ncf, z_dim, init_relu)
        self.img_net1 = GET_IMAGE_G(ngf)
        stage = dict(ngf=ngf, nef=nef, r_num=r_num, cam_reduction=cam_reduction, sam_pool=sam_pool,
                     ir_expansion=ir_expansion, ir_checkpoint=ir_checkpoint, aem_conv=aem_conv,
                     fix_attn_mask=fix_attn_mask)
        if branch_num > 1:
            self.h_net2 = PaperDualAttn_NEXT_STAGE_G(**stage)
            self.img_net2 = GET_IMAGE_G(ngf)
        if branch_num > 2:
            self.h_net3 = PaperDualAttn_NEXT_STAGE_G(**stage)
            self.img_net3 = GET_IMAGE_G(ngf)

    def forward(self, z_code: torch.Tensor, sent_emb: torch.Tensor, word_embs: torch.Tensor,
                mask: Optional[torch.Tensor]):
        """As G_NET.forward: fake_imgs (B x 3 x 64*2^i), att_maps (B x T x 64*2^j per refinement stage),
        mu, logvar."""
        fake_imgs: List[torch.Tensor] = []
        att_maps: List[torch.Tensor] = []
        c_code, mu, logvar = self.ca_net(sent_emb)
        h_code = self.h_net1(z_code, c_code)
        fake_imgs.append(self.img_net1(h_code))
        for k in range(2, self.branch_num + 1):
            h_code, att = getattr(self, f'h_net{k}')(h_code, word_embs, mask)
            fake_imgs.append(getattr(self, f'img_net{k}')(h_code))
            att_maps.append(att)
        return fake_imgs, att_maps, mu, logvar


# ====================================================================================== spectral norm
SN_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def apply_spectral_norm(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Spectral normalisation (torch parametrization) on the weight of every conv / linear layer, in place.

    Apply it AFTER any weight initialisation (writes to ``layer.weight.data`` are lost once the weight is
    parametrised). Layers already parametrised are left alone. The state_dict keys change to
    ``<layer>.parametrizations.weight.original`` plus the power-iteration buffers ``..._u`` / ``..._v``.
    Returns the module.
    """
    for m in module.modules():
        if isinstance(m, SN_LAYER_TYPES) and not parametrize.is_parametrized(m, 'weight'):
            _torch_spectral_norm(m, 'weight', n_power_iterations=n_power_iterations, eps=eps)
    return module


def spectral_norm_discriminator(netD: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Spectral normalisation on all convs of a built D_NET64/128/256 (models.py stays unchanged)."""
    return apply_spectral_norm(netD, n_power_iterations)


def count_spectral_norm(module: nn.Module) -> Tuple[int, int]:
    """(layers with spectral norm, conv / linear layers in all)."""
    layers = [m for m in module.modules() if isinstance(m, SN_LAYER_TYPES)]
    return sum(parametrize.is_parametrized(m, 'weight') for m in layers), len(layers)
