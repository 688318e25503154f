"""TextDataset on the COCO layout (images/, no boxes, class id = item index) and the real COCO lists."""
import re

import numpy as np
import pytest
import torch

from attngan.data import LayoutError, TextDataset, image_root, load_text_data
from attngan.data.check import check_data
from attngan.data.text import load_class_info, load_filenames
from data_fixtures import COCO_CAPTIONS, make_coco, read_plain_pickle


@pytest.fixture()
def coco(tmp_path):
    info = make_coco(tmp_path / 'coco')
    return tmp_path / 'coco', info


def ds(root, split='train', **kw):
    return TextDataset(root, split, base_size=16, branch_num=2, words_num=12, captions_per_image=5, **kw)


def test_coco_items(coco):
    root, info = coco
    d = ds(root)
    assert not d.use_bbox and d.bbox is None and image_root(root) == root / 'images'
    assert d.filenames == info['train'] and len(d) == 3
    assert d.class_id.tolist() == [0, 1, 2]   # no class_info.pickle: the item index (original)
    for i in range(3):
        imgs, caps, n, cls, key = d[i]
        assert [tuple(t.shape) for t in imgs] == [(3, 16, 16), (3, 32, 32)]
        assert cls == i and key == info['train'][i] and caps.shape == (12,) and 0 < n <= 12
    # the grayscale COCO image comes out as three equal channels
    gray = ds(root, transform=None)[2][0][-1]
    assert gray.shape[0] == 3 and torch.equal(gray[0], gray[2])
    assert ds(root, 'test').class_id.tolist() == [0, 1]


def test_caption_of_item_belongs_to_its_image(coco):
    root, info = coco
    d = ds(root)
    for i in range(3):
        allowed = {tuple(c) for c in d.captions[5 * i:5 * i + 5]}
        for seed in range(5):
            np.random.seed(seed)
            _, caps, n, _, _ = d[i]
            words = [d.ixtoword[t] for t in caps[:n]]
            assert tuple(caps[:n]) in allowed
            assert set(words) <= set(' '.join(COCO_CAPTIONS[i]).lower().replace('.', '').split())


def test_filtered_coco_keeps_original_positions(coco):
    root, info = coco
    d = ds(root, filenames=[info['train'][2]])
    assert d.class_id.tolist() == [2] and d.filenames == [info['train'][2]]


def test_missing_image_folder(coco):
    root, info = coco
    for p in (root / 'images').iterdir():
        p.unlink()
    (root / 'images').rmdir()
    with pytest.raises(LayoutError, match=rf"3 of 3 images .* first: .*images/{info['train'][0]}\.jpg"):
        ds(root)
    d = ds(root, require_images=False)   # text only (e.g. the vocabulary for sampling)
    assert d.n_words > 20
    rep = check_data(root, 5)
    assert rep.layout == 'unknown' and any('unknown layout' in p for p in rep.problems)


def test_check_data_ok(coco):
    root, _ = coco
    rep = check_data(root, 5)
    assert rep.ok, rep.format()
    assert rep.layout == 'coco' and 'no problems' in rep.format()
    assert rep.info['train split'].startswith('3 stems')
    rep = check_data(root, 6)
    assert not rep.ok and 'unusable caption files (train' in rep.format()


def test_real_coco_lists(shared_coco):
    train = load_filenames(shared_coco, 'train')
    test = load_filenames(shared_coco, 'test')
    assert (train, test) == (read_plain_pickle(shared_coco / 'train' / 'filenames.pickle'),
                             read_plain_pickle(shared_coco / 'test' / 'filenames.pickle'))
    assert train and test
    assert all(s.startswith('COCO_train2014_') for s in train) and all(s.startswith('COCO_val2014_') for s in test)
    assert load_class_info(shared_coco, 'train', len(train))[-1] == len(train) - 1
    # no per-image caption files in the shared COCO folder: the error names the first one missing
    first = next((s for s in train + test if not (shared_coco / 'text' / f'{s}.txt').is_file()), None)
    if first is None:
        pytest.skip(f'{shared_coco} has every caption file')
    path = re.escape(str(shared_coco / 'text' / first))
    with pytest.raises(LayoutError, match=rf'^missing caption file {path}\.txt;'):
        load_text_data(shared_coco, 5, write=False)
