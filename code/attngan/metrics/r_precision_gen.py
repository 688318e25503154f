"""R-precision of a generator: generate images from test captions and score them in one pass.

DM-GAN's protocol (its ``trainer.sampling``): each generated image's DAMSM global code
(``cnn_code`` of the image encoder, on the generated ``[-1, 1]`` tensor, not a saved PNG)
against the sentence embeddings of its own caption and R - 1 mismatched captions of the same
split (other classes when the split has ``class_info.pickle``, as CUB; other images otherwise,
as COCO); cosine; top-1 hits; mean +- std over folds. The maths lives in
:mod:`attngan.metrics.r_precision`.

Images are made as :func:`attngan.sampling.sample_split` makes them: captions cycled over the
test split (repetition ``r`` of image ``i`` uses caption ``r % CAPTIONS_PER_IMAGE``; item
``r * n_test + i``), the first ``n`` items, each batch sorted by caption length, one noise
draw per batch after seeding torch and numpy with ``seed``. With the same seed and batch size
the images equal those of the sample folder, which ``save_dir`` can write in its layout.

The true caption's embedding is that of the exact word ids the generator saw; the mismatched
ones come from the split's caption pool encoded once (the text encoder is deterministic in
eval mode; long captions keep a random subset of words, as the original's ``get_caption``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from . import r_precision as RP


def sample_file_name(key: str, rep: int) -> str:
    """Relative path of a test-split sample, as sample_split writes it."""
    return f'{key}_s-1.png' if rep == 0 else f'{key}_s-1_{rep}.png'


def load_image_encoder(cfg, path: str | os.PathLike, device) -> torch.nn.Module:
    """The DAMSM image encoder in ``path`` (a CNN_ENCODER state_dict), eval mode, on ``device``."""
    from ..build import build_image_encoder
    from ..weights import load_state_dict_file
    # the file was written with nef = TEXT.EMBEDDING_DIM, which also sizes the sentence embeddings
    net = build_image_encoder(cfg, cfg.TEXT.EMBEDDING_DIM, weights='none')
    load_state_dict_file(path, net, 'image encoder')
    return net.to(device).eval().requires_grad_(False)


def load_text_encoder(cfg, path: str | os.PathLike, n_words: int, device) -> torch.nn.Module:
    """The DAMSM text encoder in ``path`` (an RNN_ENCODER state_dict), eval mode, on ``device``."""
    from ..build import build_trained_text_encoder
    net = build_trained_text_encoder(cfg, n_words, path)
    return net.to(device).eval().requires_grad_(False)


def mismatch_labels(dataset) -> tuple[np.ndarray, str]:
    """(label per image, rule): class ids when the split has class_info.pickle (mismatched
    captions from other classes, CUB), else the image index (other images, COCO)."""
    if (Path(dataset.data_dir) / dataset.split / 'class_info.pickle').is_file():
        return np.asarray(dataset.class_id, dtype=np.int64), 'other classes (class_info.pickle)'
    return np.arange(len(dataset.filenames), dtype=np.int64), 'other images (no class_info.pickle, as COCO)'


@torch.no_grad()
def encode_caption_pool(text_encoder, dataset, device, batch_size: int = 500) -> torch.Tensor:
    """Sentence embeddings of every caption of the split, ``(n_images * captions_per_image) x D``
    (row ``i * k + j``: caption ``j`` of image ``i``), float32 on the CPU."""
    from ..sampling import encode_text
    out = []
    m = len(dataset.filenames) * dataset.embeddings_num
    for a in range(0, m, batch_size):
        caps, lens = zip(*(dataset.get_caption(j) for j in range(a, min(m, a + batch_size))))
        caps = torch.from_numpy(np.stack(caps)).to(device)
        lens = torch.as_tensor(lens, dtype=torch.int64)
        _, sent, _ = encode_text(text_encoder, caps[:, :int(lens.max())], lens.to(device))
        out.append(sent.float().cpu())
    return torch.cat(out)


def score(image_codes, true_emb, pool_emb, query_labels, pool_labels, n_candidates: int = 100,
          n_folds: int = 10, seed: int = 0, chunk: int = 1024) -> RP.RPrecision:
    """R-precision with the true embeddings given per image (``N x D``) and the R - 1 mismatched
    ones drawn from ``pool_emb`` (``M x D``, labels ``pool_labels``) by sample_mismatched."""
    img = torch.as_tensor(image_codes).double()
    true = torch.as_tensor(true_emb).double()
    pool = torch.as_tensor(pool_emb).double()
    mis = torch.from_numpy(RP.sample_mismatched(query_labels, pool_labels, n_candidates - 1, seed))
    hits = np.concatenate([
        RP.hits_from_scores(RP.cosine_scores(
            img[a:a + chunk], torch.cat([true[a:a + chunk, None], pool[mis[a:a + chunk]]], 1)))
        for a in range(0, img.shape[0], chunk)])
    mean, std = RP.fold_mean_std(hits, n_folds, seed)
    return RP.RPrecision(mean, std, hits, n_candidates)


@dataclass
class GeneratorRPrecision:
    """R-precision of a generator and everything needed to state its protocol."""
    result: RP.RPrecision
    net_g: str
    text_encoder: str
    image_encoder: str
    training_text_encoder: str
    mismatch_rule: str
    n_test_images: int
    seed: int
    batch_size: int
    n_folds: int
    save_dir: Path | None = None

    @property
    def mean(self) -> float:
        return self.result.mean

    @property
    def std(self) -> float:
        return self.result.std

    @property
    def uses_training_encoders(self) -> bool:
        return Path(self.text_encoder).resolve() == Path(self.training_text_encoder).resolve()

    def describe(self, with_generator: bool = True) -> str:
        """Multi-line protocol statement (what was generated, compared and with which encoders)."""
        n, r = len(self.result.hits), self.result.n_candidates
        lines = [
            "DM-GAN's R-precision: each generated image's DAMSM global image code (cnn_code, on the "
            'generated tensor) vs the sentence embeddings of its true caption and '
            f'{r - 1} mismatched captions; cosine; top-1 hit',
            *([f'generator: {self.net_g}'] if with_generator else []),
            f'images: {n} generated from the test captions ({self.n_test_images} test images, captions '
            f'cycled as in sampling), seed {self.seed}, batch size {self.batch_size}',
            f'mismatched captions: drawn (seeded, no repeats) from {self.mismatch_rule} of the test split',
            f'folds: {self.n_folds} (hits shuffled with seed {self.seed}); mean +- population std',
            f'text encoder: {self.text_encoder}',
            f'image encoder: {self.image_encoder}',
        ]
        if self.uses_training_encoders:
            lines.append('note: these are the encoders the generator was trained with (TRAIN.NET_E): '
                         'scores with the training encoders are optimistic')
        else:
            lines.append(f'note: the generator was trained with {self.training_text_encoder}; '
                         'scored here with separate encoders')
        return '\n  '.join(lines)


def check_candidates(labels: np.ndarray, captions_per_image: int, n_candidates: int) -> None:
    """Raise ValueError (before any generation) when some image has fewer than ``n_candidates - 1``
    captions outside its label in the split's pool."""
    if n_candidates < 2:
        raise InputError(f'R-precision needs at least 2 candidates (the true caption and mismatched '
                         f'ones), got {n_candidates}')
    values, counts = np.unique(labels, return_counts=True)
    eligible = (len(labels) - counts) * captions_per_image
    if eligible.min() < n_candidates - 1:
        i = int(eligible.argmin())
        raise InputError(f'R-precision with {n_candidates} candidates needs {n_candidates - 1} mismatched '
                         f'captions per image, but the test split has only {eligible[i]} captions outside '
                         f'label {values[i]}: lower the number of candidates (R) or use a larger split')


@torch.no_grad()
def generate_from_test_captions(cfg, device, n: int, dataset, text_encoder, netG, *,
                                batch_size: int, seed: int, save_dir: str | os.PathLike | None = None,
                                progress: bool | None = None, desc: str = 'generating'):
    """Yield ``(item index, captions, cap_lens, sent_emb, images)`` per batch for the first ``n``
    items of sampling order (each batch sorted by caption length as sample_split; ``images`` the
    last stage, ``B x 3 x H x W`` in [-1, 1]); with ``save_dir`` also write them as sample_split."""
    from tqdm import tqdm

    from ..sampling import CaptionsOnly, encode_text, save_uint8

    repeats = -(-n // len(dataset.filenames))
    items = torch.utils.data.Subset(CaptionsOnly(dataset, repeats), range(n))
    loader = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=0)
    save_dir = Path(save_dir) if save_dir is not None else None
    torch.manual_seed(seed)  # as sample_split: same images for the same seed and batch size
    np.random.seed(seed)
    start = 0
    for caps, cap_lens, _, keys, reps in tqdm(loader, desc=desc, dynamic_ncols=True,
                                              disable=None if progress is None else not progress):
        idx = torch.arange(start, start + len(keys))
        start += len(keys)
        cap_lens, perm = torch.sort(cap_lens, descending=True, stable=True)
        caps, idx = caps[perm].to(device), idx[perm]
        cap_lens = cap_lens.to(device)
        words_emb, sent_emb, mask = encode_text(text_encoder, caps, cap_lens)
        noise = torch.randn(caps.size(0), cfg.GAN.Z_DIM, device=device)
        fake = netG(noise, sent_emb, words_emb, mask)[0][-1]
        if save_dir is not None:
            for j, p in enumerate(perm.tolist()):
                path = save_dir / sample_file_name(keys[p], int(reps[p]))
                path.parent.mkdir(parents=True, exist_ok=True)
                save_uint8(fake[j], path)
        yield idx, caps, cap_lens, sent_emb, fake


def write_samples(cfg, device, n: int, save_dir: str | os.PathLike, *, batch_size: int | None = None,
                  seed: int | None = None, dataset=None, progress: bool | None = None) -> list[Path]:
    """Generate the first ``n`` test-split samples with TRAIN.NET_G into ``save_dir`` (sample_split's
    layout and images for the same seed and batch size) -> their paths in sampling order."""
    from ..data import build_dataset
    from ..sampling import load_sampling_nets
    if dataset is None:
        dataset = build_dataset(cfg, 'test', require_images=False, transform=None, cache=False)
    text_encoder, netG = load_sampling_nets(cfg, dataset.n_words, device)
    for _ in generate_from_test_captions(
            cfg, device, n, dataset, text_encoder, netG, save_dir=save_dir, progress=progress,
            batch_size=int(cfg.TRAIN.BATCH_SIZE if batch_size is None else batch_size),
            seed=int(cfg.SAMPLE.SEED if seed is None else seed)):
        pass
    return sample_paths(save_dir, dataset.filenames, n)


@torch.no_grad()
def r_precision_of_generator(cfg, device, n: int = 30000, *, batch_size: int | None = None,
                             seed: int | None = None, net_e: str | os.PathLike | None = None,
                             image_encoder: str | os.PathLike | None = None,
                             n_candidates: int = 100, n_folds: int = 10, dataset=None,
                             save_dir: str | os.PathLike | None = None,
                             progress: bool | None = None,
                             nets: tuple | None = None) -> GeneratorRPrecision:
    """Generate ``n`` images from the test captions with TRAIN.NET_G and score their R-precision.

    cfg: the generator's config (TRAIN.NET_G, TRAIN.NET_E: the text encoder it was trained with).
    net_e: the text encoder scoring the captions (default TRAIN.NET_E); image_encoder: default
    the DAMSM image encoder beside ``net_e`` (``image_encoder<N>.pth``). batch_size: default
    TRAIN.BATCH_SIZE; seed: default SAMPLE.SEED (generation, mismatched draws and folds).
    save_dir: also write the images there in sample_split's layout. nets: ``(generation text
    encoder, generator, scoring text encoder, image encoder)`` already built (tests).
    Problems with the inputs (files, R too large for the split) raise before any generation.
    """
    from ..config import resolve_path
    from ..damsm import image_encoder_path
    from ..data import build_dataset
    from ..sampling import encode_text, load_sampling_nets

    if n < n_folds:
        raise InputError(f'n={n} images for {n_folds} folds: need at least one image per fold')
    if dataset is None:
        dataset = build_dataset(cfg, 'test', require_images=False, transform=None, cache=False)
    if len(dataset.filenames) == 0:
        raise InputError(f'the test split of {dataset.data_dir} is empty')
    labels, rule = mismatch_labels(dataset)
    check_candidates(labels, dataset.embeddings_num, n_candidates)
    seed = int(cfg.SAMPLE.SEED if seed is None else seed)
    batch_size = int(cfg.TRAIN.BATCH_SIZE if batch_size is None else batch_size)
    train_e = str(resolve_path(cfg.TRAIN.NET_E)) if cfg.TRAIN.NET_E else ''
    eval_e = str(resolve_path(net_e)) if net_e else train_e
    img_e = str(resolve_path(image_encoder)) if image_encoder else (
        str(image_encoder_path(eval_e)) if eval_e else '')
    if nets is None:
        gen_text, netG = load_sampling_nets(cfg, dataset.n_words, device)
        same = Path(eval_e).resolve() == Path(train_e).resolve()
        text = gen_text if same else load_text_encoder(cfg, eval_e, dataset.n_words, device)
        img_net = load_image_encoder(cfg, img_e, device)
    else:
        gen_text, netG, text, img_net = nets
        same = gen_text is text

    codes, trues, order = [], [], []
    for idx, caps, cap_lens, sent_emb, fake in generate_from_test_captions(
            cfg, device, n, dataset, gen_text, netG, batch_size=batch_size, seed=seed,
            save_dir=save_dir, progress=progress, desc='R-precision'):
        if not same:
            sent_emb = encode_text(text, caps, cap_lens)[1]
        codes.append(img_net(fake)[1].float().cpu())
        trues.append(sent_emb.float().cpu())
        order.append(idx)
    inv = torch.argsort(torch.cat(order))
    codes, trues = torch.cat(codes)[inv], torch.cat(trues)[inv]

    pool = encode_caption_pool(text, dataset, device, max(batch_size, 100))
    query = labels[np.arange(n) % len(labels)]
    result = score(codes, trues, pool, query, np.repeat(labels, dataset.embeddings_num),
                   n_candidates, n_folds, seed)
    return GeneratorRPrecision(result, str(resolve_path(cfg.TRAIN.NET_G)), eval_e, img_e, train_e, rule,
                               len(dataset.filenames), seed, batch_size, n_folds,
                               Path(save_dir) if save_dir is not None else None)


def sample_paths(folder: str | os.PathLike, keys: Sequence[str], n: int) -> list[Path]:
    """The paths of the first ``n`` test-split samples under ``folder`` in sampling order
    (item ``r * len(keys) + i``: image ``i``, repetition ``r``), as sample_split names them."""
    root = Path(folder)
    return [root / sample_file_name(keys[j % len(keys)], j // len(keys)) for j in range(n)]


__all__ = ['r_precision_of_generator', 'GeneratorRPrecision', 'score', 'encode_caption_pool',
           'generate_from_test_captions', 'write_samples', 'check_candidates', 'mismatch_labels', 'load_image_encoder', 'load_text_encoder', 'sample_paths', 'sample_file_name']
