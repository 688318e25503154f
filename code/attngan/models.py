"""AttnGAN networks: DAMSM encoders, generators and discriminators (faithful port).

Class names, submodule names and ``state_dict`` keys, shapes and order are those of the original
``code/model.py`` (taoxugit/AttnGAN), so the released checkpoints load unchanged. Every module
takes explicit constructor arguments; only :mod:`attngan.build` maps a config onto them.

Original behaviours kept on purpose are marked ``# Original quirk:``.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .errors import AttnGANError, ConfigError
from .weights import read_torch_file
from .GlobalAttention import GlobalAttentionGeneral, conv1x1

logger = logging.getLogger(__name__)

__all__ = [
    'GLU', 'conv1x1', 'conv3x3', 'upBlock', 'upBlockReLU', 'Block3x3_relu', 'ResBlock', 'RNN_ENCODER',
    'CNN_ENCODER', 'CA_NET', 'INIT_STAGE_G', 'INIT_RELU_CHOICES', 'NEXT_STAGE_G', 'GET_IMAGE_G', 'G_NET',
    'G_DCGAN', 'Block3x3_leakRelu',
    'downBlock', 'encode_image_by_16times', 'D_GET_LOGITS', 'D_NET64', 'D_NET128', 'D_NET256',
    'weights_init', 'count_parameters', 'INCEPTION_URL', 'INCEPTION_FILE', 'InceptionWeightsError',
]


# ------------------------------------------------------------------ building blocks
class GLU(nn.Module):
    """Gated linear unit over channels: first half * sigmoid(second half) (B x 2C x ... -> B x C x ...)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nc = x.size(1)
        if nc % 2:
            raise ValueError(f'GLU needs an even number of channels, got {nc}')
        return F.glu(x, dim=1)


def conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)


def upBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """x2 nearest upsampling, conv3x3 to 2*out_planes, BN, GLU (keys: 1 = conv, 2 = BN)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode='nearest'),
        conv3x3(in_planes, out_planes * 2),
        nn.BatchNorm2d(out_planes * 2),
        GLU())


def Block3x3_relu(in_planes: int, out_planes: int) -> nn.Sequential:
    """conv3x3 to 2*out_planes, BN, GLU (spatial size kept; named 'relu' by the original)."""
    return nn.Sequential(
        conv3x3(in_planes, out_planes * 2),
        nn.BatchNorm2d(out_planes * 2),
        GLU())


class ResBlock(nn.Module):
    """x + (conv3x3 -> BN -> GLU -> conv3x3 -> BN)(x), channel_num channels in and out."""

    def __init__(self, channel_num: int):
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channel_num, channel_num * 2),
            nn.BatchNorm2d(channel_num * 2),
            GLU(),
            conv3x3(channel_num, channel_num),
            nn.BatchNorm2d(channel_num))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        out += x
        return out


def weights_init(m: nn.Module) -> None:
    """The original's ``miscc.utils.weights_init`` (use with ``module.apply``): orthogonal conv and
    linear weights (gain 1), linear biases 0, BatchNorm weight N(1, 0.02) and bias 0."""
    if isinstance(m, nn.modules.conv._ConvNd):
        nn.init.orthogonal_(m.weight.data, 1.0)
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)
    elif isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight.data, 1.0)
        if m.bias is not None:
            m.bias.data.fill_(0.0)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all, or only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------ DAMSM text encoder
class RNN_ENCODER(nn.Module):
    """Bidirectional LSTM/GRU text encoder of DAMSM.

    ntoken: vocabulary size (token 0 = padding); ninput: word-embedding size (300);
    nhidden: output size (per direction nhidden // 2 when bidirectional); rnn_type: 'LSTM' or 'GRU';
    n_steps: caption length (TEXT.WORDS_NUM; stored, unused, as in the original).
    sent_pool: how the sentence embedding is made (TEXT.SENT_POOL): 'last', the original's last forward and
    last backward states; 'max', the maximum of the word features over each caption's words (not in the
    original; no parameters, so the state_dict is the same).
    """

    SENT_POOLS = ('last', 'max')

    def __init__(self, ntoken: int, ninput: int = 300, drop_prob: float = 0.5, nhidden: int = 128,
                 nlayers: int = 1, bidirectional: bool = True, rnn_type: str = 'LSTM', n_steps: int = 18,
                 sent_pool: str = 'last'):
        super().__init__()
        if rnn_type not in ('LSTM', 'GRU'):
            raise ConfigError(f"RNN_TYPE must be 'LSTM' or 'GRU', got {rnn_type!r}")
        if sent_pool not in self.SENT_POOLS:
            raise ConfigError(f"sent_pool must be one of {self.SENT_POOLS}, got {sent_pool!r}")
        self.sent_pool = sent_pool
        self.n_steps = n_steps
        self.ntoken = ntoken
        self.ninput = ninput
        self.drop_prob = drop_prob
        self.nlayers = nlayers
        self.bidirectional = bidirectional
        self.rnn_type = rnn_type
        self.num_directions = 2 if bidirectional else 1
        self.nhidden = nhidden // self.num_directions  # per direction

        self.encoder = nn.Embedding(ntoken, ninput)
        self.drop = nn.Dropout(drop_prob)
        rnn_cls = nn.LSTM if rnn_type == 'LSTM' else nn.GRU
        # the original passes dropout=drop_prob, which does nothing with one layer (torch warns)
        self.rnn = rnn_cls(ninput, self.nhidden, nlayers, batch_first=True,
                           dropout=drop_prob if nlayers > 1 else 0.0, bidirectional=bidirectional)
        self.init_weights()

    def init_weights(self) -> None:
        """Embedding U(-0.1, 0.1); the RNN keeps torch's default init."""
        self.encoder.weight.data.uniform_(-0.1, 0.1)

    def init_hidden(self, bsz: int):
        """Zero initial state: (h0, c0) for LSTM, h0 for GRU; each nlayers*dirs x bsz x nhidden."""
        weight = next(self.parameters())
        shape = (self.nlayers * self.num_directions, bsz, self.nhidden)
        if self.rnn_type == 'LSTM':
            return (weight.new_zeros(shape), weight.new_zeros(shape))
        return weight.new_zeros(shape)

    def forward(self, captions: torch.Tensor, cap_lens, hidden, mask=None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """captions: B x n_steps int64 (0-padded); cap_lens: B lengths (tensor on any device, or list),
        sorted descending as the original requires (unsorted also works here); hidden: init_hidden(B).

        Returns words_emb (B x nhidden x max(cap_lens), zero past each length) and sent_emb
        (B x nhidden: last forward state, last backward state; with sent_pool 'max' the maximum of words_emb
        over each caption's words). ``mask`` is unused (original signature).
        """
        emb = self.drop(self.encoder(captions))
        if torch.is_tensor(cap_lens):
            lengths = cap_lens.detach().to('cpu', torch.int64)
        else:
            lengths = torch.as_tensor(cap_lens, dtype=torch.int64)
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        output, hidden = self.rnn(packed, hidden)
        output = pad_packed_sequence(output, batch_first=True)[0]
        words_emb = output.transpose(1, 2)  # B x nhidden*dirs x max(cap_lens)
        if self.sent_pool == 'max':
            # the last states must carry every attribute across the caption; a maximum over the words
            # reads each where it is said
            steps = torch.arange(words_emb.size(2), device=words_emb.device)
            pad = (steps[None, :] >= lengths.to(words_emb.device)[:, None]).unsqueeze(1)
            return words_emb, words_emb.masked_fill(pad, float('-inf')).amax(2)
        h = hidden[0] if self.rnn_type == 'LSTM' else hidden
        sent_emb = h.transpose(0, 1).contiguous().view(-1, self.nhidden * self.num_directions)
        return words_emb, sent_emb


# ------------------------------------------------------------------ DAMSM image encoder
INCEPTION_FILE = 'inception_v3_google-0cc3c7bd.pth'
INCEPTION_URL = 'https://download.pytorch.org/models/' + INCEPTION_FILE
_TRUNK = ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Conv2d_3b_1x1', 'Conv2d_4a_3x3',
          'Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c', 'Mixed_6d',
          'Mixed_6e', 'Mixed_7a', 'Mixed_7b', 'Mixed_7c')


class InceptionWeightsError(AttnGANError, RuntimeError):
    """The ImageNet Inception-v3 weights could not be found or downloaded."""


def _inception_cache_path() -> str:
    return os.path.join(torch.hub.get_dir(), 'checkpoints', INCEPTION_FILE)


def load_imagenet_inception_state() -> dict:
    """torchvision's ImageNet Inception-v3 state_dict, from the torch hub cache or downloaded there."""
    path = _inception_cache_path()
    if not os.path.isfile(path):
        try:
            return torch.hub.load_state_dict_from_url(INCEPTION_URL, map_location='cpu',
                                                      progress=True, weights_only=True)
        except Exception as e:  # offline, proxy, disk full, ...
            raise InceptionWeightsError(
                f'CNN_ENCODER needs the ImageNet Inception-v3 weights {INCEPTION_FILE!r} and could not '
                f'download them ({type(e).__name__}: {e}). Download {INCEPTION_URL} and put it in '
                f'{os.path.dirname(path)}/ (the torch hub cache, ~/.cache/torch/hub/checkpoints/ by '
                f'default), or set the config key DAMSM.INCEPTION_WEIGHTS to the path of that file '
                f"(or to 'random' for tests and toy runs).") from e
    return read_torch_file(path, 'ImageNet Inception-v3 weights')


class CNN_ENCODER(nn.Module):
    """Inception-v3 image encoder of DAMSM.

    nef: embedding size; weights: 'imagenet' (torchvision ImageNet weights for the trunk),
    'random' (He-initialised trunk, for tests/toy runs; logged as a warning), 'none' (left as
    constructed: the caller loads a full CNN_ENCODER state_dict, e.g. image_encoder200.pth) or a path to a
    torchvision Inception-v3 (or CNN_ENCODER) state_dict; align_corners: of the bilinear resize to 299
    (False: PyTorch >= 0.4, as the fixtures; True: PyTorch 0.3, under which the released encoders
    were trained); train_trunk: let the trunk train (the original freezes it); trunk_bn_eval: keep
    the trunk's BatchNorm layers in eval mode even when the module is in train mode; image_size:
    side of the resized input (DAMSM.IMAGE_SIZE; the original: 299, which gives 17 x 17 regions;
    smaller sizes, e.g. for CPU toy runs, give fewer regions and a global average pool).
    The trunk blocks keep torchvision's and the original's names (Conv2d_1a_3x3 ... Mixed_7c).
    """

    def __init__(self, nef: int, weights: str = 'imagenet', align_corners: bool = False,
                 train_trunk: bool = False, trunk_bn_eval: bool = False, image_size: int = 299):
        super().__init__()
        if image_size < 75:
            raise ConfigError(f'CNN_ENCODER: image_size must be at least 75 (Inception-v3), got {image_size}')
        from torchvision.models.inception import (BasicConv2d, InceptionA, InceptionB, InceptionC,
                                                  InceptionD, InceptionE)
        self.nef = nef
        self.align_corners = align_corners
        self.trunk_bn_eval = trunk_bn_eval
        self.image_size = image_size
        # the blocks of torchvision's Inception3, in its registration order (no AuxLogits / fc)
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.emb_features = conv1x1(768, nef)
        self.emb_cnn_code = nn.Linear(2048, nef)

        self._load_trunk(weights)
        for name in _TRUNK:
            for p in getattr(self, name).parameters():
                p.requires_grad = train_trunk
        self.init_trainable_weights()

    def _load_trunk(self, weights: str) -> None:
        if weights == 'none':  # the caller loads a whole CNN_ENCODER state_dict next (DAMSM checkpoint)
            return
        if weights == 'random':
            logger.warning('CNN_ENCODER: the Inception-v3 trunk is RANDOMLY initialised '
                           "(DAMSM.INCEPTION_WEIGHTS='random'): fine for tests and toy runs, "
                           'useless for real DAMSM training or evaluation')
            for name in _TRUNK:
                for m in getattr(self, name).modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode='fan_in', nonlinearity='relu')
            return
        if weights == 'imagenet':
            state, source = load_imagenet_inception_state(), f'ImageNet ({INCEPTION_FILE})'
        else:
            path = os.path.expanduser(str(weights))
            if not os.path.isfile(path):
                raise InceptionWeightsError(
                    f"DAMSM.INCEPTION_WEIGHTS: file not found: {path} (expected 'imagenet', 'random' "
                    f'or the path of an Inception-v3 state_dict such as {INCEPTION_FILE})')
            state, source = read_torch_file(path, 'DAMSM.INCEPTION_WEIGHTS'), path
        prefixes = tuple(n + '.' for n in _TRUNK)
        trunk_keys = [k for k in self.state_dict() if k.startswith(prefixes)]
        state = {k: v for k, v in state.items() if k.startswith(prefixes)}
        if not isinstance(state, dict):
            raise InceptionWeightsError(f'{source}: not an Inception-v3 state_dict but {type(state).__name__}')
        missing = [k for k in trunk_keys if k not in state and not k.endswith('num_batches_tracked')]
        if missing:
            raise InceptionWeightsError(f'{source}: not an Inception-v3 state_dict; '
                                        f'{len(missing)} trunk keys missing, e.g. {missing[:3]}')
        self.load_state_dict(state, strict=False)
        logger.info('CNN_ENCODER: Inception-v3 trunk loaded from %s', source)

    def init_trainable_weights(self) -> None:
        """emb_features and emb_cnn_code weights U(-0.1, 0.1) (their biases keep torch's init)."""
        self.emb_features.weight.data.uniform_(-0.1, 0.1)
        self.emb_cnn_code.weight.data.uniform_(-0.1, 0.1)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.trunk_bn_eval:
            for name in _TRUNK:
                for m in getattr(self, name).modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eval()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x: B x 3 x H x W in [-1, 1] (no ImageNet normalisation), resized to image_size bilinearly.

        Returns features (B x nef x 17 x 17 at 299: Mixed_6e regions) and cnn_code (B x nef: global code).
        """
        size = self.image_size
        if x.shape[-2:] != (size, size):  # at the target size the resize is the identity
            x = F.interpolate(x, size=(size, size), mode='bilinear', align_corners=self.align_corners)
        x = self.Conv2d_1a_3x3(x)                  # 32 x 149 x 149
        x = self.Conv2d_2a_3x3(x)                  # 32 x 147 x 147
        x = self.Conv2d_2b_3x3(x)                  # 64 x 147 x 147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 64 x 73 x 73
        x = self.Conv2d_3b_1x1(x)                  # 80 x 73 x 73
        x = self.Conv2d_4a_3x3(x)                  # 192 x 71 x 71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 192 x 35 x 35
        x = self.Mixed_5b(x)
        x = self.Mixed_5c(x)
        x = self.Mixed_5d(x)                       # 288 x 35 x 35
        x = self.Mixed_6a(x)
        x = self.Mixed_6b(x)
        x = self.Mixed_6c(x)
        x = self.Mixed_6d(x)
        x = self.Mixed_6e(x)                       # 768 x 17 x 17
        features = x
        x = self.Mixed_7a(x)
        x = self.Mixed_7b(x)
        x = self.Mixed_7c(x)                       # 2048 x 8 x 8
        if x.shape[-2:] == (8, 8):
            x = F.avg_pool2d(x, kernel_size=8).flatten(1)  # the original's pooling at 299
        else:
            x = x.mean((2, 3))
        cnn_code = self.emb_cnn_code(x)
        features = self.emb_features(features)
        return features, cnn_code



class SmallCNNEncoder(nn.Module):
    """A small image encoder with CNN_ENCODER's interface, for CPU toy runs (DAMSM.IMAGE_ENCODER 'small_cnn').

    Not in the original: a deviation for the embedded toy data, where no pretrained Inception-v3 can be
    had offline and a random one is a poor feature extractor (frozen) or far too slow to train on a CPU.
    Three stride-2 blocks (3x3 conv without bias, BatchNorm, LeakyReLU 0.2) of width, 2 and 4 x width
    channels give the regions; a fourth block (1x1 conv to 8 x width, BatchNorm, LeakyReLU), maximised over
    the regions, gives the global code. All trained. nef: embedding size; image_size: side of the
    bilinearly resized input (at least 16); width: channels of the first block.
    """

    def __init__(self, nef: int, image_size: int = 64, width: int = 32):
        super().__init__()
        if image_size < 16:
            raise ConfigError(f'SmallCNNEncoder: image_size must be at least 16, got {image_size}')
        self.nef = nef
        self.image_size = image_size

        def block(cin: int, cout: int, kernel: int = 3, stride: int = 2) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                                 nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))

        self.block1 = block(3, width)
        self.block2 = block(width, 2 * width)
        self.block3 = block(2 * width, 4 * width)
        # per region, not a fourth stride-2 block: a 4 x 4 grid merges the small parts (beak, tail) with
        # their neighbours
        self.block4 = block(4 * width, 8 * width, kernel=1, stride=1)
        self.emb_features = conv1x1(4 * width, nef)
        self.emb_cnn_code = nn.Linear(8 * width, nef)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x: B x 3 x H x W in [-1, 1]. Returns features (B x nef x S/8 x S/8 regions, S = image_size,
        rounded up) and cnn_code (B x nef, from the maximum of the last block over the regions)."""
        size = self.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False)
        regions = self.block3(self.block2(self.block1(x)))
        # max, not mean: a part's colour fills a few positions, and the mean dilutes it with background
        code = self.block4(regions).amax((2, 3))
        return self.emb_features(regions), self.emb_cnn_code(code)


# ------------------------------------------------------------------ generator
class CA_NET(nn.Module):
    """Conditioning augmentation: sent_emb (B x t_dim) -> c_code, mu, logvar (each B x c_dim).

    fc gives 4*c_dim values; GLU halves them to 2*c_dim = [mu, logvar].
    """

    def __init__(self, t_dim: int, c_dim: int):
        super().__init__()
        self.t_dim = t_dim
        self.c_dim = c_dim
        self.fc = nn.Linear(t_dim, c_dim * 4, bias=True)
        self.relu = GLU()

    def encode(self, text_embedding: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.fc(text_embedding))
        return x[:, :self.c_dim], x[:, self.c_dim:]

    def reparametrize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = logvar.mul(0.5).exp()
        # Original quirk: noise drawn in eval mode too, from the global generator of mu's device
        eps = torch.randn(std.size(), dtype=std.dtype, device=std.device)
        return eps * std + mu

    def forward(self, text_embedding: torch.Tensor):
        mu, logvar = self.encode(text_embedding)
        return self.reparametrize(mu, logvar), mu, logvar


def upBlockReLU(in_planes: int, out_planes: int) -> nn.Sequential:
    """x2 nearest upsampling, conv3x3 to out_planes, BN, ReLU (upBlock with ReLU instead of GLU; same keys)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode='nearest'), conv3x3(in_planes, out_planes),
                         nn.BatchNorm2d(out_planes), nn.ReLU(inplace=True))


#: Where the first stage uses ReLU instead of AttnGAN's GLU: 'none' (AttnGAN), 'fc' (the DualAttnGAN fork:
#: its fc only), 'upsample', 'both' (the DualAttnGAN paper: "ReLU instead of GLU in stage 1").
INIT_RELU_CHOICES = ('none', 'fc', 'upsample', 'both')


class INIT_STAGE_G(nn.Module):
    """First stage: (z B x z_dim, c_code B x ncf) -> B x ngf/16 x 64 x 64.

    init_relu: one of :data:`INIT_RELU_CHOICES`. A ReLU fc has half the width of a GLU one (GLU halves its
    input); the state_dict keys are the same in every case (fc.0, fc.1, upsample<k>.1, upsample<k>.2).
    """

    def __init__(self, ngf: int, ncf: int, z_dim: int, init_relu: str = 'none'):
        super().__init__()
        if init_relu not in INIT_RELU_CHOICES:
            raise ConfigError(f'GAN.PAPER_INIT_RELU must be one of {INIT_RELU_CHOICES}, got {init_relu!r}')
        self.gf_dim = ngf
        self.in_dim = z_dim + ncf
        relu_fc = init_relu in ('fc', 'both')
        width = ngf * 4 * 4 * (1 if relu_fc else 2)
        self.fc = nn.Sequential(
            nn.Linear(self.in_dim, width, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True) if relu_fc else GLU())
        up = upBlockReLU if init_relu in ('upsample', 'both') else upBlock
        self.upsample1 = up(ngf, ngf // 2)
        self.upsample2 = up(ngf // 2, ngf // 4)
        self.upsample3 = up(ngf // 4, ngf // 8)
        self.upsample4 = up(ngf // 8, ngf // 16)

    def forward(self, z_code: torch.Tensor, c_code: torch.Tensor) -> torch.Tensor:
        c_z_code = torch.cat((c_code, z_code), 1)  # c first, then z, as the original
        out_code = self.fc(c_z_code).view(-1, self.gf_dim, 4, 4)
        out_code = self.upsample1(out_code)  # ngf/2 x 8 x 8
        out_code = self.upsample2(out_code)  # ngf/4 x 16 x 16
        out_code = self.upsample3(out_code)  # ngf/8 x 32 x 32
        return self.upsample4(out_code)      # ngf/16 x 64 x 64


class NEXT_STAGE_G(nn.Module):
    """Refinement stage: h_code B x ngf x H x W + word attention -> B x ngf x 2H x 2W (and the attention).

    nef: word-embedding size; ncf: condition size (unused); r_num: residual blocks (GAN.R_NUM);
    fix_attn_mask: give each sample its own word mask (the original mixes them).
    """

    def __init__(self, ngf: int, nef: int, ncf: int, r_num: int = 2, fix_attn_mask: bool = False):
        super().__init__()
        self.gf_dim = ngf
        self.ef_dim = nef
        self.cf_dim = ncf
        self.num_residual = r_num
        self.att = GlobalAttentionGeneral(ngf, nef, fix_mask=fix_attn_mask)
        self.residual = nn.Sequential(*[ResBlock(ngf * 2) for _ in range(r_num)])
        self.upsample = upBlock(ngf * 2, ngf)

    def forward(self, h_code: torch.Tensor, c_code: Optional[torch.Tensor], word_embs: torch.Tensor,
                mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """word_embs: B x nef x T; mask: B x T bool (True = padding).
        Returns out (B x ngf x 2H x 2W) and att (B x T x H x W)."""
        # Original quirk: c_code is accepted but ignored (only word context conditions this stage)
        self.att.applyMask(mask)
        c_code, att = self.att(h_code, word_embs, mask)
        out_code = self.residual(torch.cat((h_code, c_code), 1))
        return self.upsample(out_code), att


class GET_IMAGE_G(nn.Module):
    """B x ngf x H x W -> B x 3 x H x W image in [-1, 1] (conv3x3 without bias, tanh)."""

    def __init__(self, ngf: int):
        super().__init__()
        self.gf_dim = ngf
        self.img = nn.Sequential(conv3x3(ngf, 3), nn.Tanh())

    def forward(self, h_code: torch.Tensor) -> torch.Tensor:
        return self.img(h_code)


def _check_branch_num(branch_num: int) -> None:
    if branch_num not in (1, 2, 3):
        raise ConfigError(f'TREE.BRANCH_NUM must be 1, 2 or 3 (as the original), got {branch_num}')


class G_NET(nn.Module):
    """AttnGAN generator with branch_num stages (64, 128, 256 px).

    ngf: GAN.GF_DIM; nef: TEXT.EMBEDDING_DIM; ncf: GAN.CONDITION_DIM; z_dim: GAN.Z_DIM;
    r_num: GAN.R_NUM; branch_num: TREE.BRANCH_NUM; fix_attn_mask: GAN.FIX_ATTN_MASK.
    """

    def __init__(self, ngf: int, nef: int, ncf: int, z_dim: int, r_num: int = 2, branch_num: int = 3,
                 fix_attn_mask: bool = False):
        super().__init__()
        _check_branch_num(branch_num)
        self.branch_num = branch_num
        self.ca_net = CA_NET(nef, ncf)
        self.h_net1 = INIT_STAGE_G(ngf * 16, ncf, z_dim)
        self.img_net1 = GET_IMAGE_G(ngf)
        if branch_num > 1:
            self.h_net2 = NEXT_STAGE_G(ngf, nef, ncf, r_num, fix_attn_mask)
            self.img_net2 = GET_IMAGE_G(ngf)
        if branch_num > 2:
            self.h_net3 = NEXT_STAGE_G(ngf, nef, ncf, r_num, fix_attn_mask)
            self.img_net3 = GET_IMAGE_G(ngf)

    def forward(self, z_code: torch.Tensor, sent_emb: torch.Tensor, word_embs: torch.Tensor,
                mask: Optional[torch.Tensor]):
        """z_code: B x z_dim; sent_emb: B x nef; word_embs: B x nef x T; mask: B x T bool (True = pad).

        Returns fake_imgs (list, B x 3 x 64*2^i each), att_maps (list, B x T x 64*2^j each), mu, logvar.
        """
        fake_imgs: List[torch.Tensor] = []
        att_maps: List[torch.Tensor] = []
        c_code, mu, logvar = self.ca_net(sent_emb)
        h_code = self.h_net1(z_code, c_code)
        fake_imgs.append(self.img_net1(h_code))
        if self.branch_num > 1:
            h_code, att1 = self.h_net2(h_code, c_code, word_embs, mask)
            fake_imgs.append(self.img_net2(h_code))
            att_maps.append(att1)
        if self.branch_num > 2:
            h_code, att2 = self.h_net3(h_code, c_code, word_embs, mask)
            fake_imgs.append(self.img_net3(h_code))
            att_maps.append(att2)
        return fake_imgs, att_maps, mu, logvar


class G_DCGAN(nn.Module):
    """AttnGAN generator with a single output image after all stages (the attnDCGAN configs)."""

    def __init__(self, ngf: int, nef: int, ncf: int, z_dim: int, r_num: int = 2, branch_num: int = 3,
                 fix_attn_mask: bool = False):
        super().__init__()
        _check_branch_num(branch_num)
        self.branch_num = branch_num
        self.ca_net = CA_NET(nef, ncf)
        self.h_net1 = INIT_STAGE_G(ngf * 16, ncf, z_dim)
        if branch_num > 1:
            self.h_net2 = NEXT_STAGE_G(ngf, nef, ncf, r_num, fix_attn_mask)
        if branch_num > 2:
            self.h_net3 = NEXT_STAGE_G(ngf, nef, ncf, r_num, fix_attn_mask)
        self.img_net = GET_IMAGE_G(ngf)

    def forward(self, z_code, sent_emb, word_embs, mask):
        """As G_NET.forward, but fake_imgs holds only the last stage's image."""
        att_maps: List[torch.Tensor] = []
        c_code, mu, logvar = self.ca_net(sent_emb)
        h_code = self.h_net1(z_code, c_code)
        if self.branch_num > 1:
            h_code, att1 = self.h_net2(h_code, c_code, word_embs, mask)
            att_maps.append(att1)
        if self.branch_num > 2:
            h_code, att2 = self.h_net3(h_code, c_code, word_embs, mask)
            att_maps.append(att2)
        return [self.img_net(h_code)], att_maps, mu, logvar


# ------------------------------------------------------------------ discriminators
def Block3x3_leakRelu(in_planes: int, out_planes: int) -> nn.Sequential:
    """conv3x3, BN, LeakyReLU(0.2) (spatial size kept)."""
    return nn.Sequential(
        conv3x3(in_planes, out_planes),
        nn.BatchNorm2d(out_planes),
        nn.LeakyReLU(0.2, inplace=True))


def downBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """4x4 stride-2 conv (no bias), BN, LeakyReLU(0.2): halves the spatial size."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 4, 2, 1, bias=False),
        nn.BatchNorm2d(out_planes),
        nn.LeakyReLU(0.2, inplace=True))


def encode_image_by_16times(ndf: int) -> nn.Sequential:
    """B x 3 x S x S -> B x 8*ndf x S/16 x S/16 (four 4x4 stride-2 convs; no BN after the first)."""
    return nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 8),
        nn.LeakyReLU(0.2, inplace=True))


class D_GET_LOGITS(nn.Module):
    """Logits head: h_code B x 8*ndf x 4 x 4 (+ condition B x nef if bcondition) -> B probabilities."""

    def __init__(self, ndf: int, nef: int, bcondition: bool = False):
        super().__init__()
        self.df_dim = ndf
        self.ef_dim = nef
        self.bcondition = bcondition
        if bcondition:
            self.jointConv = Block3x3_leakRelu(ndf * 8 + nef, ndf * 8)
        self.outlogits = nn.Sequential(
            nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4),
            nn.Sigmoid())

    def forward(self, h_code: torch.Tensor, c_code: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.bcondition and c_code is not None:
            c_code = c_code.view(-1, self.ef_dim, 1, 1).expand(-1, -1, 4, 4)
            h_c_code = self.jointConv(torch.cat((h_code, c_code), 1))  # image code first
        else:
            h_c_code = h_code
        # the sigmoid runs in float32 (a no-op on the faithful fp32 path): under bf16 autocast a
        # probability near 1 would round to 1 and the BCE gradient would vanish
        return self.outlogits[1](self.outlogits[0](h_c_code).float()).view(-1)


class D_NET64(nn.Module):
    """Discriminator for 64 x 64 images; forward gives the B x 8*ndf x 4 x 4 code.

    ndf: GAN.DF_DIM; nef: TEXT.EMBEDDING_DIM; b_jcu: also build the unconditional head UNCOND_DNET.
    """

    def __init__(self, ndf: int, nef: int, b_jcu: bool = True):
        super().__init__()
        self.img_code_s16 = encode_image_by_16times(ndf)
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False) if b_jcu else None
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)

    def forward(self, x_var: torch.Tensor) -> torch.Tensor:
        return self.img_code_s16(x_var)


class D_NET128(nn.Module):
    """Discriminator for 128 x 128 images (see D_NET64)."""

    def __init__(self, ndf: int, nef: int, b_jcu: bool = True):
        super().__init__()
        self.img_code_s16 = encode_image_by_16times(ndf)
        self.img_code_s32 = downBlock(ndf * 8, ndf * 16)
        self.img_code_s32_1 = Block3x3_leakRelu(ndf * 16, ndf * 8)
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False) if b_jcu else None
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)

    def forward(self, x_var: torch.Tensor) -> torch.Tensor:
        x_code8 = self.img_code_s16(x_var)
        x_code4 = self.img_code_s32(x_code8)
        return self.img_code_s32_1(x_code4)


class D_NET256(nn.Module):
    """Discriminator for 256 x 256 images (see D_NET64)."""

    def __init__(self, ndf: int, nef: int, b_jcu: bool = True):
        super().__init__()
        self.img_code_s16 = encode_image_by_16times(ndf)
        self.img_code_s32 = downBlock(ndf * 8, ndf * 16)
        self.img_code_s64 = downBlock(ndf * 16, ndf * 32)
        self.img_code_s64_1 = Block3x3_leakRelu(ndf * 32, ndf * 16)
        self.img_code_s64_2 = Block3x3_leakRelu(ndf * 16, ndf * 8)
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False) if b_jcu else None
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)

    def forward(self, x_var: torch.Tensor) -> torch.Tensor:
        x_code16 = self.img_code_s16(x_var)
        x_code8 = self.img_code_s32(x_code16)
        x_code4 = self.img_code_s64(x_code8)
        x_code4 = self.img_code_s64_1(x_code4)
        return self.img_code_s64_2(x_code4)
