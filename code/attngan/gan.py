"""AttnGAN / DualAttnGAN training: :class:`GANStep`, one faithful iteration of the original
``condGANTrainer.train`` loop body, and :class:`GANTask`, what :class:`~attngan.engine.trainer.Trainer` drives.

A :class:`GANStep` call does exactly what one pass of the original ``while step < num_batches`` loop does,
in the same order (so the same global-RNG draws):

1. text encoder (frozen) -> words_embs, sent_emb (detached); mask = captions == 0, cut to the longest caption
2. ``noise.normal_(0, 1)``, then G forward (CA_NET draws its noise from the global generator)
3. for each D: zero_grad, discriminator_loss on the detached fakes, backward, optimizer step
4. G: zero_grad, generator_loss with the UPDATED Ds + KL_loss, backward, optimizer step
5. EMA of the G parameters: avg = decay * avg + (1 - decay) * p (decay 0.999 in the original)

It returns detached loss tensors and never calls ``.item()`` (no device sync); :func:`format_logs`
makes the original's log lines from them when needed.

One difference that changes no number: the G backward accumulates gradients into G's parameters
only (``backward(inputs=...)``); the original also accumulated them into the Ds' ``.grad``, which
its next D step zeroes before use. This skips the D weight gradients in the G step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import torch
import torch.nn as nn

from .build import build_discriminators, build_generator, build_image_encoder, build_trained_text_encoder
from .config import Config, ConfigError, resolve_path
from .damsm import image_encoder_path
from .data import build_dataset, prepare_data
from .engine import distributed as dist
from .engine.checkpoint import atomic_save
from .engine.fast import adam, fast_path, images_to, prepare_module
from .engine.loop import keeps_pictures
from .engine.trainer import Task
from .losses import KL_loss, discriminator_loss, format_g_logs, generator_loss, words_loss
from .sampling import encode_text
from .viz import attention_picture, sample_grid, save_png
from .weights import load_state_dict_file

__all__ = ['GANStep', 'GANTask', 'format_logs', 'copy_G_params', 'load_params', 'ema_update',
           'generator_epoch', 'load_frozen_encoders', 'save_pictures']

log = logging.getLogger('attngan')


# ------------------------------------------------------------------ EMA of the generator weights
def copy_G_params(model: nn.Module) -> List[torch.Tensor]:
    """Detached copies of the model's parameters (the EMA state; original name)."""
    return [p.detach().clone() for p in model.parameters()]


@torch.no_grad()
def load_params(model: nn.Module, new_params: Sequence[torch.Tensor]) -> None:
    """Copy ``new_params`` into the model's parameters in place (e.g. to sample with the EMA weights)."""
    torch._foreach_copy_([p.data for p in model.parameters()], list(new_params))


@torch.no_grad()
def ema_update(avg_params: Sequence[torch.Tensor], model: nn.Module, decay: float = 0.999) -> None:
    """avg = decay * avg + (1 - decay) * p for every parameter, in place (original: 0.999 / 0.001)."""
    avg = list(avg_params)
    torch._foreach_mul_(avg, decay)
    torch._foreach_add_(avg, [p.detach() for p in model.parameters()], alpha=1.0 - decay)


# ------------------------------------------------------------------ one iteration
class GANStep:
    """One faithful AttnGAN iteration (see the module docstring for the order of operations).

    text_encoder / image_encoder: frozen DAMSM encoders in eval mode; netG, netsD: in train mode (or their
    DDP wrappers); avg_params: EMA tensors from copy_G_params(netG), updated in place; batch_size, z_dim:
    the noise buffer's size (refilled with normal_(0, 1) each call; the train loader drops a short last
    batch); gammas and lambda_: TRAIN.SMOOTH.*; ema_decay: TRAIN.EMA_DECAY; amp_dtype: None (faithful fp32)
    or torch.bfloat16 (the fast path: forwards under autocast, fp32 master weights; BCE, the DAMSM
    log-softmaxes and KL stay in fp32, see losses.py); dtype: of the noise and the labels.
    """

    def __init__(self, text_encoder: nn.Module, image_encoder: nn.Module, netG: nn.Module,
                 netsD: Sequence[nn.Module], optimizerG: torch.optim.Optimizer,
                 optimizersD: Sequence[torch.optim.Optimizer], avg_params: Sequence[torch.Tensor], *,
                 batch_size: int, z_dim: int, gamma1: float, gamma2: float, gamma3: float, lambda_: float,
                 ema_decay: float = 0.999, amp_dtype: torch.dtype | None = None,
                 device: torch.device | str = 'cpu', dtype: torch.dtype = torch.float32) -> None:
        self.text_encoder, self.image_encoder, self.netG, self.netsD = text_encoder, image_encoder, netG, netsD
        self.optimizerG, self.optimizersD, self.avg_params = optimizerG, optimizersD, avg_params
        self.smooth = dict(gamma1=gamma1, gamma2=gamma2, gamma3=gamma3, lambda_=lambda_)
        self.ema_decay, self.amp_dtype = ema_decay, amp_dtype
        self.noise = torch.empty(batch_size, z_dim, device=device, dtype=dtype)
        self.real_labels = torch.ones(batch_size, device=device, dtype=dtype)
        self.fake_labels = torch.zeros(batch_size, device=device, dtype=dtype)
        self.match_labels = torch.arange(batch_size, device=device)

    def _amp(self, device: torch.device):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def __call__(self, imgs: Sequence[torch.Tensor], captions: torch.Tensor, cap_lens: torch.Tensor,
                 class_ids) -> tuple[Dict[str, torch.Tensor], Dict[str, object]]:
        """imgs[i]: the real images netsD[i] judges (B x 3 x S x S in [-1, 1]; 64*2^i px for G_NET, the final
        size for G_DCGAN); captions: B x WORDS_NUM int64; cap_lens: B lengths (sorted descending); class_ids:
        B class ids (tensor / numpy / None).

        Returns (losses, outputs): detached loss tensors 'errD0'.. 'errD{n-1}', 'errD_total', 'errG_total'
        (KL included), 'kl_loss', 'g_loss{i}', 'w_loss', 's_loss', 'w_loss0', 'w_loss1', 's_loss0',
        's_loss1'; and 'fake_imgs' (the generated images, detached), 'mu', 'logvar'.
        """
        amp = lambda: self._amp(captions.device)  # noqa: E731
        # (1) text embeddings (the encoder is frozen: its outputs are used detached)
        with torch.no_grad():
            hidden = self.text_encoder.init_hidden(captions.size(0))
            words_embs, sent_emb = self.text_encoder(captions, cap_lens, hidden)
        words_embs, sent_emb = words_embs.detach(), sent_emb.detach()
        mask = (captions == 0)[:, :words_embs.size(2)]  # Original: the mask comes from token id 0, not cap_lens

        # (2) fake images
        self.noise.normal_(0, 1)
        with amp():
            fake_imgs, _, mu, logvar = self.netG(self.noise, sent_emb, words_embs, mask)

        # (3) one update per D
        losses: Dict[str, torch.Tensor] = {}
        errD_total = 0
        for i, (netD, optD) in enumerate(zip(self.netsD, self.optimizersD)):
            netD.zero_grad()
            with amp():
                errD = discriminator_loss(netD, imgs[i], fake_imgs[i], sent_emb, self.real_labels, self.fake_labels)
            errD.backward()
            optD.step()
            errD_total = errD_total + errD.detach()
            losses[f'errD{i}'] = errD.detach()

        # (4) G update against the updated Ds
        self.netG.zero_grad()
        with amp():
            errG_total, _, terms = generator_loss(self.netsD, self.image_encoder, fake_imgs, self.real_labels,
                                                  words_embs, sent_emb, self.match_labels, cap_lens, class_ids,
                                                  with_logs=False, **self.smooth)
        kl_loss = KL_loss(mu, logvar)
        errG_total = errG_total + kl_loss
        errG_total.backward(inputs=[p for p in self.netG.parameters() if p.requires_grad])
        self.optimizerG.step()

        # (5) EMA of the G weights
        ema_update(self.avg_params, self.netG, self.ema_decay)

        losses.update(terms)
        losses.update(errD_total=errD_total, errG_total=errG_total.detach(), kl_loss=kl_loss.detach())
        outputs = dict(fake_imgs=[f.detach() for f in fake_imgs], mu=mu.detach(), logvar=logvar.detach())
        return losses, outputs


def format_logs(out: Mapping[str, object], n_discriminators: int):
    """(D_logs, G_logs) as the original prints them, from GANStep's losses (calls .item())."""
    D_logs = ''.join('errD%d: %.2f ' % (i, out[f'errD{i}'].item()) for i in range(n_discriminators))
    G_logs = format_g_logs(out, n_discriminators) + 'kl_loss: %.2f ' % out['kl_loss'].item()
    return D_logs, G_logs


# ------------------------------------------------------------------ the task
def generator_epoch(path: str | Path) -> int:
    """``.../netG_epoch_120.pth`` -> 120 (the original's resume rule: continue at N + 1)."""
    m = re.search(r'_(\d+)\.pth$', str(path))
    if not m:
        raise ConfigError(f'TRAIN.NET_G={path!r}: expected a file named netG_epoch_<epoch>.pth')
    return int(m.group(1))


def load_frozen_encoders(cfg: Config, n_words: int, device: torch.device):
    """Text encoder from TRAIN.NET_E and the image encoder saved beside it, frozen, in eval mode."""
    if not cfg.TRAIN.NET_E:
        raise ConfigError('TRAIN.NET_E is empty: the GAN needs pretrained DAMSM encoders '
                          '(run pretrain_DAMSM.py first, or download the released ones; see README)')
    net_e = resolve_path(cfg.TRAIN.NET_E)
    text_encoder = build_trained_text_encoder(cfg, n_words, net_e)
    image_encoder = build_image_encoder(cfg, cfg.TEXT.EMBEDDING_DIM, weights='none')
    load_state_dict_file(image_encoder_path(net_e), image_encoder, 'image encoder')
    for net in (text_encoder, image_encoder):
        net.requires_grad_(False)
        net.eval()
    return text_encoder.to(device), image_encoder.to(device)


@torch.no_grad()
def save_pictures(netG, avg_params, fixed_noise, text_encoder, captions, cap_lens, image_encoder, ixtoword,
                  image_dir: Path, tags: Sequence[str], cfg: Config) -> None:
    """Sample grid of every stage and the attention pictures, made with the averaged (EMA) weights; each
    picture is written once per tag (``G_average_<tag>_grid.png``, ...).

    As the original, G stays in train mode here (BN batch statistics; its running statistics are updated
    by this forward, and the CA noise is drawn from the global generator).
    """
    words_emb, sent_emb, mask = encode_text(text_encoder, captions, cap_lens)
    backup = copy_G_params(netG)
    load_params(netG, avg_params)
    fake_imgs, att_maps, _, _ = netG(fixed_noise, sent_emb, words_emb, mask)
    load_params(netG, backup)

    def paths(name: str) -> list[Path]:  # name with '{}' for the tag
        return [image_dir / name.format(tag) for tag in tags]

    save_png(sample_grid(fake_imgs), *paths('G_average_{}_grid.png'))
    for i, maps in enumerate(att_maps or []):
        lr_img = fake_imgs[i] if len(fake_imgs) > 1 else None
        img = fake_imgs[i + 1] if len(fake_imgs) > 1 else fake_imgs[0]
        save_png(attention_picture(img, captions, ixtoword, maps, lr_images=lr_img),
                 *paths('G_average_{}_%d.png' % i))
    if not att_maps:  # the fork's generators return no maps: words over images only
        save_png(attention_picture(fake_imgs[-1], captions, ixtoword, None), *paths('G_average_{}.png'))
    region_features, _ = image_encoder(fake_imgs[-1])
    s = cfg.TRAIN.SMOOTH
    _, _, maps = words_loss(region_features, words_emb, None, cap_lens, None, captions.size(0),
                            gamma1=s.GAMMA1, gamma2=s.GAMMA2, gamma3=s.GAMMA3)
    save_png(attention_picture(fake_imgs[-1], captions, ixtoword, maps), *paths('D_average_{}.png'))


class GANTask(Task):
    """Train G and the Ds (TRAIN.FLAG True) with frozen DAMSM encoders: AttnGAN, or a DualAttnGAN variant
    (GAN.DUAL_ATTN), whichever build_generator makes of the config."""

    kind, title, position_key, counter_key = 'gan', 'GAN', 'iteration', 'gen_iterations'

    def build_dataset(self):
        self.dataset = build_dataset(self.cfg, 'train')
        return self.dataset

    def build(self, dataset, loader, resuming: bool) -> int:
        cfg, device = self.cfg, self.device
        # frozen: replicated on every rank, not wrapped
        self.text_encoder, self.image_encoder = load_frozen_encoders(cfg, dataset.n_words, device)
        self.netG = build_generator(cfg).to(device)
        self.netsD = [d.to(device) for d in build_discriminators(cfg)]
        self.fp = fp = fast_path(cfg, device)
        start_epoch = self._load_original() if cfg.TRAIN.NET_G and not resuming else 0
        prepare_module(self.netG, fp)
        for d in self.netsD:
            prepare_module(d, fp, heads=('COND_DNET', 'UNCOND_DNET'))
        prepare_module(self.image_encoder, dataclasses.replace(fp, compile=False))  # frozen: layout only
        # DDP wrappers (the modules themselves outside torchrun) serve the step only; the plain modules are
        # loaded, saved and sampled. Wrapping copies rank 0's weights, so the EMA starts equal on all ranks.
        ddpG = dist.wrap_ddp(self.netG, device, sync_bn=cfg.TRAIN.SYNC_BN)
        ddpsD = [dist.wrap_ddp(d, device, sync_bn=cfg.TRAIN.SYNC_BN) for d in self.netsD]
        self.avg_params = copy_G_params(self.netG)
        self.optimizerG = adam(self.netG.parameters(), cfg.TRAIN.GENERATOR_LR, fp)
        self.optimizersD = [adam(d.parameters(), cfg.TRAIN.DISCRIMINATOR_LR, fp) for d in self.netsD]
        self.fixed_noise = torch.randn(cfg.TRAIN.BATCH_SIZE, cfg.GAN.Z_DIM, device=device)
        s = cfg.TRAIN.SMOOTH
        self.gan_step = GANStep(self.text_encoder, self.image_encoder, ddpG, ddpsD, self.optimizerG,
                                self.optimizersD, self.avg_params, batch_size=cfg.TRAIN.BATCH_SIZE,
                                z_dim=cfg.GAN.Z_DIM, gamma1=s.GAMMA1, gamma2=s.GAMMA2, gamma3=s.GAMMA3,
                                lambda_=s.LAMBDA, ema_decay=cfg.TRAIN.EMA_DECAY, amp_dtype=fp.amp_dtype,
                                device=device)
        self.netG.train()
        for d in self.netsD:
            d.train()
        return start_epoch

    def _load_original(self) -> int:
        """TRAIN.NET_G (and its netD<i>.pth when TRAIN.B_NET_D): the original's way to continue, at N + 1."""
        net_g = resolve_path(self.cfg.TRAIN.NET_G)
        load_state_dict_file(net_g, self.netG, 'generator')
        if self.cfg.TRAIN.B_NET_D:
            for i, netD in enumerate(self.netsD):
                load_state_dict_file(net_g.parent / f'netD{i}.pth', netD, f'discriminator {i}')
        log.info('loaded %s; continuing at epoch %d', net_g, generator_epoch(net_g) + 1)
        return generator_epoch(net_g) + 1

    def load_state(self, state: Mapping, epoch: int, step: int) -> None:
        self.netG.load_state_dict(state['netG'])
        for d, sd in zip(self.netsD, state['netsD']):
            d.load_state_dict(sd)
        for avg, saved in zip(self.avg_params, state['avg_params']):
            avg.copy_(saved)
        self.optimizerG.load_state_dict(state['optimizerG'])
        for o, sd in zip(self.optimizersD, state['optimizersD']):
            o.load_state_dict(sd)
        # the learning rates are the config's (a resume may change them), not the optimizers' saved ones
        lrs = [(self.optimizerG, self.cfg.TRAIN.GENERATOR_LR)] + [(o, self.cfg.TRAIN.DISCRIMINATOR_LR)
                                                                   for o in self.optimizersD]
        for opt, lr in lrs:
            for group in opt.param_groups:
                group['lr'] = lr
        self.fixed_noise.copy_(state['fixed_noise'])

    def state_dict(self) -> dict:
        return dict(n_words=self.dataset.n_words, netG=self.netG.state_dict(), netsD=[d.state_dict() for d in self.netsD],
                    avg_params=[p.detach().cpu() for p in self.avg_params], optimizerG=self.optimizerG.state_dict(),
                    optimizersD=[o.state_dict() for o in self.optimizersD], fixed_noise=self.fixed_noise.cpu())

    @property
    def check_every_step(self) -> bool:
        return not self.fp.enabled

    def step(self, batch) -> dict:
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, self.device)
        losses, _ = self.gan_step(images_to(imgs, self.fp), captions, cap_lens, class_ids)
        self.captions = (captions, cap_lens)  # the pictures of this step and of the epoch's end use them
        return losses

    def is_log_step(self, step: int, iteration: int, n_batches: int) -> bool:
        return iteration % self.cfg.TRAIN.LOG_INTERVAL == 0 or step == n_batches

    def progress(self, values):
        return {k: f'{v:.2f}' for k, v in values.items() if k.startswith(('errD', 'errG'))}

    def after_step(self, epoch: int, step: int, iteration: int, logged: bool) -> None:
        if iteration % self.cfg.TRAIN.SAMPLE_INTERVAL == 0 and self.main:
            self._pictures([f'iter{iteration}'])

    def _pictures(self, tags: Sequence[str]) -> None:
        with dist.local_batchnorm(self.netG):
            save_pictures(self.netG, self.avg_params, self.fixed_noise, self.text_encoder, *self.captions,
                          self.image_encoder, self.dataset.ixtoword, self.run.image_dir, tags, self.cfg)

    def end_epoch(self, epoch: int, n_steps: int, losses) -> dict:
        cfg = self.cfg
        record = dist.mean_over_ranks(losses) if losses is not None else {}
        if losses is not None:
            log.info('[%d/%d][%d] Loss_D: %.2f Loss_G: %.2f', epoch, cfg.TRAIN.MAX_EPOCH, n_steps,
                     record['errD_total'], record['errG_total'])
            if self.main:  # overwrites the *_latest_* pictures; keeps a copy at snapshot epochs and the last
                self._pictures(['latest'] + ([f'epoch{epoch}'] if keeps_pictures(epoch, cfg) else []))
        elif self.main:
            log.warning('epoch %d: no batch of it ran in this start (an older checkpoint taken after its last '
                        'batch): its end-of-epoch pictures are not drawn', epoch)
        if epoch % cfg.TRAIN.SNAPSHOT_INTERVAL == 0:
            self._snapshot(epoch)
        return record

    def end_run(self) -> None:
        self._snapshot(self.cfg.TRAIN.MAX_EPOCH)  # the original's final save is named after MAX_EPOCH

    def _snapshot(self, epoch: int) -> None:
        """The original's files: netG_epoch_<N>.pth holds the averaged weights; netD<i>.pth the Ds."""
        if not self.main:
            return
        model_dir = self.run.model_dir
        backup = copy_G_params(self.netG)
        load_params(self.netG, self.avg_params)
        atomic_save(self.netG.state_dict(), model_dir / f'netG_epoch_{epoch}.pth')
        load_params(self.netG, backup)
        for i, d in enumerate(self.netsD):
            atomic_save(d.state_dict(), model_dir / f'netD{i}.pth')
        log.info('saved netG_epoch_%d.pth and %d netD files in %s', epoch, len(self.netsD), model_dir)
