"""Inception-v3 networks for the evaluation metrics, and where their weights are found.

Three networks, each with the preprocessing of the protocol it serves:

* :class:`FIDInceptionV3`: the FID network of TTUR / pytorch-fid, i.e. the TensorFlow graph
  ``inception-2015-12-05`` in PyTorch. Torchvision's Inception-v3 layout with the three changes
  of that graph (average pools that ignore the zero padding; a max pool in the last block's
  pool branch; 1008 classes). Its ``state_dict`` keys equal those of pytorch-fid's
  ``fid_inception_v3()``, so pytorch-fid's weight file ``pt_inception-2015-12-05-6726825d.pth``
  loads unchanged.
* :class:`LegacyInceptionFeatures`: torchvision's ImageNet Inception-v3 pool features with the
  input handling of the DM-GAN / DF-GAN FID code (the AttnGAN-lineage tables).
* :func:`imagenet_classifier` / :func:`load_classifier`: Inception-v3 logits for the Inception
  Score (torchvision ImageNet weights, or a checkpoint written by ``eval/finetune_inception.py``).

All feature/logit modules take ``uint8`` or ``[0, 1]`` float images ``B x 3 x H x W``.
No weights are ever downloaded: :func:`find_weights` looks in the torch hub checkpoint cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``) or takes a path,
and otherwise raises :class:`WeightsNotFoundError` naming the file, its URL and where to put it.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, InputError, MissingFileError
from ..weights import read_torch_file

FID_WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   'pt_inception-2015-12-05-6726825d.pth')
FID_WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
TORCHVISION_WEIGHTS_URL = 'https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth'
# The first name is torchvision's current file; the second the same ImageNet weights as saved
# by torchvision < 0.13 (the file DM-GAN / DF-GAN used through pretrained=True).
TORCHVISION_WEIGHTS_FILES = ('inception_v3_google-0cc3c7bd.pth', 'inception_v3_google-1a9a5a14.pth')

FEATURE_DIM = 2048
INPUT_SIZE = 299


class WeightsNotFoundError(MissingFileError):
    """A weight file is neither at the given path nor in the torch hub checkpoint cache."""


def checkpoint_dir() -> Path:
    """The torch hub checkpoint cache: ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/...``)."""
    return Path(torch.hub.get_dir()) / 'checkpoints'


def find_weights(file_names: str | Iterable[str], url: str, path: str | os.PathLike | None = None,
                 what: str = 'weights') -> Path:
    """Return the weight file: ``path`` if given, else the first of ``file_names`` in the cache.

    Raises WeightsNotFoundError with the file name, its download URL and the cache folder.
    """
    names = [file_names] if isinstance(file_names, str) else list(file_names)
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p.resolve()
        raise WeightsNotFoundError(f'{what}: no file at {p} (given by --weights / path). '
                                   f'Expected {names[0]}, downloadable from {url}')
    cache = checkpoint_dir()
    for name in names:
        if (cache / name).is_file():
            return cache / name
    raise WeightsNotFoundError(
        f'{what}: {names[0]} not found in the torch hub checkpoint cache {cache}.\n'
        f'  Download it from {url}\n'
        f'  and put it there (mkdir -p {cache} && wget -P {cache} {url}),\n'
        f'  or set $TORCH_HOME to a folder whose hub/checkpoints holds it, or pass its path '
        f'(--weights PATH).')


def _load_state_dict(path: Path) -> dict:
    obj = read_torch_file(path, 'weights')
    if isinstance(obj, dict) and 'state_dict' in obj and isinstance(obj['state_dict'], dict):
        obj = obj['state_dict']
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: expected a state_dict, got {type(obj).__name__}')
    return obj



def fold_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for inference in which every ``conv -> bn`` pair (modules with ``conv`` and
    ``bn`` children: ours and torchvision's BasicConv2d) is one convolution with a bias: the BatchNorm's
    running statistics and affine parameters are folded into the conv weights and the bn becomes an
    identity. Saves a full memory pass per convolution (~12% of a CPU forward); the outputs change by
    float rounding only (~1e-6 relative). The copy is for eval mode only: training it would be wrong.
    """
    net = copy.deepcopy(net).eval()
    with torch.no_grad():
        for m in net.modules():
            conv, bn = getattr(m, 'conv', None), getattr(m, 'bn', None)
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            conv.bias = nn.Parameter(bias)
            m.bn = nn.Identity()
    return net

# ----------------------------------------------------------------------------- FID network

class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU; keys ``conv.*`` and ``bn.*``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _tf_avg_pool(x):
    # TF's 3x3 SAME average pool divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | TF avg pool-1x1 -> 224 + pool_features ch."""

    def __init__(self, in_ch: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_ch, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_ch, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_ch, pool_features, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | max pool/2 -> 768 ch."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class FIDInceptionC(nn.Module):
    """Mixed_6b..6e: 1x1 | factorised 7x7 | double factorised 7x7 | TF avg pool-1x1 -> 768 ch."""

    def __init__(self, in_ch: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_ch, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_ch, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_ch, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_ch, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2 -> 1280 ch."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_ch, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_ch, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class FIDInceptionE(nn.Module):
    """Mixed_7b / 7c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1 -> 2048 ch.

    ``pool='avg'``: TF average pool (Mixed_7b). ``pool='max'``: the 2015-12-05 graph's
    Mixed_7c uses a max pool here (where the Inception-v3 paper has an average pool).
    """

    def __init__(self, in_ch: int, pool: str = 'avg'):
        super().__init__()
        if pool not in ('avg', 'max'):
            raise InputError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_ch, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_ch, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_ch, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == 'max':
            bp = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            bp = _tf_avg_pool(x)
        bp = self.branch_pool(bp)
        return torch.cat([b1, b3, bd, bp], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception network (TF graph 2015-12-05): images -> 2048-d pool3 features.

    Input: ``B x 3 x H x W`` uint8 (0..255) or float in [0, 1], any H, W. As pytorch-fid:
    bilinear resize to 299 x 299 (align_corners=False, no antialias; skipped when already
    299, where it is the identity), scaling to [-1, 1], the network, global average pool.
    Output: ``B x 2048`` float32. ``logits()`` gives the 1008-way head (unused by FID).
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool='avg')
        self.Mixed_7c = FIDInceptionE(2048, pool='max')
        self.fc = nn.Linear(2048, 1008)
        self.eval()
        self.requires_grad_(False)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 / [0, 1] ``B x 3 x H x W`` -> float ``B x 3 x 299 x 299`` in [-1, 1]."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode='bilinear',
                              align_corners=False)
        return 2 * x - 1

    def forward_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``B x 3 x 299 x 299`` -> ``B x 2048`` pool3 features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_preprocessed(self.preprocess(images))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``B x 1008`` logits of the TF graph's head (index 0 is its 'background' class)."""
        return self.fc(self(images))


def fid_inception_v3(weights: str | os.PathLike | None = None) -> FIDInceptionV3:
    """FIDInceptionV3 with pytorch-fid's weight file (cache lookup, or the given path)."""
    path = find_weights(FID_WEIGHTS_FILE, FID_WEIGHTS_URL, weights, what='FID Inception weights')
    net = FIDInceptionV3()
    net.load_state_dict(_load_state_dict(path))
    net.weights_path = str(path)
    return net


# ----------------------------------------------------------------------------- torchvision nets

def _torchvision_inception(num_classes: int = 1000) -> nn.Module:
    from torchvision.models import inception_v3
    net = inception_v3(weights=None, aux_logits=False, init_weights=False,
                       transform_input=False, num_classes=num_classes)
    return net.eval().requires_grad_(False)


def _load_without_aux(net: nn.Module, state_dict: dict, path) -> None:
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith('AuxLogits.')}
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as e:
        raise CheckpointError(f'{path}: not an Inception-v3 state_dict of this shape: {e}') from None


def _torchvision_pool(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for name in ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'maxpool1', 'Conv2d_3b_1x1',
                 'Conv2d_4a_3x3', 'maxpool2', 'Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a',
                 'Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e', 'Mixed_7a', 'Mixed_7b',
                 'Mixed_7c'):
        x = getattr(net, name)(x)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


class LegacyInceptionFeatures(nn.Module):
    """Torchvision ImageNet Inception-v3 pool features as the DM-GAN / DF-GAN FID code computes them.

    Input: ``B x 3 x 299 x 299`` uint8 or [0, 1] float (their loader resizes with PIL to
    299 x 299 before this; other sizes get a bilinear align_corners=True resize, as their
    ``F.upsample``). Output ``B x 2048``.
    """

    _MEAN = (0.485, 0.456, 0.406)
    _STD = (0.229, 0.224, 0.225)

    def __init__(self):
        super().__init__()
        self.net = _torchvision_inception(1000)
        scale = torch.tensor([s / 0.5 for s in self._STD]).view(1, 3, 1, 1)
        shift = torch.tensor([(m - 0.5) / 0.5 for m in self._MEAN]).view(1, 3, 1, 1)
        self.register_buffer('scale', scale, persistent=False)
        self.register_buffer('shift', shift, persistent=False)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode='bilinear', align_corners=True)
        # DM-GAN/DF-GAN quirk: torchvision's ImageNet->[-1,1] input transform applied to [0,1]
        # images (not ImageNet-normalised ones), so the network sees about [-0.03, 0.43].
        return x * self.scale + self.shift

    def forward_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        return _torchvision_pool(self.net, x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_preprocessed(self.preprocess(images))


def legacy_inception(weights: str | os.PathLike | None = None) -> LegacyInceptionFeatures:
    """LegacyInceptionFeatures with torchvision's ImageNet weights (cache lookup or path)."""
    path = find_weights(TORCHVISION_WEIGHTS_FILES, TORCHVISION_WEIGHTS_URL, weights,
                        what='torchvision ImageNet Inception-v3 weights')
    net = LegacyInceptionFeatures()
    _load_without_aux(net.net, _load_state_dict(path), path)
    net.weights_path = str(path)
    return net


class InceptionClassifier(nn.Module):
    """Inception-v3 class probabilities' logits for the Inception Score.

    Input ``B x 3 x H x W`` uint8 / [0, 1] float; bilinear resize to 299 if needed
    (align_corners=False), scaling to [-1, 1] (the input range of the TF-ported torchvision
    weights with ``transform_input=False``, as the common PyTorch IS code). Output ``B x K``.
    """

    def __init__(self, num_classes: int = 1000, class_names: list[str] | None = None,
                 description: str = ''):
        super().__init__()
        self.net = _torchvision_inception(num_classes)
        self.num_classes = num_classes
        self.class_names = class_names
        self.description = description
        self.eval()

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        return FIDInceptionV3.preprocess(images)

    def forward_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(_torchvision_pool(self.net, x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_preprocessed(self.preprocess(images))


def imagenet_classifier(weights: str | os.PathLike | None = None) -> InceptionClassifier:
    """Torchvision's ImageNet Inception-v3 (1000 classes) from the cache or a path."""
    path = find_weights(TORCHVISION_WEIGHTS_FILES, TORCHVISION_WEIGHTS_URL, weights,
                        what='torchvision ImageNet Inception-v3 weights')
    clf = InceptionClassifier(1000, description=f'torchvision ImageNet Inception-v3 ({path})')
    _load_without_aux(clf.net, _load_state_dict(path), path)
    return clf


CLASSIFIER_FORMAT = 'attngan-inception-classifier-v1'


def save_classifier(path: str | os.PathLike, net: nn.Module, class_names: list[str],
                    meta: dict | None = None) -> None:
    """Write a torchvision Inception-v3 classifier (any head size) in the format load_classifier reads."""
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith('AuxLogits.')}
    torch.save({'format': CLASSIFIER_FORMAT, 'arch': 'torchvision.inception_v3',
                'num_classes': len(class_names), 'class_names': list(class_names),
                'input': '299x299 bilinear, [-1, 1]', 'meta': dict(meta or {}),
                'state_dict': sd}, path)


def load_classifier(path: str | os.PathLike) -> InceptionClassifier:
    """Read a checkpoint written by save_classifier (eval/finetune_inception.py)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(f'classifier checkpoint {p} does not exist '
                                   f'(write one with eval/finetune_inception.py)')
    ckpt = read_torch_file(p, 'classifier checkpoint')
    if not isinstance(ckpt, dict) or ckpt.get('format') != CLASSIFIER_FORMAT:
        raise CheckpointError(f'{p}: not a classifier checkpoint of eval/finetune_inception.py '
                         f"(missing format={CLASSIFIER_FORMAT!r}); for ImageNet weights use "
                         f"--classifier imagenet [--weights {p}]")
    meta = ckpt.get('meta', {})
    desc = (f"Inception-v3 fine-tuned on {meta.get('dataset', '?')} "
            f"({ckpt['num_classes']} classes: {meta.get('classes', '?')}; {p})")
    clf = InceptionClassifier(ckpt['num_classes'], ckpt.get('class_names'), desc)
    _load_without_aux(clf.net, ckpt['state_dict'], p)
    return clf


# ----------------------------------------------------------------------------- test weights

def _hash_uniform(n: int, salt: int) -> np.ndarray:
    """n values in [-0.5, 0.5) from a splitmix64 hash of (index, salt): exact on any platform."""
    with np.errstate(over='ignore'):
        z = np.arange(n, dtype=np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) - 0.5


def rule_filled_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A deterministic, download-free state_dict for ``module`` (tests and benchmarks).

    Each tensor is filled from a hash of its element index and its key's position: conv and
    linear weights uniform with He variance (2 / fan_in), BN weight 1 +- 0.1, bias +- 0.05,
    running mean +- 0.05, running var 1 .. 1.5, so activations stay O(1) through the network.
    """
    out = {}
    for salt, (key, t) in enumerate(module.state_dict().items(), start=1):
        if not t.is_floating_point():
            out[key] = t.clone()
            continue
        u = torch.from_numpy(_hash_uniform(t.numel(), salt)).reshape(t.shape)
        if key.endswith('running_var'):
            v = 1.25 + u * 0.5
        elif key.endswith('running_mean') or key.endswith('bias'):
            v = u * 0.1
        elif t.dim() == 1:  # BN weight
            v = 1.0 + u * 0.2
        else:
            fan_in = t[0].numel()
            v = u * (12 * 2 / fan_in) ** 0.5
        out[key] = v.to(t.dtype)
    return out


def rule_fill_(module: nn.Module) -> nn.Module:
    """Load :func:`rule_filled_state_dict` into ``module`` in place; returns it."""
    module.load_state_dict(rule_filled_state_dict(module))
    return module
