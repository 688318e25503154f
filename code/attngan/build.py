"""Builders: the only place where a :class:`~attngan.config.Config` is mapped onto module constructors.

Each builder logs the parameter count of what it builds (logger ``attngan.build``, INFO level).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Union

import torch
import torch.nn as nn
import yaml

from .config import Config, ConfigError, resolve_path
from .dualAttnModel import DualAttn_G_NET, PaperDualAttn_G_NET, apply_spectral_norm, spectral_norm_discriminator
from .models import (CNN_ENCODER, D_NET64, D_NET128, D_NET256, G_DCGAN, G_NET, RNN_ENCODER, SmallCNNEncoder,
                     count_parameters, weights_init)
from .weights import load_state_dict_file

logger = logging.getLogger(__name__)

__all__ = ['build_text_encoder', 'build_trained_text_encoder', 'check_text_encoder_config', 'build_image_encoder',
           'build_generator', 'build_discriminators', 'inception_weights', 'log_parameter_count']

Device = Optional[Union[str, torch.device]]


def log_parameter_count(name: str, module: nn.Module) -> int:
    """Log '<name>: N parameters (M trainable)' and return N."""
    n, t = count_parameters(module), count_parameters(module, trainable_only=True)
    logger.info('%s: %s parameters (%s trainable)', name, f'{n:,}', f'{t:,}')
    return n


def _finish(module: nn.Module, name: str, device: Device) -> nn.Module:
    log_parameter_count(name, module)
    return module.to(device) if device is not None else module


def build_text_encoder(cfg: Config, n_words: int, device: Device = None) -> RNN_ENCODER:
    """RNN_ENCODER(n_words, nhidden=TEXT.EMBEDDING_DIM, RNN_TYPE, dropout TEXT.RNN_DROPOUT, TEXT.SENT_POOL);
    ninput 300 as the original."""
    if cfg.TEXT.SENT_POOL not in RNN_ENCODER.SENT_POOLS:
        raise ConfigError(f'TEXT.SENT_POOL: unknown sentence pooling {cfg.TEXT.SENT_POOL!r} '
                          f'(expected one of {RNN_ENCODER.SENT_POOLS})')
    net = RNN_ENCODER(n_words, drop_prob=cfg.TEXT.RNN_DROPOUT, nhidden=cfg.TEXT.EMBEDDING_DIM,
                      rnn_type=cfg.RNN_TYPE, n_steps=cfg.TEXT.WORDS_NUM, sent_pool=cfg.TEXT.SENT_POOL)
    return _finish(net, 'RNN_ENCODER', device)


def check_text_encoder_config(cfg: Config, path: Union[str, Path]) -> None:
    """Raise ConfigError when the run that wrote text encoder ``path`` (its ``config.yaml`` two folders up,
    as in ``<run>/Model/text_encoder<N>.pth``) pooled sentences otherwise than TEXT.SENT_POOL says.

    The pooling has no parameters, so the weights cannot tell; encoders outside a run folder (the released
    ones: 'last') are not checked."""
    run_config = Path(path).resolve().parent.parent / 'config.yaml'
    if not run_config.is_file():
        return
    try:
        trained = (yaml.safe_load(run_config.read_text(encoding='utf-8')) or {}).get('TEXT', {})
    except (OSError, yaml.YAMLError, AttributeError):
        return
    pool = trained.get('SENT_POOL', 'last')
    if pool != cfg.TEXT.SENT_POOL:
        raise ConfigError(f'text encoder {path} was trained with TEXT.SENT_POOL={pool!r} ({run_config}); '
                          f'this config has {cfg.TEXT.SENT_POOL!r}: set TEXT.SENT_POOL: {pool}')


def build_trained_text_encoder(cfg: Config, n_words: int, path: Union[str, Path]) -> RNN_ENCODER:
    """build_text_encoder, its run's TEXT.SENT_POOL checked, weights from ``path`` (a text_encoder<N>.pth)."""
    check_text_encoder_config(cfg, path)
    net = build_text_encoder(cfg, n_words)
    return load_state_dict_file(path, net, 'text encoder')


def inception_weights(cfg: Config) -> str:
    """DAMSM.INCEPTION_WEIGHTS: 'imagenet', 'random', or a path (relative to the repository root)."""
    w = cfg.DAMSM.INCEPTION_WEIGHTS
    return w if w in ('imagenet', 'random') else str(resolve_path(w))


def build_image_encoder(cfg: Config, nef: Optional[int] = None, device: Device = None,
                        weights: Optional[str] = None) -> nn.Module:
    """The DAMSM image encoder (DAMSM.IMAGE_ENCODER: CNN_ENCODER, or SmallCNNEncoder for toy runs).

    nef: its embedding size; callers that load trained encoders pass TEXT.EMBEDDING_DIM. None applies the
    original's rule (CNN_ENCODER.__init__): TEXT.EMBEDDING_DIM when TRAIN.FLAG, else 256 ("uniform ranker").
    weights: overrides DAMSM.INCEPTION_WEIGHTS; 'none' when a DAMSM image_encoder file is loaded next.
    """
    if nef is None:
        nef = cfg.TEXT.EMBEDDING_DIM if cfg.TRAIN.FLAG else 256
    kind = cfg.DAMSM.IMAGE_ENCODER
    if kind == 'small_cnn':
        net = SmallCNNEncoder(nef, image_size=cfg.DAMSM.IMAGE_SIZE, width=cfg.DAMSM.SMALL_CNN_WIDTH)
        return _finish(net, 'SmallCNNEncoder', device)
    if kind != 'inception_v3':
        raise ConfigError(f"DAMSM.IMAGE_ENCODER: unknown image encoder {kind!r} (expected 'inception_v3' or "
                          "'small_cnn')")
    net = CNN_ENCODER(nef, weights=weights or inception_weights(cfg), align_corners=cfg.DAMSM.ALIGN_CORNERS,
                      # a trained trunk is not frozen: DAMSM.TRUNK_BN_EVAL is about the frozen one
                      train_trunk=cfg.DAMSM.TRAIN_TRUNK, trunk_bn_eval=cfg.DAMSM.TRUNK_BN_EVAL and not cfg.DAMSM.TRAIN_TRUNK,
                      image_size=cfg.DAMSM.IMAGE_SIZE)
    return _finish(net, 'CNN_ENCODER', device)


DUAL_ATTN_VARIANTS = ('fork', 'paper')


def _dual_attn_variant(cfg: Config) -> Optional[str]:
    """None without GAN.DUAL_ATTN, else the checked GAN.DUAL_ATTN_VARIANT."""
    if not cfg.GAN.DUAL_ATTN:
        return None
    variant = cfg.GAN.DUAL_ATTN_VARIANT
    if variant not in DUAL_ATTN_VARIANTS:
        raise ConfigError(f'GAN.DUAL_ATTN_VARIANT must be one of {DUAL_ATTN_VARIANTS}, got {variant!r}')
    if cfg.GAN.B_DCGAN:
        raise ConfigError('GAN.DUAL_ATTN and GAN.B_DCGAN cannot both be true (the fork silently built G_DCGAN)')
    return variant


def _build_dual_attn_generator(cfg: Config, device: Device, init_weights: bool) -> nn.Module:
    """DualAttn_G_NET (variant 'fork') or PaperDualAttn_G_NET (variant 'paper', GAN.PAPER_* keys)."""
    gan = cfg.GAN
    args = dict(ngf=gan.GF_DIM, nef=cfg.TEXT.EMBEDDING_DIM, ncf=gan.CONDITION_DIM, z_dim=gan.Z_DIM,
                r_num=gan.R_NUM, branch_num=cfg.TREE.BRANCH_NUM, fix_attn_mask=gan.FIX_ATTN_MASK)
    if _dual_attn_variant(cfg) == 'fork':
        if cfg.TREE.BASE_SIZE != 64:
            raise ConfigError(f'TREE.BASE_SIZE must be 64 for the fork DualAttnGAN (grid sizes 64/128 are '
                             f'built in), got {cfg.TREE.BASE_SIZE}')
        net = DualAttn_G_NET(**args)
    else:
        net = PaperDualAttn_G_NET(**args, cam_reduction=gan.PAPER_CAM_REDUCTION, sam_pool=gan.PAPER_SAM_POOL,
                                  ir_expansion=gan.PAPER_IR_EXPANSION, ir_checkpoint=gan.PAPER_IR_CHECKPOINT,
                                  init_relu=gan.PAPER_INIT_RELU, aem_conv=gan.PAPER_AEM_CONV)
    if init_weights:
        net.apply(weights_init)
    if isinstance(net, PaperDualAttn_G_NET) and gan.PAPER_SN_G:
        apply_spectral_norm(net)  # after the init: writes to a parametrised weight's .data would be lost
    return _finish(net, type(net).__name__, device)


def build_generator(cfg: Config, device: Device = None, init_weights: bool = True) -> nn.Module:
    """G_NET (or G_DCGAN when GAN.B_DCGAN) from GAN.* / TEXT.EMBEDDING_DIM / TREE.BRANCH_NUM; with
    GAN.DUAL_ATTN the DualAttnGAN generator of GAN.DUAL_ATTN_VARIANT ('fork' or 'paper').

    init_weights: apply the original's weights_init (orthogonal), as its trainer does before loading.
    """
    if cfg.GAN.DUAL_ATTN:
        return _build_dual_attn_generator(cfg, device, init_weights)
    cls = G_DCGAN if cfg.GAN.B_DCGAN else G_NET
    net = cls(ngf=cfg.GAN.GF_DIM, nef=cfg.TEXT.EMBEDDING_DIM, ncf=cfg.GAN.CONDITION_DIM, z_dim=cfg.GAN.Z_DIM,
              r_num=cfg.GAN.R_NUM, branch_num=cfg.TREE.BRANCH_NUM, fix_attn_mask=cfg.GAN.FIX_ATTN_MASK)
    if init_weights:
        net.apply(weights_init)
    return _finish(net, cls.__name__, device)


def build_discriminators(cfg: Config, device: Device = None, init_weights: bool = True) -> List[nn.Module]:
    """[D_NET64, D_NET128, D_NET256][:TREE.BRANCH_NUM]; with GAN.B_DCGAN a single D for the final
    resolution without UNCOND_DNET (b_jcu=False), as the original trainer. With GAN.DUAL_ATTN, variant
    'paper' and GAN.PAPER_SN_D, every conv of the Ds gets spectral normalisation."""
    ndf, nef, branch_num = cfg.GAN.DF_DIM, cfg.TEXT.EMBEDDING_DIM, cfg.TREE.BRANCH_NUM
    classes = [D_NET64, D_NET128, D_NET256]
    if branch_num not in (1, 2, 3):
        raise ConfigError(f'TREE.BRANCH_NUM must be 1, 2 or 3 (as the original), got {branch_num}')
    if cfg.GAN.B_DCGAN:
        netsD = [classes[branch_num - 1](ndf, nef, b_jcu=False)]
    else:
        netsD = [cls(ndf, nef, b_jcu=True) for cls in classes[:branch_num]]
    sn = _dual_attn_variant(cfg) == 'paper' and cfg.GAN.PAPER_SN_D
    for net in netsD:
        if init_weights:
            net.apply(weights_init)
        if sn:  # the paper DualAttnGAN's spectral norm, after the init (see build_generator)
            spectral_norm_discriminator(net)
        _finish(net, type(net).__name__, None)
    return [net.to(device) for net in netsD] if device is not None else netsD
