"""Sampling (TRAIN.FLAG False): the whole test split for evaluation, or custom captions with attention pictures.

Output layout as the original: ``<NET_G without .pth>/valid/single/<class>/<stem>_s-1.png`` for the test
split, ``<NET_G without .pth>/<example name>/<i>_s_<caption index>_g<stage>.png`` (and ``_a<stage>.png``
attention pictures) for the example captions.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .build import build_generator, build_trained_text_encoder
from .config import Config, ConfigError, resolve_path
from .data import build_dataset, encode_caption, load_examples, load_text_data, data_dir_from_cfg
from .viz import attention_picture, save_png
from .weights import load_state_dict_file

log = logging.getLogger('attngan')


class CaptionsOnly(torch.utils.data.Dataset):
    """The captions of a split without decoding images: item ``(caption ids, length, class id, key)``.

    Repetition ``r`` of image ``i`` uses caption ``r % CAPTIONS_PER_IMAGE`` (the original drew one at random),
    so a sample set is reproducible and covers the captions.
    """

    def __init__(self, dataset, repeats: int = 1):
        self.dataset, self.repeats = dataset, repeats

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats

    def __getitem__(self, index: int):
        r, i = divmod(index, len(self.dataset))
        ds = self.dataset
        caps, cap_len = ds.get_caption(i * ds.embeddings_num + r % ds.embeddings_num)
        return caps, cap_len, int(ds.class_id[i]), ds.filenames[i], r


def load_sampling_nets(cfg: Config, n_words: int, device: torch.device):
    """Text encoder (TRAIN.NET_E) and generator (TRAIN.NET_G), in eval mode on ``device``."""
    for key in ('NET_E', 'NET_G'):
        if not cfg.TRAIN[key]:
            raise ConfigError(f'TRAIN.{key} is empty: sampling needs a trained '
                              f'{"text encoder" if key == "NET_E" else "generator"} file')
    text_encoder = build_trained_text_encoder(cfg, n_words, resolve_path(cfg.TRAIN.NET_E))
    netG = build_generator(cfg)
    load_state_dict_file(resolve_path(cfg.TRAIN.NET_G), netG, 'generator')
    return text_encoder.to(device).eval(), netG.to(device).eval()


def encode_text(text_encoder, captions: torch.Tensor, cap_lens: torch.Tensor):
    """Word and sentence embeddings and the word mask cut to the longest caption (as the trainer)."""
    hidden = text_encoder.init_hidden(captions.size(0))
    words_emb, sent_emb = text_encoder(captions, cap_lens, hidden)
    mask = (captions == 0)[:, :words_emb.size(2)]
    return words_emb, sent_emb, mask


def save_uint8(img: torch.Tensor, path: Path) -> None:
    """3 x H x W in [-1, 1] -> PNG, as the original ((x + 1) * 127.5, truncated to uint8)."""
    arr = ((img.detach().float().cpu().numpy() + 1.0) * 127.5).astype(np.uint8)
    Image.fromarray(np.transpose(arr, (1, 2, 0))).save(path)


@torch.no_grad()
def sample_split(cfg: Config, device: torch.device, split: str = 'test') -> Path:
    """Generate the last stage's image for every image of ``split`` (SAMPLE.NUM_PER_IMAGE each)."""
    dataset = build_dataset(cfg, split, require_images=False, transform=None, cache=False)
    text_encoder, netG = load_sampling_nets(cfg, dataset.n_words, device)
    repeats = cfg.SAMPLE.NUM_PER_IMAGE
    loader = torch.utils.data.DataLoader(CaptionsOnly(dataset, repeats), batch_size=cfg.TRAIN.BATCH_SIZE,
                                         shuffle=False, drop_last=False, num_workers=0)
    net_g = resolve_path(cfg.TRAIN.NET_G)
    save_dir = net_g.with_suffix('') / ('valid' if split == 'test' else split) / 'single'
    torch.manual_seed(cfg.SAMPLE.SEED)
    np.random.seed(cfg.SAMPLE.SEED)
    n = 0
    for caps, cap_lens, _, keys, reps in tqdm(loader, desc=f'sampling {split}', dynamic_ncols=True, disable=None):
        cap_lens, order = torch.sort(cap_lens, descending=True, stable=True)
        caps, keys, reps = caps[order].to(device), [keys[i] for i in order.tolist()], reps[order].tolist()
        words_emb, sent_emb, mask = encode_text(text_encoder, caps, cap_lens.to(device))
        noise = torch.randn(caps.size(0), cfg.GAN.Z_DIM, device=device)
        fake_imgs, _, _, _ = netG(noise, sent_emb, words_emb, mask)
        for j, key in enumerate(keys):
            path = save_dir / f'{key}_s-1.png' if reps[j] == 0 else save_dir / f'{key}_s-1_{reps[j]}.png'
            path.parent.mkdir(parents=True, exist_ok=True)
            save_uint8(fake_imgs[-1][j], path)
        n += len(keys)
    log.info('wrote %d images (%d per test image) under %s', n, repeats, save_dir)
    return save_dir


@torch.no_grad()
def generate_captions(cfg: Config, device: torch.device, data_dic: dict, ixtoword, n_words: int,
                      out_root: Path) -> list[Path]:
    """Images at every stage and attention pictures for each caption set ``{name: [ids, lens, order]}``."""
    text_encoder, netG = load_sampling_nets(cfg, n_words, device)
    torch.manual_seed(cfg.SAMPLE.SEED)
    written = []
    for key, (cap_array, cap_lens, sorted_indices) in data_dic.items():
        save_dir = out_root / key
        save_dir.mkdir(parents=True, exist_ok=True)
        captions = torch.as_tensor(cap_array, device=device)
        lens = torch.as_tensor(np.ascontiguousarray(cap_lens), device=device)
        words_emb, sent_emb, mask = encode_text(text_encoder, captions, lens)
        noise = torch.randn(captions.size(0), cfg.GAN.Z_DIM, device=device)
        fake_imgs, att_maps, _, _ = netG(noise, sent_emb, words_emb, mask)
        for j in range(captions.size(0)):
            name = save_dir / f'0_s_{int(sorted_indices[j])}'
            for k, imgs in enumerate(fake_imgs):
                save_uint8(imgs[j], Path(f'{name}_g{k}.png'))
                written.append(Path(f'{name}_g{k}.png'))
            for k, maps in enumerate(att_maps or []):
                img = fake_imgs[k + 1] if len(fake_imgs) > 1 else fake_imgs[0]
                save_png(attention_picture(img[j:j + 1], captions[j:j + 1], ixtoword, maps[j:j + 1]),
                         f'{name}_a{k}.png')
        log.info('%s: %d captions -> %s', key, captions.size(0), save_dir)
    return written


def gen_example(cfg: Config, device: torch.device) -> list[Path]:
    """The original's custom-caption sampling from DATA_DIR/example_filenames.txt."""
    data_dir = data_dir_from_cfg(cfg)
    text = load_text_data(data_dir, cfg.TEXT.CAPTIONS_PER_IMAGE)
    data_dic = load_examples(data_dir, text.wordtoix)
    return generate_captions(cfg, device, data_dic, text.ixtoword, text.n_words,
                             resolve_path(cfg.TRAIN.NET_G).with_suffix(''))


def gen_from_text(cfg: Config, device: torch.device, captions: list[str]) -> list[Path]:
    """Images for captions given on the command line (``--caption``), under ``<NET_G>/captions/``."""
    data_dir = data_dir_from_cfg(cfg)
    text = load_text_data(data_dir, cfg.TEXT.CAPTIONS_PER_IMAGE)
    ids = [encode_caption(c, text.wordtoix, source='--caption') for c in captions]
    lens = np.asarray([len(c) for c in ids])
    order = np.argsort(-lens, kind='stable')
    arr = np.zeros((len(ids), int(lens.max())), dtype=np.int64)
    for i, idx in enumerate(order):
        arr[i, :lens[idx]] = ids[idx]
    out = resolve_path(cfg.TRAIN.NET_G).with_suffix('')
    for i, c in enumerate(captions):
        log.info('caption %d: %s', i, c)
    return generate_captions(cfg, device, {'captions': [arr, lens[order], order]}, text.ixtoword, text.n_words,
                             out)
