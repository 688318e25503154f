"""Captions: tokenisation, per-image caption files, the vocabulary and ``captions.pickle``.

Faithful to the original ``code/datasets.py`` (``load_captions``, ``build_dictionary``, ``load_text_data``)
and ``main.py`` (``gen_example``). Layout read here (paths relative to DATA_DIR)::

    train/filenames.pickle, test/filenames.pickle   lists of stems, e.g. '002.Laysan_Albatross/Laysan_Albatross_0002_1027'
    text/<stem>.txt                                 captions, one per line (CAPTIONS_PER_IMAGE are used)
    train/class_info.pickle, test/class_info.pickle optional class ids, one per stem (else the item index)
    captions.pickle                                 [train_captions, test_captions, ixtoword, wordtoix]

Word indices: ``'<end>'`` is 0 (also the padding); the other words follow in order of first appearance in
the train then the test captions. The released text encoders were trained on a ``captions.pickle`` whose
order came from Python 2 dict hashing: only that file reproduces their indices, so an existing
``captions.pickle`` is always read, never rebuilt.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AttnGANError
from .safe_pickle import dump_pickle_atomic, safe_load

__all__ = ['END_TOKEN', 'DatasetError', 'LayoutError', 'CaptionError', 'ImageError', 'SplitError',
           'OutputExistsError', 'LAYOUT_HELP', 'empty_split_message',
           'tokenize', 'read_caption_file', 'load_captions', 'build_vocab', 'encode_tokens',
           'encode_caption', 'load_filenames', 'load_class_info', 'TextData', 'load_text_data',
           'validate_captions_pickle', 'load_examples']

END_TOKEN = '<end>'

# nltk's RegexpTokenizer(r'\w+') is re.findall with these flags; used directly to avoid importing nltk
_TOKEN_RE = re.compile(r'\w+', re.UNICODE | re.MULTILINE | re.DOTALL)

LAYOUT_HELP = (
    'expected the AttnGAN DATA_DIR layout: train/filenames.pickle and test/filenames.pickle (lists of '
    'stems), text/<stem>.txt (captions, one per line), images at CUB_200_2011/images/<stem>.jpg with '
    'CUB_200_2011/images.txt and bounding_boxes.txt (CUB layout) or at images/<stem>.jpg (COCO layout); '
    'run `python prepare_data.py check-data --cfg CFG` for a full report')


class DatasetError(AttnGANError):
    """Base class of the data pipeline's input errors."""


class LayoutError(DatasetError, FileNotFoundError):
    """A file or folder of the dataset layout is missing or malformed; the message names it."""


class CaptionError(DatasetError, ValueError):
    """A caption file or caption cannot be used; the message names it."""


class ImageError(DatasetError, OSError):
    """An image cannot be decoded; the message names the file."""


class SplitError(DatasetError, ValueError):
    """A split is empty, or a selection of its stems does not fit its list; the message names both."""


class OutputExistsError(DatasetError, FileExistsError):
    """A converter or generator would overwrite files the user did not ask to replace."""


def empty_split_message(data_dir: str | os.PathLike, split: str) -> str:
    """The one line for a split whose ``filenames.pickle`` holds no stem (the loader and check-data)."""
    data_dir = Path(data_dir)
    return (f'the {split} split of DATA_DIR {data_dir} is empty: {data_dir / split / "filenames.pickle"} '
            f'lists no stems')


def tokenize(line: str) -> list[str]:
    """Tokens of one caption as the original: '\\ufffd\\ufffd' -> ' ', lower case, ``\\w+``, ASCII part."""
    line = line.replace('\ufffd\ufffd', ' ')
    tokens = []
    for t in _TOKEN_RE.findall(line.lower()):
        t = t.encode('ascii', 'ignore').decode('ascii')
        if t:
            tokens.append(t)
    return tokens


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LayoutError(f'missing caption file {path}; {LAYOUT_HELP}') from None
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise CaptionError(f'{path}: not valid UTF-8 ({e})') from None


def read_caption_file(path: str | os.PathLike, captions_per_image: int) -> list[list[str]]:
    """The first ``captions_per_image`` non-empty tokenised captions of a ``text/<stem>.txt`` file.

    A file with fewer is an error naming it and the count (the original printed a message and went on,
    which shifted every later caption onto the wrong image).
    """
    path = Path(path)
    captions = []
    for line in _read_text(path).split('\n'):
        if not line:
            continue
        tokens = tokenize(line)
        # the original skipped a line only when \w+ found nothing; a line whose tokens were all non-ASCII
        # became an empty caption (length 0 crashes the packed LSTM), so it is skipped too
        if not tokens:
            continue
        captions.append(tokens)
        if len(captions) == captions_per_image:
            break
    if len(captions) < captions_per_image:
        raise CaptionError(f'{path}: {len(captions)} valid captions, fewer than '
                           f'TEXT.CAPTIONS_PER_IMAGE={captions_per_image}')
    return captions


def load_captions(data_dir: str | os.PathLike, stems: Sequence[str],
                  captions_per_image: int) -> list[list[str]]:
    """Tokenised captions of all ``stems``: ``captions_per_image`` per stem, stem-major."""
    text_dir = Path(data_dir) / 'text'
    out: list[list[str]] = []
    for stem in stems:
        out.extend(read_caption_file(text_dir / f'{stem}.txt', captions_per_image))
    return out


def build_vocab(*caption_lists: Sequence[Sequence[str]]) -> tuple[dict[int, str], dict[str, int]]:
    """``(ixtoword, wordtoix)``: '<end>' = 0, then every word in order of first appearance."""
    ixtoword = {0: END_TOKEN}
    wordtoix = {END_TOKEN: 0}
    for captions in caption_lists:
        for sent in captions:
            for w in sent:
                if w not in wordtoix:
                    wordtoix[w] = len(ixtoword)
                    ixtoword[len(ixtoword)] = w
    return ixtoword, wordtoix


def encode_tokens(captions: Sequence[Sequence[str]], wordtoix: dict[str, int]) -> list[list[int]]:
    """Word ids of tokenised captions; unknown words are dropped (as the original)."""
    return [[wordtoix[w] for w in sent if w in wordtoix] for sent in captions]


def encode_caption(caption: str, wordtoix: dict[str, int], source: str = '') -> list[int]:
    """Word ids of a free-text caption; unknown words dropped; no known word at all is an error."""
    ids = [wordtoix[t] for t in tokenize(caption) if t in wordtoix]
    if not ids:
        where = f' ({source})' if source else ''
        raise CaptionError(f'caption {caption!r}{where} has no word in the vocabulary '
                           f'({len(wordtoix)} words); it cannot be encoded')
    return ids


def load_filenames(data_dir: str | os.PathLike, split: str) -> list[str]:
    """The stems of ``DATA_DIR/<split>/filenames.pickle`` (read safely; Python 2 pickles included)."""
    path = Path(data_dir) / split / 'filenames.pickle'
    if not path.is_file():
        raise LayoutError(f'missing {path}; {LAYOUT_HELP}')
    names = safe_load(path)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise LayoutError(f'{path}: expected a list of strings (stems), got {type(names).__name__}')
    return list(names)


def load_class_info(data_dir: str | os.PathLike, split: str, count: int) -> np.ndarray:
    """Class ids of a split, int64 of shape (count,): ``<split>/class_info.pickle`` or, absent, 0..count-1
    (the original's rule, used for COCO)."""
    path = Path(data_dir) / split / 'class_info.pickle'
    if not path.is_file():
        return np.arange(count, dtype=np.int64)
    ids = safe_load(path)
    try:
        arr = np.asarray(ids, dtype=np.int64)
    except (TypeError, ValueError):
        raise LayoutError(f'{path}: expected a list of integer class ids') from None
    if arr.shape != (count,):
        raise LayoutError(f'{path}: holds {arr.size} class ids but {split}/filenames.pickle lists '
                          f'{count} stems')
    return arr


@dataclass
class TextData:
    """Both splits' stems and word-id captions (``captions_per_image`` per stem), and the vocabulary."""
    train_names: list[str]
    test_names: list[str]
    train_captions: list[list[int]]
    test_captions: list[list[int]]
    ixtoword: dict[int, str]
    wordtoix: dict[str, int]
    source: str = ''  # 'built', 'built (not saved)' or the path of the captions.pickle read

    @property
    def n_words(self) -> int:
        return len(self.ixtoword)

    def split(self, split: str) -> tuple[list[str], list[list[int]]]:
        """``(filenames, captions)`` of 'train' or 'test' (anything else is the test split, as the original)."""
        if split == 'train':
            return self.train_names, self.train_captions
        return self.test_names, self.test_captions


def validate_captions_pickle(obj, path: Path, n_train: int, n_test: int, captions_per_image: int):
    """Check a loaded captions.pickle against the split sizes; return its four parts, normalised."""
    if not isinstance(obj, (list, tuple)) or len(obj) < 4:
        raise CaptionError(f'{path}: expected [train_captions, test_captions, ixtoword, wordtoix]')
    train_caps, test_caps, ixtoword, wordtoix = obj[:4]
    if not isinstance(ixtoword, dict) or not isinstance(wordtoix, dict):
        raise CaptionError(f'{path}: ixtoword and wordtoix must be dicts')
    for name, caps, n in (('train', train_caps, n_train), ('test', test_caps, n_test)):
        if not isinstance(caps, list) or len(caps) != n * captions_per_image:
            got = len(caps) if isinstance(caps, list) else type(caps).__name__
            raise CaptionError(
                f'{path}: holds {got} {name} captions but {name}/filenames.pickle lists {n} stems x '
                f'TEXT.CAPTIONS_PER_IMAGE={captions_per_image}; it was built for other lists or another '
                f'CAPTIONS_PER_IMAGE (delete it to rebuild, which changes the word indices)')
    return ([list(map(int, c)) for c in train_caps], [list(map(int, c)) for c in test_caps],
            {int(k): str(v) for k, v in ixtoword.items()}, {str(k): int(v) for k, v in wordtoix.items()})


def load_text_data(data_dir: str | os.PathLike, captions_per_image: int = 10, *,
                   captions_pickle: str | os.PathLike | None = None, write: bool = True) -> TextData:
    """Stems, captions and vocabulary of both splits, as the original ``load_text_data``.

    Reads ``captions_pickle`` (default ``DATA_DIR/captions.pickle``) when it exists; otherwise builds it
    from ``text/`` and, with ``write``, saves it atomically (protocol 2, the original's structure). When
    the folder is read-only the built data is used without saving (a warning says so).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise LayoutError(f'DATA_DIR {data_dir} does not exist or is not a folder; {LAYOUT_HELP}')
    train_names = load_filenames(data_dir, 'train')
    test_names = load_filenames(data_dir, 'test')
    path = Path(captions_pickle) if captions_pickle is not None else data_dir / 'captions.pickle'
    if path.is_file():
        obj = safe_load(path)
        train_caps, test_caps, ixtoword, wordtoix = validate_captions_pickle(
            obj, path, len(train_names), len(test_names), captions_per_image)
        return TextData(train_names, test_names, train_caps, test_caps, ixtoword, wordtoix, str(path))
    train_tok = load_captions(data_dir, train_names, captions_per_image)
    test_tok = load_captions(data_dir, test_names, captions_per_image)
    ixtoword, wordtoix = build_vocab(train_tok, test_tok)
    train_caps = encode_tokens(train_tok, wordtoix)
    test_caps = encode_tokens(test_tok, wordtoix)
    source = 'built (not saved)'
    if write:
        try:
            dump_pickle_atomic([train_caps, test_caps, ixtoword, wordtoix], path, protocol=2)
            source = 'built'
        except OSError as e:
            warnings.warn(f'could not save {path} ({e}); using the vocabulary built in memory')
    return TextData(train_names, test_names, train_caps, test_caps, ixtoword, wordtoix, source)


def load_examples(data_dir: str | os.PathLike, wordtoix: dict[str, int],
                  list_file: str = 'example_filenames.txt') -> dict[str, list]:
    """Custom captions for sampling, as the original ``main.py:gen_example`` builds ``data_dic``.

    ``DATA_DIR/<list_file>`` names caption files (relative to DATA_DIR, without '.txt'), one per line.
    Returns ``{basename: [cap_array (N, max_len) int64, cap_lens (N,), sorted_indices (N,)]}`` with the
    captions sorted by length, descending; unknown words are dropped and a caption with no known word is
    an error naming it (the original went on with an empty caption).
    """
    data_dir = Path(data_dir)
    list_path = data_dir / list_file
    if not list_path.is_file():
        raise LayoutError(f'missing {list_path}: a list of caption files (relative to DATA_DIR, no .txt)')
    data_dic = {}
    for name in _read_text(list_path).split('\n'):
        name = name.strip()
        if not name:
            continue
        path = data_dir / f'{name}.txt'
        captions = []
        for lineno, sent in enumerate(_read_text(path).split('\n'), 1):
            if not sent or not tokenize(sent):  # the original skipped lines without tokens
                continue
            captions.append(encode_caption(sent, wordtoix, source=f'{path}:{lineno}'))
        if not captions:
            raise CaptionError(f'{path}: no captions')
        cap_lens = [len(c) for c in captions]
        sorted_indices = np.argsort(cap_lens)[::-1]  # as the original: ties come out in reverse order
        cap_lens = np.asarray(cap_lens)[sorted_indices]
        cap_array = np.zeros((len(captions), int(np.max(cap_lens))), dtype='int64')
        for i, idx in enumerate(sorted_indices):
            cap_array[i, :len(captions[idx])] = captions[idx]
        key = name[name.rfind('/') + 1:]
        data_dic[key] = [cap_array, cap_lens, sorted_indices]
    return data_dic

