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
from .viz import attention_picture, save_png, to_uint8
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
    """3 x H x W in [-1, 1] -> PNG, converted as viz.to_uint8 (the original's rule)."""
    Image.fromarray(to_uint8(img[None])[0]).save(path)


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
    """Images at every stage and attention pictures for each caption set ``{name: [ids, lens, order]}``.

    SAMPLE.NUM_PER_IMAGE images per caption, each from its own noise: ``<i>_s_<caption>_g<stage>.png`` and
    ``<i>_s_<caption>_a<stage>.png`` for repetition i (the original's names; it made one, i = 0).
    Returns every file written.
    """
    text_encoder, netG = load_sampling_nets(cfg, n_words, device)
    torch.manual_seed(cfg.SAMPLE.SEED)
    written = []
    for key, (cap_array, cap_lens, sorted_indices) in data_dic.items():
        save_dir = out_root / key
        save_dir.mkdir(parents=True, exist_ok=True)
        captions = torch.as_tensor(cap_array, device=device)
        lens = torch.as_tensor(np.ascontiguousarray(cap_lens), device=device)
        words_emb, sent_emb, mask = encode_text(text_encoder, captions, lens)
        for i in range(cfg.SAMPLE.NUM_PER_IMAGE):
            noise = torch.randn(captions.size(0), cfg.GAN.Z_DIM, device=device)
            fake_imgs, att_maps, _, _ = netG(noise, sent_emb, words_emb, mask)
            for j in range(captions.size(0)):
                name = f'{i}_s_{int(sorted_indices[j])}'
                for k, imgs in enumerate(fake_imgs):
                    path = save_dir / f'{name}_g{k}.png'
                    save_uint8(imgs[j], path)
                    written.append(path)
                for k, maps in enumerate(att_maps or []):
                    img = fake_imgs[k + 1] if len(fake_imgs) > 1 else fake_imgs[0]
                    path = save_dir / f'{name}_a{k}.png'
                    save_png(attention_picture(img[j:j + 1], captions[j:j + 1], ixtoword, maps[j:j + 1]), path)
                    written.append(path)
        log.info('%s: %d captions x %d -> %s', key, captions.size(0), cfg.SAMPLE.NUM_PER_IMAGE, save_dir)
    return written


def cut_to_words_num(data_dic: dict, words_num: int, source: str) -> dict:
    """Captions longer than TEXT.WORDS_NUM words cut to their first ``words_num`` words, with a warning
    (the generator was trained on captions of at most that length; a 500-word caption made a 65,260 px
    wide attention picture)."""
    out = {}
    for key, (cap_array, cap_lens, sorted_indices) in data_dic.items():
        cap_lens = np.asarray(cap_lens)
        long = [(int(sorted_indices[j]), int(n)) for j, n in enumerate(cap_lens) if n > words_num]
        for idx, n in long:
            log.warning('%s: caption %d of %s has %d known words; cut to the first TEXT.WORDS_NUM=%d',
                        source, idx, key, n, words_num)
        if long:
            cap_array, cap_lens = cap_array[:, :words_num], np.minimum(cap_lens, words_num)
        out[key] = [cap_array, cap_lens, sorted_indices]
    return out


def gen_example(cfg: Config, device: torch.device) -> list[Path]:
    """The original's custom-caption sampling from DATA_DIR/example_filenames.txt."""
    data_dir = data_dir_from_cfg(cfg)
    text = load_text_data(data_dir, cfg.TEXT.CAPTIONS_PER_IMAGE)
    data_dic = cut_to_words_num(load_examples(data_dir, text.wordtoix), cfg.TEXT.WORDS_NUM,
                                str(data_dir / 'example_filenames.txt'))
    return generate_captions(cfg, device, data_dic, text.ixtoword, text.n_words,
                             resolve_path(cfg.TRAIN.NET_G).with_suffix(''))


def next_free_folder(parent: Path) -> Path:
    """``parent/<n>`` for the smallest n above every numbered folder in ``parent`` (1 when none)."""
    used = [int(p.name) for p in parent.glob('*') if p.is_dir() and p.name.isdigit()] if parent.is_dir() else []
    return parent / str(max(used, default=0) + 1)


def gen_from_text(cfg: Config, device: torch.device, captions: list[str]) -> list[Path]:
    """Images for captions given on the command line (``--caption``), in a new folder
    ``<NET_G>/captions/<n>/`` per run (with the captions in ``captions.txt``), so that no earlier run's
    pictures are overwritten."""
    data_dir = data_dir_from_cfg(cfg)
    text = load_text_data(data_dir, cfg.TEXT.CAPTIONS_PER_IMAGE)
    ids = [encode_caption(c, text.wordtoix, source='--caption') for c in captions]
    lens = np.asarray([len(c) for c in ids])
    order = np.argsort(-lens, kind='stable')
    arr = np.zeros((len(ids), int(lens.max())), dtype=np.int64)
    for i, idx in enumerate(order):
        arr[i, :lens[idx]] = ids[idx]
    data_dic = cut_to_words_num({'captions': [arr, lens[order], order]}, cfg.TEXT.WORDS_NUM, '--caption')
    out = next_free_folder(resolve_path(cfg.TRAIN.NET_G).with_suffix('') / 'captions')
    out.mkdir(parents=True)
    (out / 'captions.txt').write_text(''.join(f'{i}: {c}\n' for i, c in enumerate(captions)), encoding='utf-8')
    for i, c in enumerate(captions):
        log.info('caption %d: %s', i, c)
    files = generate_captions(cfg, device, {'': data_dic['captions']}, text.ixtoword, text.n_words, out)
    return [out / 'captions.txt'] + files
