#!/usr/bin/env python
"""Which DAMSM encoder limits retrieval on the toy data? Each encoder is trained against an oracle.

The toy dataset knows what every image shows (its class's 7 attributes) and what every caption names
(``attributes.json``). An *oracle code* is a small trained MLP over those one-hot labels. With
``--mode``:

* ``text``:  the text encoder (RNN_ENCODER) learns against oracle image codes (the image's attributes);
* ``image``: the image encoder (DAMSM.IMAGE_ENCODER) learns against oracle caption codes (the attributes
  the caption names);
* ``both``:  both sides are oracles: the ceiling of the global-feature cosine protocol on this data;
* ``joint``: both real encoders, with the word and sentence losses (as pretrain_DAMSM.py).

The oracle modes train on the sentence loss only (the one that shapes the global codes the protocol
scores). Unlike pretrain_DAMSM.py, one Adam(ENCODER_LR, betas (0.5, 0.999)) runs the whole time at a
constant lr. Every ``--eval-every`` epochs: image-to-text R-precision (top-1, true caption against 99
captions of other classes: the validation protocol of pretrain_DAMSM.py) on the train and test splits.

    python bench/damsm_toy_oracle.py --mode text [--epochs 30] [--cfg cfg/DAMSM/toy.yml]
                                      [--data-dir data/toy] [--set KEY=VALUE ...]

Figures (2-core CPU, seed 1, 30 epochs = 840 steps of 32; R@1 train / test). Toy format 3 (captions name
every part that fits) with cfg/DAMSM/toy.yml (TEXT.RNN_DROPOUT 0, ENCODER_LR 0.005): text 0.95 / 0.80
(16 s); image 0.96 / 0.34 (42 s); both 1.00 / 0.99 (8 s: the protocol's ceiling with global features);
joint 0.64 / 0.47 (70 s). The image side limits: the small CNN, trained whole from scratch, memorises the 75
training classes (the original's image trunk is a frozen ImageNet Inception-v3). Before (format 2,
captions naming 2-5 parts; RNN dropout 0.5, lr 0.002): text 0.60 / 0.54, image 0.84 / 0.30, both
0.96 / 0.88, joint 0.26 / 0.21. With the toy's default since 2026-11-27 (400 classes of 3 images, 300 for
training; SMALL_CNN_WIDTH 32): image 0.69 / 0.46 with the mean-pooled global code SmallCNNEncoder had, 0.81 /
0.68 with the max pooling over its 4 x 4 grid (0.64 / 0.57 after 10 epochs, against 0.30 / 0.23); text 0.87 /
0.88; joint 0.63 / 0.65 (mean pooling: 0.51 / 0.50). Now (SMALL_CNN_WIDTH 16; SmallCNNEncoder maximises its
global code over the 8 x 8 regions; TEXT.SENT_POOL max): text 0.95 / 0.97 (31 s; 0.82 / 0.86 with the
original's last-state sentence embedding, TEXT.SENT_POOL last), image 0.86 / 0.72 (37 s), joint 0.76 / 0.81
(67 s). The text side had limited the joint runs: its last states must carry every named colour to the end of
the caption.
"""
import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np
import torch
import torch.nn as nn

from attngan.build import build_image_encoder, build_text_encoder
from attngan.config import load_config
from attngan.damsm import retrieval_accuracy
from attngan.data import build_dataloader, build_dataset, prepare_data
from attngan.data.toy import load_attributes, tokenize
from attngan.losses import sent_loss, words_loss


class AttributeCodes:
    """One-hot attribute vectors of the toy's images and captions (``attributes.json``)."""

    def __init__(self, data_dir: Path):
        meta = load_attributes(data_dir)
        self.attributes = meta['attributes']
        self.images = meta['images']
        self.values = {a: sorted({c['attributes'][a] for c in meta['classes'].values()}) for a in self.attributes}
        self.dim = sum(len(v) for v in self.values.values())
        # (image key, caption tokens) -> attributes named
        self.mentions = {(key, tuple(tokenize(c['text']))): c['mentions']
                         for key, im in self.images.items() for c in im['captions']}

    def _onehot(self, key: str, named) -> list:
        attrs = self.images[key]['attributes']
        out = []
        for a in self.attributes:
            v = [0.0] * len(self.values[a])
            if a in named:
                v[self.values[a].index(attrs[a])] = 1.0
            out += v
        return out

    def image(self, keys) -> torch.Tensor:
        """B x dim: every attribute of each image."""
        return torch.tensor([self._onehot(k, self.attributes) for k in keys])

    def caption(self, keys, captions, cap_lens, ixtoword) -> torch.Tensor:
        """B x dim: the attributes each caption names (captions: B x W token ids)."""
        rows = []
        for key, cap, n in zip(keys, captions.tolist(), cap_lens.tolist()):
            words = tuple(ixtoword[t] for t in cap[:n])
            try:
                rows.append(self._onehot(key, self.mentions[(key, words)]))
            except KeyError:
                raise SystemExit(f'{key}: caption {" ".join(words)!r} is not in attributes.json '
                                 '(captions truncated by TEXT.WORDS_NUM?)') from None
        return torch.tensor(rows)


def oracle_mlp(dim: int, nef: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, nef))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mode', choices=('text', 'image', 'both', 'joint'), required=True)
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--eval-every', type=int, default=5)
    p.add_argument('--cfg', default=str(REPO / 'cfg' / 'DAMSM' / 'toy.yml'))
    p.add_argument('--data-dir', default=str(REPO / 'data' / 'toy'))
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='override a config key')
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # the loader's caption choice

    cfg = load_config(args.cfg, args.set)
    cfg.DATA_DIR = args.data_dir
    codes = AttributeCodes(Path(args.data_dir))
    train = build_dataset(cfg, 'train')
    loaders = {}
    for split in ('train', 'test'):
        g = torch.Generator()
        g.manual_seed(0)
        loaders[split], _ = build_dataloader(cfg, split, shuffle=True, drop_last=True, generator=g, device='cpu',
                                             dataset=train if split == 'train' else None,
                                             vocab_from=None if split == 'train' else train)
    nef = cfg.TEXT.EMBEDDING_DIM
    text_encoder = build_text_encoder(cfg, train.n_words)
    image_encoder = build_image_encoder(cfg)
    image_oracle, caption_oracle = oracle_mlp(codes.dim, nef), oracle_mlp(codes.dim, nef)
    learn_text, learn_image = args.mode in ('text', 'joint'), args.mode in ('image', 'joint')
    modules = [m for m, on in ((text_encoder, learn_text), (image_encoder, learn_image),
                               (image_oracle, not learn_image), (caption_oracle, not learn_text)) if on]
    optimizer = torch.optim.Adam([q for m in modules for q in m.parameters() if q.requires_grad],
                                 lr=cfg.TRAIN.ENCODER_LR, betas=(0.5, 0.999))
    s = cfg.TRAIN.SMOOTH

    def forward(batch, with_words: bool):
        imgs, captions, cap_lens, class_ids, keys = prepare_data(batch, 'cpu')
        words_loss_value = 0
        if learn_image:
            regions, img_code = image_encoder(imgs[-1])
        else:
            img_code = image_oracle(codes.image(keys))
        if learn_text:
            words_emb, sent_emb = text_encoder(captions, cap_lens, text_encoder.init_hidden(captions.size(0)))
        else:
            sent_emb = caption_oracle(codes.caption(keys, captions, cap_lens, train.ixtoword))
        if with_words and args.mode == 'joint':
            labels = torch.arange(captions.size(0))
            w0, w1, _ = words_loss(regions, words_emb, labels, cap_lens, class_ids, captions.size(0),
                                   gamma1=s.GAMMA1, gamma2=s.GAMMA2, gamma3=s.GAMMA3)
            words_loss_value = w0 + w1
        return img_code, sent_emb, class_ids, words_loss_value

    print(f'mode {args.mode}: {train.n_words} words, {len(train)} train images, {args.epochs} epochs of '
          f'{len(loaders["train"])} steps', flush=True)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        for m in modules:
            m.train()
        for batch in loaders['train']:
            img_code, sent_emb, class_ids, w = forward(batch, with_words=True)
            labels = torch.arange(img_code.size(0))
            s0, s1 = sent_loss(img_code, sent_emb, labels, class_ids, img_code.size(0), gamma3=s.GAMMA3)
            optimizer.zero_grad()
            (s0 + s1 + w).backward()
            if learn_text:
                nn.utils.clip_grad_norm_(text_encoder.parameters(), cfg.TRAIN.RNN_GRAD_CLIP)
            optimizer.step()
        if (epoch + 1) % args.eval_every and epoch + 1 != args.epochs:
            continue
        for m in modules:
            m.eval()
        r = {}
        with torch.no_grad():
            for split, loader in loaders.items():
                img_codes, sent_codes, classes = [], [], []
                for batch in loader:
                    img_code, sent_emb, class_ids, _ = forward(batch, with_words=False)
                    img_codes.append(img_code)
                    sent_codes.append(sent_emb)
                    classes.append(torch.as_tensor(class_ids))
                r[split] = retrieval_accuracy(torch.cat(img_codes), torch.cat(sent_codes),
                                              torch.cat(classes))['r_precision_i2t']
        print(f'epoch {epoch:3d} | {time.perf_counter() - t0:5.0f}s | R@1 image->text train {r["train"]:.3f} '
              f'test {r["test"]:.3f}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
