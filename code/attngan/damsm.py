"""DAMSM pretraining: the text encoder (bi-LSTM) and the image encoder (Inception-v3 + two projections).

Faithful to the original ``pretrain_DAMSM.py``: words_loss + sent_loss on each batch, gradient clipping of the
text encoder only, Adam re-created at every epoch, lr decayed by 0.98 per epoch while above ENCODER_LR / 10
(both configurable: DAMSM.ADAM_PER_EPOCH, DAMSM.LR_DECAY), ``text_encoder<N>.pth`` / ``image_encoder<N>.pth``
snapshots. Added: retrieval accuracy on the test split, attention pictures, a JSONL of every logged value, and
an exactly resumable checkpoint.
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .build import build_image_encoder, build_text_encoder, build_trained_text_encoder
from .config import Config, ConfigError, resolve_path
from .data import build_dataloader, build_dataset, prepare_data
from .engine import distributed as dist
from .engine.checkpoint import TRAIN_STATE_NAME, atomic_save, rng_state, save_train_state
from .engine.logger import MetricsWriter
from .engine.loop import check_finite, epoch_batches, keeps_pictures, stop_reason, train_loader
from .engine.run import Run
from .engine.signals import GracefulInterrupt
from .losses import sent_loss, words_loss
from .metrics.r_precision import r_precision_from_pool
from .viz import attention_picture, save_png
from .weights import load_state_dict_file

log = logging.getLogger('attngan')


def encoder_epoch(path: str) -> int:
    """``.../text_encoder200.pth`` -> 200 (the original's resume rule)."""
    m = re.search(r'text_encoder(\d+)\.pth$', str(path))
    if not m:
        raise ConfigError(f'TRAIN.NET_E={path!r}: expected a file named text_encoder<epoch>.pth')
    return int(m.group(1))


def image_encoder_path(text_encoder_path: str | Path) -> Path:
    """The image encoder saved beside a text encoder (the original's naming rule)."""
    p = Path(text_encoder_path)
    return p.with_name(p.name.replace('text_encoder', 'image_encoder'))


def set_train_mode(text_encoder, image_encoder, cfg: Config) -> None:
    text_encoder.train()
    image_encoder.train()
    if cfg.DAMSM.TRUNK_BN_EVAL and not cfg.DAMSM.TRAIN_TRUNK and cfg.DAMSM.IMAGE_ENCODER == 'inception_v3':
        # the original leaves the frozen trunk in train mode, so its BN running statistics drift
        for name, m in image_encoder.named_children():
            if name not in ('emb_features', 'emb_cnn_code'):
                m.eval()


def damsm_losses(image_encoder, text_encoder, imgs, captions, cap_lens, class_ids, labels, cfg: Config):
    """The four DAMSM terms of one batch and the word attention maps (one per caption)."""
    words_features, sent_code = image_encoder(imgs)
    hidden = text_encoder.init_hidden(captions.size(0))
    words_emb, sent_emb = text_encoder(captions, cap_lens, hidden)
    s = cfg.TRAIN.SMOOTH
    w0, w1, attn_maps = words_loss(words_features, words_emb, labels, cap_lens, class_ids, captions.size(0),
                                   gamma1=s.GAMMA1, gamma2=s.GAMMA2, gamma3=s.GAMMA3)
    s0, s1 = sent_loss(sent_code, sent_emb, labels, class_ids, captions.size(0), gamma3=s.GAMMA3)
    losses = {'w_loss0': w0, 'w_loss1': w1, 's_loss0': s0, 's_loss1': s1}
    return losses, attn_maps, sent_code, sent_emb


@torch.no_grad()
def evaluate(image_encoder, text_encoder, loader, cfg: Config, device, ixtoword, picture_paths=()) -> dict:
    """Validation losses over the test split, retrieval accuracy, and the attention picture of batch 0
    (written to each of ``picture_paths``)."""
    image_encoder.eval()
    text_encoder.eval()
    w_total = s_total = 0.0
    n = 0
    img_codes, sent_codes, classes = [], [], []
    for i, batch in enumerate(loader):
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, device)
        labels = torch.arange(captions.size(0), device=device)
        losses, attn_maps, sent_code, sent_emb = damsm_losses(image_encoder, text_encoder, imgs[-1], captions,
                                                              cap_lens, class_ids, labels, cfg)
        # the original averages 51 batches and divides by 50; this is the plain mean over the split
        w_total += float(losses['w_loss0'] + losses['w_loss1'])
        s_total += float(losses['s_loss0'] + losses['s_loss1'])
        n += 1
        img_codes.append(sent_code.float().cpu())
        sent_codes.append(sent_emb.float().cpu())
        classes.append(torch.as_tensor(class_ids).reshape(-1).cpu())
        if i == 0 and picture_paths:
            save_png(attention_picture(imgs[-1], captions, ixtoword, attn_maps), *picture_paths)
    if n == 0:
        return {}
    result = {'val_w_loss': w_total / n, 'val_s_loss': s_total / n}
    img_codes, sent_codes, classes = torch.cat(img_codes), torch.cat(sent_codes), torch.cat(classes)
    result.update(retrieval_accuracy(img_codes, sent_codes, classes, cfg.DAMSM.RPREC_CANDIDATES))
    return result


def retrieval_accuracy(img_codes: torch.Tensor, sent_codes: torch.Tensor, classes: torch.Tensor,
                       n_candidates: int = 100) -> dict:
    """Top-1 retrieval of the true caption among itself + (R-1) captions of other classes, and back.

    img_codes, sent_codes: N x D global features of N (image, caption) pairs; classes: N class ids.
    R is lowered when a class has too few other-class partners (tiny test splits).
    """
    labels = classes.numpy()
    _, counts = torch.unique(classes, return_counts=True)
    r = min(n_candidates, len(labels) - int(counts.max()) + 1)
    if r < 2:
        return {}
    idx = torch.arange(len(labels))
    folds = min(10, len(labels))  # tiny test splits: fewer folds than DM-GAN's 10
    i2t = r_precision_from_pool(img_codes, sent_codes, idx, labels, labels, n_candidates=r, n_folds=folds, seed=0)
    t2i = r_precision_from_pool(sent_codes, img_codes, idx, labels, labels, n_candidates=r, n_folds=folds, seed=1)
    return {'r_precision_i2t': i2t.mean, 'r_precision_t2i': t2i.mean, 'r_precision_candidates': r}


def train_damsm(cfg: Config, run: Run, resume_state: dict | None = None) -> dict:
    """Train the DAMSM encoders; returns the last epoch's metrics. Stops cleanly on Ctrl-C / SIGTERM."""
    device = run.device
    generator = torch.Generator()
    # shuffled as the original (sorted test batches would hold one class each, whose masked losses are 0),
    # with a fixed order so that every validation sees the same batches; validation runs on rank 0 only
    val_generator = torch.Generator()
    with dist.main_first():  # rank 0 builds a missing image cache alone
        dataset = build_dataset(cfg, 'train')
        val_loader, _ = build_dataloader(cfg, 'test', shuffle=True, drop_last=True, device=device,
                                         vocab_from=dataset, generator=val_generator)
    loader = train_loader(cfg, dataset, generator, device)
    batch_size = cfg.TRAIN.BATCH_SIZE
    log.info('DAMSM: %d train images (%d batches of %d per process), %d test batches, vocabulary %d',
             len(dataset), len(loader), batch_size, len(val_loader), dataset.n_words)

    start_epoch, start_step, lr = 0, 0, cfg.TRAIN.ENCODER_LR
    net_e = resolve_path(cfg.TRAIN.NET_E) if cfg.TRAIN.NET_E and resume_state is None else None
    if net_e:
        start_epoch = encoder_epoch(net_e) + 1  # the original continues at N+1 with lr reset to ENCODER_LR
    text_encoder = (build_trained_text_encoder(cfg, dataset.n_words, net_e) if net_e
                    else build_text_encoder(cfg, dataset.n_words)).to(device)
    image_encoder = build_image_encoder(cfg).to(device)
    if net_e:
        load_state_dict_file(image_encoder_path(net_e), image_encoder, 'image encoder')
        log.info('loaded %s and its image encoder; continuing at epoch %d', net_e, start_epoch)
    # DDP wrappers (the modules themselves outside torchrun) for the training forward only; the plain modules
    # are clipped, evaluated, saved and loaded. Wrapping copies rank 0's weights to every rank.
    ddp_text = dist.wrap_ddp(text_encoder, device, sync_bn=cfg.TRAIN.SYNC_BN)
    ddp_image = dist.wrap_ddp(image_encoder, device, sync_bn=cfg.TRAIN.SYNC_BN)
    params = list(text_encoder.parameters()) + [p for p in image_encoder.parameters() if p.requires_grad]
    optimizer_state = None
    sums = {}
    if resume_state is not None:
        text_encoder.load_state_dict(resume_state['text_encoder'])
        image_encoder.load_state_dict(resume_state['image_encoder'])
        start_epoch, lr = resume_state['epoch'], resume_state['lr']
        old_lr = resume_state['config']['TRAIN']['ENCODER_LR']
        if old_lr != cfg.TRAIN.ENCODER_LR:  # a resume that changes ENCODER_LR rescales the decayed lr
            lr *= cfg.TRAIN.ENCODER_LR / old_lr
        start_step = dist.rescale_step(resume_state['step'], resume_state.get('world_size', 1))
        optimizer_state = (resume_state['optimizer'] if start_step > 0 or not cfg.DAMSM.ADAM_PER_EPOCH
                           else None)
        sums = resume_state.get('sums', {})
        log.info('resuming at epoch %d, batch %d (lr %.6g)', start_epoch, start_step, lr)
        if start_epoch >= cfg.TRAIN.MAX_EPOCH:
            log.info('the run is complete (TRAIN.MAX_EPOCH=%d); raise TRAIN.MAX_EPOCH to train on',
                     cfg.TRAIN.MAX_EPOCH)

    labels = torch.arange(batch_size, device=device)
    main = dist.is_main()  # only rank 0 validates and writes metrics, pictures and checkpoints
    interval = cfg.TRAIN.DAMSM_UPDATE_INTERVAL
    max_steps = cfg.TRAIN.MAX_STEPS
    global_step = start_epoch * len(loader) + start_step
    metrics = (MetricsWriter(run.metrics_path, run.root / 'tensorboard' if cfg.TRAIN.TENSORBOARD else None,
                             resume_step=global_step if resume_state is not None else None)
               if main else dist.NullMetricsWriter())
    last = {}

    def checkpoint(epoch: int, step: int, optimizer) -> None:
        """Full state; ``step`` > 0 marks a mid-epoch stop (the batch order of (seed, epoch) is replayed).
        Every rank calls this (RNG states gathered, loss sums averaged); rank 0 writes."""
        rng_ranks = dist.gather_rng_states()
        mean_sums = dist.mean_over_ranks(sums) if dist.is_distributed() else sums
        if not main:
            return
        save_train_state(run.model_dir / TRAIN_STATE_NAME, kind='damsm', epoch=epoch, step=step, lr=lr,
                         global_step=global_step,
                         text_encoder=text_encoder.state_dict(), image_encoder=image_encoder.state_dict(),
                         optimizer=optimizer.state_dict(), sums=mean_sums, seed=run.seed, n_words=dataset.n_words,
                         config=cfg.to_dict(), rng=rng_state(), rng_ranks=rng_ranks, world_size=dist.world_size())

    run.write_config()  # everything is built: this start will train
    with GracefulInterrupt() as interrupt:
        for epoch in range(start_epoch, cfg.TRAIN.MAX_EPOCH):
            if cfg.DAMSM.ADAM_PER_EPOCH or epoch == start_epoch:
                # the original creates a new Adam at every epoch, so its moment estimates restart each epoch
                optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
            if optimizer_state is not None:
                optimizer.load_state_dict(optimizer_state)
                optimizer_state = None
            for group in optimizer.param_groups:
                group['lr'] = lr
            set_train_mode(text_encoder, image_encoder, cfg)
            skip = start_step if epoch == start_epoch else 0
            if skip == 0:
                sums = {}
            batches = epoch_batches(loader, generator, run.seed, epoch, skip=skip)
            if resume_state is not None:
                # after replaying the skipped batches, so the next draw is the one the stopped run would make
                dist.restore_rng(resume_state)
                resume_state = None
            t0 = time.time()
            keep = keeps_pictures(epoch, cfg)
            bar = tqdm(batches, total=len(loader), initial=skip, desc=f'DAMSM epoch {epoch}',
                       leave=False, dynamic_ncols=True, disable=None if main else True)
            step = skip
            why = None
            for batch in bar:
                imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, device)
                text_encoder.zero_grad()
                image_encoder.zero_grad()
                losses, attn_maps, _, _ = damsm_losses(ddp_image, ddp_text, imgs[-1], captions, cap_lens,
                                                       class_ids, labels, cfg)
                loss = sum(losses.values())
                check_finite(losses, global_step)
                loss.backward()
                # only the text encoder is clipped, as the original
                torch.nn.utils.clip_grad_norm_(text_encoder.parameters(), cfg.TRAIN.RNN_GRAD_CLIP)
                optimizer.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v.detach()  # tensors: no host sync per step
                step += 1
                global_step += 1
                if (step - 1) % interval == 0:
                    values = dist.mean_over_ranks(losses)
                    bar.set_postfix({k: f'{v:.2f}' for k, v in values.items()})
                    metrics.write({'kind': 'damsm_step', 'epoch': epoch, 'step': global_step, **values},
                                  step=global_step)
                    if main:  # the original overwrites attention_maps<step>.png every epoch too
                        kept = [run.image_dir / f'attention_maps_e{epoch}_s{step - 1}.png'] if keep else []
                        save_png(attention_picture(imgs[-1], captions, dataset.ixtoword, attn_maps),
                                 run.image_dir / f'attention_maps_latest_s{step - 1}.png', *kept)
                why = stop_reason(interrupt.stop_requested, max_steps, global_step)
                if why:
                    if step < len(loader):
                        checkpoint(epoch, step, optimizer)
                        bar.close()
                        log.info('%s at epoch %d, batch %d: checkpoint written to %s', why, epoch, step,
                                 run.model_dir / TRAIN_STATE_NAME)
                        metrics.close()
                        return last
                    break  # a stop in the epoch's last step: the epoch's end is done first, then the checkpoint
            bar.close()
            n_steps = max(step, 1)
            train_means = {f'train_{k}': v / n_steps for k, v in dist.mean_over_ranks(sums).items()}
            val_generator.manual_seed(run.seed)
            pictures = [run.image_dir / 'val_attention_latest.png']
            pictures += [run.image_dir / f'val_attention_e{epoch}.png'] if keep else []
            val = evaluate(image_encoder, text_encoder, val_loader, cfg, device, dataset.ixtoword,
                           picture_paths=pictures) if main else {}
            elapsed = time.time() - t0
            last = {'kind': 'damsm_epoch', 'epoch': epoch, 'step': global_step, 'lr': lr, 'time_s': elapsed,
                    'images_per_s': len(loader) * batch_size * dist.world_size() / max(elapsed, 1e-9),
                    **train_means, **val}
            metrics.write(last, step=global_step)
            log.info('epoch %d | %.1fs | train w %.3f s %.3f | val w %.3f s %.3f | R@1 img->txt %.3f '
                     'txt->img %.3f | lr %.6f', epoch, elapsed,
                     train_means.get('train_w_loss0', 0) + train_means.get('train_w_loss1', 0),
                     train_means.get('train_s_loss0', 0) + train_means.get('train_s_loss1', 0),
                     val.get('val_w_loss', float('nan')), val.get('val_s_loss', float('nan')),
                     val.get('r_precision_i2t', float('nan')), val.get('r_precision_t2i', float('nan')), lr)
            if lr > cfg.TRAIN.ENCODER_LR / 10.0:
                lr *= cfg.DAMSM.LR_DECAY
            final = epoch == cfg.TRAIN.MAX_EPOCH - 1
            if (epoch % cfg.TRAIN.SNAPSHOT_INTERVAL == 0 or final) and main:
                atomic_save(image_encoder.state_dict(), run.model_dir / f'image_encoder{epoch}.pth')
                atomic_save(text_encoder.state_dict(), run.model_dir / f'text_encoder{epoch}.pth')
                log.info('saved text_encoder%d.pth and image_encoder%d.pth in %s', epoch, epoch, run.model_dir)
            sums = {}
            stop = dist.any_rank(interrupt.stop_requested) or why is not None  # all ranks agree: a collective
            checkpoint(epoch + 1, 0, optimizer)
            if stop:
                log.info('%s after epoch %d: checkpoint written to %s', why or 'interrupted', epoch,
                         run.model_dir / TRAIN_STATE_NAME)
                break
    metrics.close()
    return last

