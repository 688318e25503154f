"""The pipeline on the real CUB metadata, captions and JPEGs in ../shared/data/birds (skipped when absent).

Every expectation comes from the files in that folder (read without attngan.data, see
``data_fixtures.RealBirds``): the split lists, class_info, images.txt, image_class_labels.txt,
bounding_boxes.txt, which JPEGs exist and the caption files. So the tests hold for whichever real classes
have images there (``ATTNGAN_BIRDS=DIR`` points them at another copy). Reads all caption files once
(module fixture, a few seconds) and never writes into the folder.
"""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.config import load_config
from attngan.data import LayoutError, TextDataset, load_examples, load_text_data
from attngan.data.cub import load_bbox
from data_fixtures import RealBirds, oracle_captions, oracle_tokens

#: ntoken of the released AttnGAN bird text encoder: the vocabulary of ALL CUB captions (+ '<end>')
RELEASED_BIRD_NTOKEN = 5450
K = load_config('cfg/bird_attn2.yml').TEXT.CAPTIONS_PER_IMAGE  # the captions per image the bird configs read


@pytest.fixture(scope='module')
def birds(shared_birds):
    td = load_text_data(shared_birds, K, write=False)
    return shared_birds, td, RealBirds.read(shared_birds)


def test_vocabulary_from_the_caption_files(birds):
    root, td, facts = birds
    assert td.source == 'built (not saved)' and not (root / 'captions.pickle').exists()
    assert (td.train_names, td.test_names) == (facts.stems['train'], facts.stems['test'])
    assert len(td.train_captions) == K * len(facts.stems['train'])
    assert len(td.test_captions) == K * len(facts.stems['test'])
    # the oracle: the first K captions of each listed stem, train then test, words numbered in order of
    # first appearance after '<end>' = 0
    order = {'<end>': 0}
    for split, encoded in (('train', td.train_captions), ('test', td.test_captions)):
        for n, stem in enumerate(facts.stems[split]):
            caps = oracle_captions(root / 'text' / f'{stem}.txt', K)
            for j, words in enumerate(caps):
                ids = [order.setdefault(w, len(order)) for w in words]
                assert encoded[n * K + j] == ids, (split, stem, j)
    assert td.wordtoix == order and td.n_words == len(order)
    assert td.ixtoword == {i: w for w, i in order.items()}
    assert min(len(c) for c in td.train_captions + td.test_captions) >= 1
    assert all(w.isascii() and w == w.lower() for w in td.wordtoix)
    if set(facts.stems['train']) | set(facts.stems['test']) == set(facts.image_id):
        # the lists cover every CUB image: the vocabulary is the released bird text encoder's
        assert td.n_words == RELEASED_BIRD_NTOKEN


def test_replacement_character_lines(birds):
    root, td, facts = birds
    position = {s: (split, n) for split in ('train', 'test') for n, s in enumerate(facts.stems[split])}
    files = [p for p in sorted((root / 'text').rglob('*.txt')) if b'\xef\xbf\xbd\xef\xbf\xbd' in p.read_bytes()]
    if not files:
        pytest.skip(f'no caption file under {root / "text"} holds the pair \\ufffd\\ufffd')
    checked = 0
    for path in files:
        for line in path.read_text('utf-8').split('\n'):
            if '\ufffd\ufffd' not in line:
                continue
            i = line.index('\ufffd\ufffd')
            toks = oracle_tokens(line)
            assert all(t.isascii() for t in toks)
            # the pair separates the words around it, as a space would
            assert toks == oracle_tokens(line[:i] + ' ' + line[i + 2:])
            checked += 1
        stem = path.relative_to(root / 'text').with_suffix('').as_posix()
        if stem in position:   # the loader read those captions the same way
            split, n = position[stem]
            caps = td.split(split)[1][n * K:(n + 1) * K]
            assert [[td.ixtoword[i] for i in c] for c in caps] == oracle_captions(path, K), stem
    assert checked >= len(files)


def test_class_ids_and_real_images(birds):
    root, td, facts = birds
    datasets = {}
    for split in ('train', 'test'):
        present = facts.present(split)
        if not present:
            with pytest.raises(LayoutError, match=rf'none of the {len(facts.stems[split])} images of the '
                                                  rf'{split} split exists'):
                TextDataset(root, split, filenames='existing', text_data=td)
            continue
        ds = TextDataset(root, split, filenames='existing', text_data=td)
        assert ds.filenames == present and len(ds) == len(present)
        assert {f.split('/')[0] for f in ds.filenames} == {facts.class_name[facts.label[s]] for s in present}
        # class_info.pickle (numpy.int64 scalars in the real train file) holds the CUB class number
        # of image_class_labels.txt, position by position
        assert [int(c) for c in ds.class_id] == [facts.label[s] for s in present]
        pos = {s: n for n, s in enumerate(facts.stems[split])}
        assert [int(c) for c in ds.class_id] == [int(facts.class_info[split][pos[s]]) for s in present]
        datasets[split] = ds
    assert datasets, f'no JPEG of either split under {root / "CUB_200_2011" / "images"}'
    for split, ds in datasets.items():
        torch.manual_seed(0)
        np.random.seed(0)
        imgs, caps, n, cls, key = ds[0]
        assert [tuple(t.shape) for t in imgs] == [(3, 64, 64), (3, 128, 128), (3, 256, 256)]
        assert caps.shape == (18,) and 1 <= n <= 18
        assert key == facts.present(split)[0] and cls == facts.label[key]
        assert all(t.min() >= -1 and t.max() <= 1 and t.std() > 0.05 for t in imgs)


def _stems_with_images(facts, n):
    for split in ('train', 'test'):
        stems = facts.one_per_class(split, n)
        if stems:
            return split, stems
    pytest.fail(f'no JPEG of either split under {facts.root / "CUB_200_2011" / "images"}')


def test_cache_equals_faithful_on_real_images(birds, tmp_path):
    root, td, facts = birds
    split, stems = _stems_with_images(facts, 3)
    if len(stems) < 2:
        pytest.skip(f'one image only in the {split} split of {root}')
    faithful = TextDataset(root, split, filenames=stems, text_data=td)
    cached = TextDataset(root, split, filenames=stems, text_data=td, cache=True, cache_dir=tmp_path)
    assert faithful.filenames == cached.filenames == stems
    for i in range(len(stems)):
        for seed in (0, 1):
            torch.manual_seed(seed)
            a = faithful[i][0]
            torch.manual_seed(seed)
            b = cached[i][0]
            assert all(torch.equal(x, y) for x, y in zip(a, b))


def _original_crop(width, height, box):
    """The original datasets.py crop, from the box of bounding_boxes.txt (floats, truncated)."""
    x, y, w, h = (int(v) for v in box)
    r = int(np.maximum(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


def test_real_bounding_box_crop(birds):
    root, td, facts = birds
    boxes = load_bbox(root)
    assert set(boxes) == set(facts.image_id)
    split, stems = _stems_with_images(facts, 5)
    ds = TextDataset(root, split, filenames=stems, text_data=td, transform=None)
    for i, stem in enumerate(stems):
        assert boxes[stem] == [int(v) for v in facts.box[stem]]   # matched by the id of images.txt
        with Image.open(facts.image_path(stem)) as im:
            rgb = im.convert('RGB')
        x1, y1, x2, y2 = _original_crop(rgb.size[0], rgb.size[1], facts.box[stem])
        assert x2 > x1 and y2 > y1, stem
        want = np.asarray(rgb, dtype=np.float32)[y1:y2, x1:x2].transpose(2, 0, 1) / 127.5 - 1
        got = ds[i][0][-1]
        assert got.shape == (3, y2 - y1, x2 - x1), stem
        assert np.allclose(got.numpy(), want, atol=1e-6), stem


def test_unfiltered_lists_name_the_first_missing_image(birds):
    root, td, facts = birds
    for split in ('train', 'test'):
        missing, stems = facts.missing(split), facts.stems[split]
        if not missing:   # a complete image folder: the whole list loads
            assert TextDataset(root, split, text_data=td).filenames == stems
            continue
        first = re.escape(str(facts.image_path(missing[0])))
        with pytest.raises(LayoutError, match=rf'^{len(missing)} of {len(stems)} images of the {split} split '
                                              rf'are missing; first: {first} '):
            TextDataset(root, split, text_data=td)


def test_example_captions(birds):
    root, td, _ = birds
    names = [l.strip() for l in (root / 'example_filenames.txt').read_text('utf-8').split('\n') if l.strip()]
    dic = load_examples(root, td.wordtoix)
    assert set(dic) == {n[n.rfind('/') + 1:] for n in names}
    for name in names:
        cap_array, cap_lens, order = dic[name[name.rfind('/') + 1:]]
        lines = [t for t in (oracle_tokens(l) for l in (root / f'{name}.txt').read_text('utf-8').split('\n')) if t]
        want = [[w for w in t if w in td.wordtoix] for t in lines]   # unknown words are dropped
        assert sorted(order) == list(range(len(want)))
        assert list(cap_lens) == sorted(cap_lens, reverse=True) == [len(want[i]) for i in order]
        assert cap_array.shape == (len(want), cap_lens[0])
        for row, i in enumerate(order):
            assert [td.ixtoword[int(t)] for t in cap_array[row, :cap_lens[row]]] == want[i]
            assert not cap_array[row, cap_lens[row]:].any()


def test_check_data_on_real_birds(birds):
    """check-data on the real folder: the split sizes, images present and missing, and no real JPEG
    taken for a broken one by the cheap image check (all derived from the files)."""
    from attngan.data.check import check_data, quick_image_check
    root, td, facts = birds
    rep = check_data(root, K)
    for split in ('train', 'test'):
        classes = len({int(c) for c in facts.class_info[split]})
        assert rep.info[f'{split} split'] == f'{len(facts.stems[split])} stems, {classes} classes'
        assert rep.info[f'{split} images present'] == len(facts.present(split))
    want = [f'missing images ({split}): {len(facts.missing(split))} of {len(facts.stems[split])}; first: '
            f'{facts.image_path(facts.missing(split)[0]).relative_to(root)}'
            for split in ('train', 'test') if facts.missing(split)]
    assert [p.split(',')[0] for p in rep.problems] == want
    assert rep.info['vocabulary'].startswith(f'{td.n_words} words (built from text/')
    listed = {s for split in ('train', 'test') for s in facts.present(split)}
    assert listed and all(quick_image_check(facts.image_path(s)) is None for s in listed)
