"""The pipeline on the real CUB metadata, captions and JPEGs in ../shared/data/birds (skipped when absent).

Reads all 11,788 caption files once (module fixture, a few seconds) and never writes into the folder.
"""
import numpy as np
import pytest
import torch

from attngan.data import LayoutError, TextDataset, load_examples, load_text_data, tokenize
from attngan.data.cub import load_bbox
from attngan.data.transforms import bbox_crop_box


@pytest.fixture(scope='module')
def birds(shared_birds):
    td = load_text_data(shared_birds, 10, write=False)
    return shared_birds, td


def test_vocabulary_is_5450(birds):
    root, td = birds
    assert td.source == 'built (not saved)' and not (root / 'captions.pickle').exists()
    assert td.n_words == 5450 == len(td.wordtoix)   # the released bird text encoder's ntoken
    assert td.ixtoword[0] == '<end>' and td.wordtoix['<end>'] == 0
    assert sorted(td.ixtoword) == list(range(5450))
    assert len(td.train_names) == 8855 and len(td.test_names) == 2933
    assert len(td.train_captions) == 88550 and len(td.test_captions) == 29330
    assert min(len(c) for c in td.train_captions + td.test_captions) >= 1
    assert all(w.isascii() and w == w.lower() for w in td.wordtoix)
    # deterministic: the first caption's words come first
    first = tokenize((root / 'text' / f'{td.train_names[0]}.txt').read_text('utf-8').split('\n')[0])
    assert [td.ixtoword[i] for i in td.train_captions[0]] == first
    ids = {}
    assert td.train_captions[0] == [ids.setdefault(w, len(ids) + 1) for w in first]


def test_replacement_character_lines(birds):
    root, td = birds
    files = [p for p in (root / 'text').rglob('*.txt') if b'\xef\xbf\xbd\xef\xbf\xbd' in p.read_bytes()]
    assert len(files) == 56
    line = next(l for l in files[0].read_text('utf-8').split('\n') if '\ufffd\ufffd' in l)
    i = line.index('\ufffd\ufffd')
    toks = tokenize(line)
    assert all(t.isascii() for t in toks)
    # the pair separates the words around it, as a space would
    assert toks == tokenize(line[:i] + ' ' + line[i + 2:])


def test_class_ids_and_real_images(birds):
    root, td = birds
    train = TextDataset(root, 'train', filenames='existing', text_data=td)
    test = TextDataset(root, 'test', filenames='existing', text_data=td)
    assert (len(train), len(test)) == (162, 120)    # classes 002, 003, 005 / 001, 004
    assert {f[:3] for f in train.filenames} == {'002', '003', '005'}
    assert {f[:3] for f in test.filenames} == {'001', '004'}
    # class_info.pickle (numpy.int64 scalars in the train file) holds the CUB class number
    assert [int(c) for c in train.class_id] == [int(f[:3]) for f in train.filenames]
    torch.manual_seed(0)
    np.random.seed(0)
    imgs, caps, n, cls, key = train[0]
    assert [tuple(t.shape) for t in imgs] == [(3, 64, 64), (3, 128, 128), (3, 256, 256)]
    assert caps.shape == (18,) and 1 <= n <= 18 and cls == int(key[:3])
    assert all(t.min() >= -1 and t.max() <= 1 and t.std() > 0.05 for t in imgs)


def test_cache_equals_faithful_on_real_images(birds, tmp_path):
    root, td = birds
    stems = ['002.Laysan_Albatross/Laysan_Albatross_0002_1027', '003.Sooty_Albatross/Sooty_Albatross_0001_1071',
             '005.Crested_Auklet/Crested_Auklet_0001_794941']
    stems = [s for s in stems if (root / 'CUB_200_2011' / 'images' / f'{s}.jpg').is_file()]
    assert len(stems) >= 2
    faithful = TextDataset(root, 'train', filenames=stems, text_data=td)
    cached = TextDataset(root, 'train', filenames=stems, text_data=td, cache=True, cache_dir=tmp_path)
    for i in range(len(stems)):
        for seed in (0, 1):
            torch.manual_seed(seed)
            a = faithful[i][0]
            torch.manual_seed(seed)
            b = cached[i][0]
            assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_real_bounding_box_crop(birds):
    root, td = birds
    stem = '002.Laysan_Albatross/Laysan_Albatross_0002_1027'
    assert load_bbox(root)[stem] == [144, 40, 333, 165]   # bounding_boxes.txt line 61, floats
    # r = 249, centre (310, 122) in a 500 x 375 image
    assert bbox_crop_box(500, 375, [144, 40, 333, 165]) == (61, 0, 500, 371)
    ds = TextDataset(root, 'train', filenames=[stem], text_data=td, transform=None)
    assert ds[0][0][-1].shape == (3, 371, 439)


def test_unfiltered_lists_name_the_first_missing_image(birds):
    root, td = birds
    with pytest.raises(LayoutError, match=r'8693 of 8855 images of the train split are missing; first: '
                                          r'.*CUB_200_2011/images/007\.Parakeet_Auklet/'
                                          r'Parakeet_Auklet_0004_795921\.jpg'):
        TextDataset(root, 'train', text_data=td)


def test_example_captions(birds):
    root, td = birds
    dic = load_examples(root, td.wordtoix)
    assert len(dic) == 24 and 'example_captions' in dic
    cap_array, cap_lens, order = dic['example_captions']
    assert list(cap_lens) == sorted(cap_lens, reverse=True)
    assert cap_array.shape == (len(cap_lens), cap_lens[0])
    words = [td.ixtoword[i] for i in cap_array[list(order).index(0), :cap_lens[list(order).index(0)]]]
    assert words == tokenize((root / 'example_captions.txt').read_text('utf-8').split('\n')[0])
