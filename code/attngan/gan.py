"""AttnGAN training: one faithful iteration of the original ``condGANTrainer.train`` loop body.

:func:`train_step` does exactly what one pass of the original ``while step < num_batches`` loop
does, in the same order (so the same global-RNG draws):

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
import time
from pathlib import Path
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
from tqdm import tqdm

from .build import build_discriminators, build_generator, build_image_encoder, build_trained_text_encoder
from .config import Config, ConfigError, resolve_path
from .damsm import image_encoder_path
from .data import build_dataset, prepare_data
from .engine import distributed as dist
from .engine.fast import adam, fast_path, images_to, prepare_module
from .engine.checkpoint import TRAIN_STATE_NAME, atomic_save, rng_state, save_train_state
from .engine.logger import MetricsWriter
from .engine.loop import check_finite, epoch_batches, keeps_pictures, stop_reason, train_loader
from .engine.run import Run
from .engine.signals import GracefulInterrupt
from .losses import KL_loss, discriminator_loss, format_g_logs, generator_loss, words_loss
from .sampling import encode_text
from .viz import attention_picture, sample_grid, save_png
from .weights import load_state_dict_file

__all__ = ['train_step', 'format_logs', 'copy_G_params', 'load_params', 'ema_update', 'train_gan']

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
def train_step(text_encoder: nn.Module, image_encoder: nn.Module, netG: nn.Module, netsD: Sequence[nn.Module],
               optimizerG: torch.optim.Optimizer, optimizersD: Sequence[torch.optim.Optimizer],
               avg_param_G: Sequence[torch.Tensor], imgs: Sequence[torch.Tensor], captions: torch.Tensor,
               cap_lens: torch.Tensor, class_ids, noise: torch.Tensor, real_labels: torch.Tensor,
               fake_labels: torch.Tensor, match_labels: torch.Tensor, *, gamma1: float, gamma2: float,
               gamma3: float, lambda_: float, ema_decay: float = 0.999,
               amp_dtype: torch.dtype | None = None) -> Dict[str, object]:
    """One faithful AttnGAN iteration (see the module docstring for the order of operations).

    text_encoder / image_encoder: frozen DAMSM encoders in eval mode; netG, netsD: in train mode;
    avg_param_G: EMA tensors from copy_G_params(netG), updated in place; imgs[i]: the real images
    netsD[i] judges (B x 3 x S x S in [-1, 1]; 64*2^i px for G_NET, the final size for G_DCGAN); captions: B x WORDS_NUM int64; cap_lens: B lengths
    (sorted descending); class_ids: B class ids (tensor / numpy / None); noise: B x Z_DIM buffer,
    refilled in place with normal_(0, 1); real_labels / fake_labels: B ones / zeros (float);
    match_labels: arange(B); gammas and lambda_: TRAIN.SMOOTH.*; ema_decay: TRAIN.EMA_DECAY;
    amp_dtype: None (faithful fp32) or torch.bfloat16 (the fast path: forwards under autocast, fp32 master
    weights; BCE, the DAMSM log-softmaxes and KL stay in fp32, see losses.py).

    Returns a dict of detached tensors: 'errD0'.. 'errD{n-1}', 'errD_total', 'errG_total' (KL included),
    'kl_loss', 'g_loss{i}', 'w_loss', 's_loss', 'w_loss0', 'w_loss1', 's_loss0', 's_loss1', and
    'fake_imgs' (the list of generated images, detached), 'mu', 'logvar'.
    """
    batch_size = captions.size(0)

    def amp():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(captions.device.type, dtype=amp_dtype)

    # (1) text embeddings (the encoder is frozen: its outputs are used detached)
    with torch.no_grad():
        hidden = text_encoder.init_hidden(batch_size)
        words_embs, sent_emb = text_encoder(captions, cap_lens, hidden)
    words_embs, sent_emb = words_embs.detach(), sent_emb.detach()
    num_words = words_embs.size(2)
    mask = (captions == 0)[:, :num_words]  # Original: the mask comes from token id 0, not from cap_lens

    # (2) fake images
    noise.normal_(0, 1)
    with amp():
        fake_imgs, _, mu, logvar = netG(noise, sent_emb, words_embs, mask)

    # (3) one update per D
    out: Dict[str, object] = {}
    errD_total = 0
    for i, (netD, optD) in enumerate(zip(netsD, optimizersD)):
        netD.zero_grad()
        with amp():
            errD = discriminator_loss(netD, imgs[i], fake_imgs[i], sent_emb, real_labels, fake_labels)
        errD.backward()
        optD.step()
        errD_total = errD_total + errD.detach()
        out[f'errD{i}'] = errD.detach()

    # (4) G update against the updated Ds
    netG.zero_grad()
    with amp():
        errG_total, _, terms = generator_loss(netsD, image_encoder, fake_imgs, real_labels, words_embs,
                                              sent_emb, match_labels, cap_lens, class_ids, gamma1=gamma1,
                                              gamma2=gamma2, gamma3=gamma3, lambda_=lambda_, with_logs=False)
    kl_loss = KL_loss(mu, logvar)
    errG_total = errG_total + kl_loss
    errG_total.backward(inputs=[p for p in netG.parameters() if p.requires_grad])
    optimizerG.step()

    # (5) EMA of the G weights
    ema_update(avg_param_G, netG, ema_decay)

    out.update(terms)
    out.update(errD_total=errD_total, errG_total=errG_total.detach(), kl_loss=kl_loss.detach(),
               fake_imgs=[f.detach() for f in fake_imgs], mu=mu.detach(), logvar=logvar.detach())
    return out


def format_logs(out: Dict[str, object], n_discriminators: int):
    """(D_logs, G_logs) as the original prints them, from train_step's result (calls .item())."""
    D_logs = ''.join('errD%d: %.2f ' % (i, out[f'errD{i}'].item()) for i in range(n_discriminators))
    G_logs = format_g_logs(out, n_discriminators) + 'kl_loss: %.2f ' % out['kl_loss'].item()
    return D_logs, G_logs


# ---------------------------------------------------------------------------------------------------------
# The training loop (the original condGANTrainer.train), with snapshots, pictures, logs and exact resume.
# ---------------------------------------------------------------------------------------------------------

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
    image_encoder = build_image_encoder(cfg, weights='none')
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


def train_gan(cfg: Config, run: Run, resume_state: dict | None = None) -> dict:
    """Train G and the Ds (TRAIN.FLAG True). Returns the last epoch's summary."""
    device = run.device
    generator = torch.Generator()
    with dist.main_first():  # rank 0 builds a missing image cache alone
        dataset = build_dataset(cfg, 'train')
    loader = train_loader(cfg, dataset, generator, device)
    batch_size = cfg.TRAIN.BATCH_SIZE
    # frozen: replicated on every rank, not wrapped
    text_encoder, image_encoder = load_frozen_encoders(cfg, dataset.n_words, device)
    netG = build_generator(cfg).to(device)
    netsD = [d.to(device) for d in build_discriminators(cfg)]
    fp = fast_path(cfg, device)
    start_epoch, start_step = 0, 0
    if cfg.TRAIN.NET_G and resume_state is None:
        net_g = resolve_path(cfg.TRAIN.NET_G)
        load_state_dict_file(net_g, netG, 'generator')
        start_epoch = generator_epoch(net_g) + 1
        if cfg.TRAIN.B_NET_D:
            for i, netD in enumerate(netsD):
                load_state_dict_file(net_g.parent / f'netD{i}.pth', netD, f'discriminator {i}')
        log.info('loaded %s; continuing at epoch %d', net_g, start_epoch)
    prepare_module(netG, fp)
    for d in netsD:
        prepare_module(d, fp, heads=('COND_DNET', 'UNCOND_DNET'))
    prepare_module(image_encoder, dataclasses.replace(fp, compile=False))  # frozen: layout only
    # DDP wrappers (the modules themselves outside torchrun) serve train_step only; the plain modules are
    # loaded, saved and sampled. Wrapping copies rank 0's weights, so the EMA starts equal on all ranks.
    ddpG = dist.wrap_ddp(netG, device, sync_bn=cfg.TRAIN.SYNC_BN)
    ddpsD = [dist.wrap_ddp(d, device, sync_bn=cfg.TRAIN.SYNC_BN) for d in netsD]
    avg_params = copy_G_params(netG)
    optimizerG = adam(netG.parameters(), cfg.TRAIN.GENERATOR_LR, fp)
    optimizersD = [adam(d.parameters(), cfg.TRAIN.DISCRIMINATOR_LR, fp) for d in netsD]
    fixed_noise = torch.randn(batch_size, cfg.GAN.Z_DIM, device=device)
    noise = torch.empty(batch_size, cfg.GAN.Z_DIM, device=device)
    real_labels = torch.ones(batch_size, device=device)
    fake_labels = torch.zeros(batch_size, device=device)
    match_labels = torch.arange(batch_size, device=device)
    s = cfg.TRAIN.SMOOTH
    gen_iterations = 0
    if resume_state is not None:
        netG.load_state_dict(resume_state['netG'])
        for d, sd in zip(netsD, resume_state['netsD']):
            d.load_state_dict(sd)
        avg_params = [p.to(device) for p in resume_state['avg_params']]
        optimizerG.load_state_dict(resume_state['optimizerG'])
        for o, sd in zip(optimizersD, resume_state['optimizersD']):
            o.load_state_dict(sd)
        # the learning rates are the config's (a resume may change them), not the optimizers' saved ones
        for opt, lr in [(optimizerG, cfg.TRAIN.GENERATOR_LR)] + [(o, cfg.TRAIN.DISCRIMINATOR_LR) for o in optimizersD]:
            for group in opt.param_groups:
                group['lr'] = lr
        fixed_noise = resume_state['fixed_noise'].to(device)
        start_epoch = resume_state['epoch']
        start_step = dist.rescale_step(resume_state['step'], resume_state.get('world_size', 1))
        gen_iterations = resume_state['gen_iterations']
        log.info('resuming at epoch %d, batch %d (iteration %d)', start_epoch, start_step, gen_iterations)
        if start_epoch >= cfg.TRAIN.MAX_EPOCH:
            log.info('the run is complete (TRAIN.MAX_EPOCH=%d); raise TRAIN.MAX_EPOCH to train on',
                     cfg.TRAIN.MAX_EPOCH)

    main = dist.is_main()  # only rank 0 writes metrics, pictures and checkpoints
    metrics = (MetricsWriter(run.metrics_path, run.root / 'tensorboard' if cfg.TRAIN.TENSORBOARD else None,
                             resume_step=gen_iterations if resume_state is not None else None)
               if main else dist.NullMetricsWriter())
    max_steps = cfg.TRAIN.MAX_STEPS
    last: dict = {}

    def checkpoint(epoch: int, step: int) -> None:
        """Every rank calls this (its RNG states are gathered); rank 0 writes."""
        rng_ranks = dist.gather_rng_states()
        if not main:
            return
        save_train_state(run.model_dir / TRAIN_STATE_NAME, kind='gan', epoch=epoch, step=step,
                         gen_iterations=gen_iterations, netG=netG.state_dict(),
                         netsD=[d.state_dict() for d in netsD], avg_params=[p.detach().cpu() for p in avg_params],
                         optimizerG=optimizerG.state_dict(), optimizersD=[o.state_dict() for o in optimizersD],
                         fixed_noise=fixed_noise.cpu(), seed=run.seed, n_words=dataset.n_words,
                         config=cfg.to_dict(), rng=rng_state(), rng_ranks=rng_ranks,
                         world_size=dist.world_size())

    def snapshot(epoch: int) -> None:
        """The original's files: netG_epoch_<N>.pth holds the averaged weights; netD<i>.pth the Ds."""
        if not main:
            return
        backup = copy_G_params(netG)
        load_params(netG, avg_params)
        atomic_save(netG.state_dict(), run.model_dir / f'netG_epoch_{epoch}.pth')
        load_params(netG, backup)
        for i, d in enumerate(netsD):
            atomic_save(d.state_dict(), run.model_dir / f'netD{i}.pth')
        log.info('saved netG_epoch_%d.pth and %d netD files in %s', epoch, len(netsD), run.model_dir)

    netG.train()
    for d in netsD:
        d.train()
    run.write_config()  # everything is built: this start will train
    with GracefulInterrupt() as interrupt:
        for epoch in range(start_epoch, cfg.TRAIN.MAX_EPOCH):
            skip = start_step if epoch == start_epoch else 0
            batches = epoch_batches(loader, generator, run.seed, epoch, skip=skip)
            if resume_state is not None:
                dist.restore_rng(resume_state)
                resume_state = None
            t0 = time.time()
            bar = tqdm(batches, total=len(loader), initial=skip, desc=f'GAN epoch {epoch}', leave=False,
                       dynamic_ncols=True, disable=None if main else True)
            step = skip
            why = None
            losses = None  # stays None only for a checkpoint of an older version taken after the last batch
            for batch in bar:
                imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, device)
                out = train_step(text_encoder, image_encoder, ddpG, ddpsD, optimizerG, optimizersD, avg_params,
                                 images_to(imgs, fp), captions, cap_lens, class_ids, noise, real_labels,
                                 fake_labels, match_labels, gamma1=s.GAMMA1, gamma2=s.GAMMA2, gamma3=s.GAMMA3,
                                 lambda_=s.LAMBDA, ema_decay=cfg.TRAIN.EMA_DECAY, amp_dtype=fp.amp_dtype)
                losses = {k: v for k, v in out.items() if k.startswith(('errD', 'errG', 'g_loss', 'w_loss',
                                                                          's_loss', 'kl_loss'))}
                step += 1
                gen_iterations += 1
                log_step = gen_iterations % cfg.TRAIN.LOG_INTERVAL == 0 or step == len(loader)
                if not fp.enabled or log_step:
                    # fast path: no host sync per step; a NaN spreads into the weights, so every later
                    # loss is NaN too and the next log step (before any checkpoint) catches it
                    check_finite(losses, gen_iterations)
                if log_step:
                    values = dist.mean_over_ranks(losses)
                    bar.set_postfix({k: f'{v:.2f}' for k, v in values.items() if k.startswith(('errD', 'errG'))})
                    metrics.write({'kind': 'gan_step', 'epoch': epoch, 'iteration': gen_iterations, **values},
                                  step=gen_iterations)
                if gen_iterations % cfg.TRAIN.SAMPLE_INTERVAL == 0 and main:
                    with dist.local_batchnorm(netG):
                        save_pictures(netG, avg_params, fixed_noise, text_encoder, captions, cap_lens,
                                      image_encoder, dataset.ixtoword, run.image_dir, [f'iter{gen_iterations}'],
                                      cfg)
                why = stop_reason(interrupt.stop_requested, max_steps, gen_iterations)
                if why:
                    check_finite(losses, gen_iterations)
                    if step < len(loader):
                        checkpoint(epoch, step)
                        bar.close()
                        log.info('%s at epoch %d, batch %d: checkpoint written to %s', why, epoch, step,
                                 run.model_dir / TRAIN_STATE_NAME)
                        metrics.close()
                        return last
                    break  # a stop in the epoch's last step: the epoch's end is done first, then the checkpoint
            bar.close()
            elapsed = time.time() - t0
            n_done = len(loader) - skip
            last = {'kind': 'gan_epoch', 'epoch': epoch, 'iteration': gen_iterations, 'time_s': elapsed,
                    'images_per_s': n_done * batch_size * dist.world_size() / max(elapsed, 1e-9),
                    **(dist.mean_over_ranks(losses) if losses is not None else {})}
            metrics.write(last, step=gen_iterations)
            if losses is not None:
                log.info('[%d/%d][%d] Loss_D: %.2f Loss_G: %.2f Time: %.2fs (%.1f images/s)', epoch,
                         cfg.TRAIN.MAX_EPOCH, len(loader), last['errD_total'], last['errG_total'], elapsed,
                         last['images_per_s'])
            if main and losses is not None:  # overwrites the *_latest_* pictures; keeps a copy at snapshot epochs
                tags = ['latest'] + ([f'epoch{epoch}'] if keeps_pictures(epoch, cfg) else [])
                with dist.local_batchnorm(netG):
                    save_pictures(netG, avg_params, fixed_noise, text_encoder, captions, cap_lens, image_encoder,
                                  dataset.ixtoword, run.image_dir, tags, cfg)
            elif main:
                log.warning('epoch %d: no batch of it ran in this start (an older checkpoint taken after its last '
                            'batch): its end-of-epoch pictures are not drawn', epoch)
            if epoch % cfg.TRAIN.SNAPSHOT_INTERVAL == 0:
                snapshot(epoch)
            stop = dist.any_rank(interrupt.stop_requested) or (why is not None and epoch + 1 < cfg.TRAIN.MAX_EPOCH)
            if (epoch + 1) % cfg.TRAIN.CHECKPOINT_INTERVAL == 0 or stop:
                checkpoint(epoch + 1, 0)
            if stop:
                log.info('%s after epoch %d: checkpoint written to %s', why or 'interrupted', epoch,
                         run.model_dir / TRAIN_STATE_NAME)
                metrics.close()
                return last
    if resume_state is not None:  # resumed after the run's end: no epoch ran, the checkpoint keeps its RNG
        dist.restore_rng(resume_state)
    snapshot(cfg.TRAIN.MAX_EPOCH)  # the original's final save is named after MAX_EPOCH
    checkpoint(cfg.TRAIN.MAX_EPOCH, 0)
    metrics.close()
    return last
