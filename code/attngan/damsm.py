"""DAMSM pretraining: the text encoder (bi-LSTM) and the image encoder (Inception-v3 + two projections).

:class:`DAMSMTask` is what :class:`~attngan.engine.trainer.Trainer` drives. Faithful to the original
``pretrain_DAMSM.py``: words_loss + sent_loss on each batch, gradient clipping of the text encoder only,
Adam re-created at every epoch, lr decayed by 0.98 per epoch while above ENCODER_LR / 10 (both configurable:
DAMSM.ADAM_PER_EPOCH, DAMSM.LR_DECAY), ``text_encoder<N>.pth`` / ``image_encoder<N>.pth`` snapshots. Added:
retrieval accuracy on the test split and attention pictures.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping

import torch

from .build import build_image_encoder, build_text_encoder, build_trained_text_encoder
from .config import Config, ConfigError, resolve_path
from .data import build_dataloader, build_dataset, prepare_data
from .engine import distributed as dist
from .engine.checkpoint import atomic_save
from .engine.loop import keeps_pictures
from .engine.trainer import Task
from .losses import sent_loss, words_loss
from .metrics.r_precision import r_precision_from_pool
from .viz import attention_picture, save_png
from .weights import load_state_dict_file

log = logging.getLogger('attngan')

__all__ = ['DAMSMTask', 'damsm_losses', 'evaluate', 'retrieval_accuracy', 'encoder_epoch',
           'image_encoder_path']


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


class DAMSMTask(Task):
    """Train the DAMSM text and image encoders on the train split; validate on the test split each epoch."""

    kind, title, position_key, counter_key = 'damsm', 'DAMSM', 'step', 'global_step'

    def build_dataset(self):
        cfg = self.cfg
        dataset = build_dataset(cfg, 'train')
        # shuffled as the original (sorted test batches would hold one class each, whose masked losses are
        # 0), with a fixed order so that every validation sees the same batches; validation runs on rank 0
        self.val_generator = torch.Generator()
        self.val_loader, _ = build_dataloader(cfg, 'test', shuffle=True, drop_last=True, device=self.device,
                                              vocab_from=dataset, generator=self.val_generator)
        self.dataset = dataset
        return dataset

    def build(self, dataset, loader, resuming: bool) -> int:
        cfg, device = self.cfg, self.device
        log.info('DAMSM: %d test batches, vocabulary %d', len(self.val_loader), dataset.n_words)
        start_epoch, self.lr = 0, cfg.TRAIN.ENCODER_LR
        net_e = resolve_path(cfg.TRAIN.NET_E) if cfg.TRAIN.NET_E and not resuming else None
        if net_e:  # the original continues at N+1 with lr reset to ENCODER_LR
            start_epoch = encoder_epoch(net_e) + 1
            self.text_encoder = build_trained_text_encoder(cfg, dataset.n_words, net_e).to(device)
        else:
            self.text_encoder = build_text_encoder(cfg, dataset.n_words).to(device)
        self.image_encoder = build_image_encoder(cfg, cfg.TEXT.EMBEDDING_DIM).to(device)
        if net_e:
            load_state_dict_file(image_encoder_path(net_e), self.image_encoder, 'image encoder')
            log.info('loaded %s and its image encoder; continuing at epoch %d', net_e, start_epoch)
        # DDP wrappers (the modules themselves outside torchrun) for the training forward only; the plain
        # modules are clipped, evaluated, saved and loaded. Wrapping copies rank 0's weights to every rank.
        self.ddp_text = dist.wrap_ddp(self.text_encoder, device, sync_bn=cfg.TRAIN.SYNC_BN)
        self.ddp_image = dist.wrap_ddp(self.image_encoder, device, sync_bn=cfg.TRAIN.SYNC_BN)
        self.params = (list(self.text_encoder.parameters())
                       + [p for p in self.image_encoder.parameters() if p.requires_grad])
        self.labels = torch.arange(cfg.TRAIN.BATCH_SIZE, device=device)
        self.optimizer, self.pending_optimizer_state, self.sums = None, None, {}
        return start_epoch

    def load_state(self, state: Mapping, epoch: int, step: int) -> None:
        cfg = self.cfg
        self.text_encoder.load_state_dict(state['text_encoder'])
        self.image_encoder.load_state_dict(state['image_encoder'])
        self.lr = state['lr']
        old_lr = state['config']['TRAIN']['ENCODER_LR']
        if old_lr != cfg.TRAIN.ENCODER_LR:  # a resume that changes ENCODER_LR rescales the decayed lr
            self.lr *= cfg.TRAIN.ENCODER_LR / old_lr
        if step > 0 or not cfg.DAMSM.ADAM_PER_EPOCH:
            self.pending_optimizer_state = state['optimizer']
        self.sums = state.get('sums', {})

    def state_dict(self) -> dict:
        # a collective under torchrun: every rank averages its loss sums
        sums = dist.mean_over_ranks(self.sums) if dist.is_distributed() else self.sums
        optimizer = self.optimizer.state_dict() if self.optimizer is not None else self.pending_optimizer_state
        return dict(n_words=self.dataset.n_words, lr=self.lr, text_encoder=self.text_encoder.state_dict(),
                    image_encoder=self.image_encoder.state_dict(), optimizer=optimizer, sums=sums)

    def begin_epoch(self, epoch: int, skip: int) -> None:
        if self.cfg.DAMSM.ADAM_PER_EPOCH or self.optimizer is None:
            # the original creates a new Adam at every epoch, so its moment estimates restart each epoch
            self.optimizer = torch.optim.Adam(self.params, lr=self.lr, betas=(0.5, 0.999))
        if self.pending_optimizer_state is not None:
            self.optimizer.load_state_dict(self.pending_optimizer_state)
            self.pending_optimizer_state = None
        for group in self.optimizer.param_groups:
            group['lr'] = self.lr
        # CNN_ENCODER.train keeps the frozen trunk's BatchNorm in eval mode when DAMSM.TRUNK_BN_EVAL says so
        self.text_encoder.train()
        self.image_encoder.train()
        if skip == 0:
            self.sums = {}
        self.keep_pictures = keeps_pictures(epoch, self.cfg)

    def step(self, batch) -> dict:
        imgs, captions, cap_lens, class_ids, _ = prepare_data(batch, self.device)
        self.text_encoder.zero_grad()
        self.image_encoder.zero_grad()
        losses, attn_maps, _, _ = damsm_losses(self.ddp_image, self.ddp_text, imgs[-1], captions, cap_lens,
                                               class_ids, self.labels, self.cfg)
        sum(losses.values()).backward()
        # only the text encoder is clipped, as the original
        torch.nn.utils.clip_grad_norm_(self.text_encoder.parameters(), self.cfg.TRAIN.RNN_GRAD_CLIP)
        self.optimizer.step()
        losses = {k: v.detach() for k, v in losses.items()}
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v  # tensors: no host sync per step
        self.picture = (imgs[-1], captions, attn_maps)
        return losses

    def is_log_step(self, step: int, iteration: int, n_batches: int) -> bool:
        # as the original: steps 0, N, 2N, ... of each epoch (counted from 0)
        return (step - 1) % self.cfg.TRAIN.DAMSM_UPDATE_INTERVAL == 0

    def after_step(self, epoch: int, step: int, iteration: int, logged: bool) -> None:
        if logged and self.main:  # the original overwrites attention_maps<step>.png every epoch too
            image_dir = self.run.image_dir
            kept = [image_dir / f'attention_maps_e{epoch}_s{step - 1}.png'] if self.keep_pictures else []
            imgs, captions, attn_maps = self.picture
            save_png(attention_picture(imgs, captions, self.dataset.ixtoword, attn_maps),
                     image_dir / f'attention_maps_latest_s{step - 1}.png', *kept)
        self.picture = None

    def end_epoch(self, epoch: int, n_steps: int, losses) -> dict:
        cfg = self.cfg
        train = {f'train_{k}': v / max(n_steps, 1) for k, v in dist.mean_over_ranks(self.sums).items()}
        self.val_generator.manual_seed(self.run.seed)
        pictures = [self.run.image_dir / 'val_attention_latest.png']
        pictures += [self.run.image_dir / f'val_attention_e{epoch}.png'] if self.keep_pictures else []
        val = evaluate(self.image_encoder, self.text_encoder, self.val_loader, cfg, self.device,
                       self.dataset.ixtoword, picture_paths=pictures) if self.main else {}
        record = {'lr': self.lr, **train, **val}
        log.info('epoch %d | train w %.3f s %.3f | val w %.3f s %.3f | R@1 img->txt %.3f txt->img %.3f | lr %.6f',
                 epoch, train.get('train_w_loss0', 0) + train.get('train_w_loss1', 0),
                 train.get('train_s_loss0', 0) + train.get('train_s_loss1', 0),
                 val.get('val_w_loss', float('nan')), val.get('val_s_loss', float('nan')),
                 val.get('r_precision_i2t', float('nan')), val.get('r_precision_t2i', float('nan')), self.lr)
        if self.lr > cfg.TRAIN.ENCODER_LR / 10.0:
            self.lr *= cfg.DAMSM.LR_DECAY
        if (epoch % cfg.TRAIN.SNAPSHOT_INTERVAL == 0 or epoch == cfg.TRAIN.MAX_EPOCH - 1) and self.main:
            model_dir = self.run.model_dir
            atomic_save(self.image_encoder.state_dict(), model_dir / f'image_encoder{epoch}.pth')
            atomic_save(self.text_encoder.state_dict(), model_dir / f'text_encoder{epoch}.pth')
            log.info('saved text_encoder%d.pth and image_encoder%d.pth in %s', epoch, epoch, model_dir)
        self.sums = {}
        return record
