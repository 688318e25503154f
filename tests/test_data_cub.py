"""attngan.data.cub / transforms / cache / loader on a generated CUB-layout dataset."""
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.config import get_default_config
from attngan.data import (CaptionError, ImageError, LayoutError, TextDataset, build_dataloader, build_dataset,
                          prepare_data)
from attngan.data.transforms import (bbox_crop_box, crop_to_bbox, load_size, normalize_uint8,
                                     random_crop_flip_array, resize_uint8, to_normalized_tensor,
                                     train_transform)
from data_fixtures import make_cub


@pytest.fixture()
def cub(tmp_path):
    info = make_cub(tmp_path / 'cub')
    return tmp_path / 'cub', info


def small(data_dir, split='train', **kw):
    args = dict(base_size=16, branch_num=3, words_num=8, captions_per_image=3)
    args.update(kw)
    return TextDataset(data_dir, split, **args)


def test_item_structure(cub):
    root, info = cub
    ds = small(root)
    assert len(ds) == 4 and ds.filenames == info['train'] and ds.use_bbox
    imgs, caps, cap_len, cls_id, key = ds[2]
    assert [tuple(t.shape) for t in imgs] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
    for t in imgs:
        assert t.dtype == torch.float32 and t.min() >= -1 and t.max() <= 1 and t.std() > 0
    assert caps.shape == (8,) and caps.dtype == np.int64
    assert 1 <= cap_len <= 8 and (caps[:cap_len] > 0).all() and (caps[cap_len:] == 0).all()
    assert cls_id == 2 and key == info['train'][2]   # class_info.pickle (numpy.int64 in the file)
    assert small(root, 'test')[0][3] == 3


def test_branches_are_resized_from_the_crop(cub):
    root, _ = cub
    torch.manual_seed(0)
    imgs = small(root)[0][0]
    # the 16 and 32 px branches are PIL-bilinear resizes of the 64 px crop
    crop = Image.fromarray(((imgs[2].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
    for t, s in zip(imgs[:2], (16, 32)):
        ref = to_normalized_tensor(crop.resize((s, s), Image.BILINEAR))
        assert (t - ref).abs().max() < 2.5 / 127.5


def test_dcgan_single_tensor(cub):
    root, _ = cub
    imgs = small(root, b_dcgan=True)[0][0]
    assert len(imgs) == 1 and imgs[0].shape == (3, 64, 64)


def test_grayscale_becomes_rgb(cub):
    root, info = cub
    ds = small(root, transform=None)
    i = ds.filenames.index(info['gray'])
    img = ds[i][0][-1]
    assert img.shape[0] == 3 and torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def test_normalisation_equals_torchvision():
    import torchvision.transforms as TV
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8))
    ref = TV.Compose([TV.ToTensor(), TV.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])(img)
    assert torch.equal(to_normalized_tensor(img), ref)


@pytest.mark.parametrize('size,bbox,expected', [
    # (W, H), (x, y, w, h): r = int(0.75 * max(w, h)), centre = int((2x + w) / 2), clipped to the image
    ((40, 30), (5, 4, 20, 12), (0, 0, 30, 25)),    # r=15, c=(15, 10): x1 = max(0, 0), y2 = min(30, 25)
    ((50, 36), (31, 20, 15, 13), (27, 15, 49, 36)),  # r=11, c=(38, 26): .5 truncated, clipped at the bottom
    ((36, 36), (10, 10, 7, 9), (7, 8, 19, 20)),      # r=6, c=(13, 14): odd 2x + w truncates
    ((500, 375), (60, 27, 325, 304), (0, 0, 465, 375)),  # the first real CUB box: r=243, c=(222, 179)
])
def test_bbox_crop_arithmetic(size, bbox, expected):
    assert bbox_crop_box(*size, bbox) == expected
    img = Image.new('RGB', size)
    assert crop_to_bbox(img, bbox).size == (expected[2] - expected[0], expected[3] - expected[1])


def test_dataset_crops_with_boxes(cub):
    root, info = cub
    ds = small(root, transform=None)
    for i, stem in enumerate(ds.filenames):
        x1, y1, x2, y2 = bbox_crop_box(*info['sizes'][stem], info['bbox'][stem])
        assert ds[i][0][-1].shape == (3, y2 - y1, x2 - x1)
    ds = small(root, transform=None, use_bbox=False)
    assert ds.bbox is None and ds[0][0][-1].shape[1:] == info['sizes'][ds.filenames[0]][::-1]


def test_use_bbox_auto_follows_the_files(cub):
    root, _ = cub
    (root / 'CUB_200_2011' / 'bounding_boxes.txt').unlink()
    assert not small(root).use_bbox
    with pytest.raises(LayoutError, match=r'missing .*bounding_boxes\.txt'):
        small(root, use_bbox=True)
    with pytest.raises(ValueError, match="'auto', True or False"):
        small(root, use_bbox='yes')


def test_words_num_truncation_keeps_order(cub):
    root, _ = cub
    ds = small(root, words_num=8)
    long_ix = next(i for i, c in enumerate(ds.captions) if len(c) > 12)
    sent = np.asarray(ds.captions[long_ix])
    seen = set()
    for seed in range(20):
        np.random.seed(seed)
        x, n = ds.get_caption(long_ix)
        # the original's rule with the same numpy draws
        np.random.seed(seed)
        ix = list(np.arange(len(sent)))
        np.random.shuffle(ix)
        ref = sent[np.sort(ix[:8])]
        assert n == 8 and x.shape == (8,) and np.array_equal(x, ref)
        pos = [int(np.where(sent == w)[0][0]) if (sent == w).sum() == 1 else None for w in x]
        known = [p for p in pos if p is not None]
        assert known == sorted(known)   # kept in order
        seen.add(tuple(x))
    assert len(seen) > 5   # a random subset, not a prefix
    short_ix = next(i for i, c in enumerate(ds.captions) if len(c) <= 8)
    x, n = ds.get_caption(short_ix)
    assert n == len(ds.captions[short_ix]) and list(x[:n]) == ds.captions[short_ix] and not x[n:].any()


def test_prepare_data_sorts_everything():
    imgs = [torch.arange(5).float().view(5, 1, 1, 1).expand(5, 3, 2, 2), torch.arange(5).float().view(5, 1, 1, 1)]
    captions = torch.arange(5).view(5, 1, 1).expand(5, 4, 1).clone()   # the original's (B, W, 1)
    cap_lens = torch.tensor([2, 5, 3, 5, 1])
    class_ids = torch.tensor([10, 11, 12, 13, 14])
    keys = ['a', 'b', 'c', 'd', 'e']
    out_imgs, caps, lens, cls, ks = prepare_data((imgs, captions, cap_lens, class_ids, keys), 'cpu')
    order = [1, 3, 2, 0, 4]   # descending, ties keep the batch order
    assert lens.tolist() == [5, 5, 3, 2, 1]
    assert caps.shape == (5, 4) and caps[:, 0].tolist() == order
    assert [im.flatten()[0].item() for im in out_imgs[0]] == order and out_imgs[1].flatten().tolist() == order
    assert isinstance(cls, np.ndarray) and cls.tolist() == [10 + i for i in order]
    assert ks == [keys[i] for i in order]


def test_loader_end_to_end(cub):
    root, info = cub
    cfg = get_default_config()
    cfg.DATA_DIR = str(root)
    cfg.TREE.BASE_SIZE = 16
    cfg.TEXT.CAPTIONS_PER_IMAGE = 3
    cfg.TEXT.WORDS_NUM = 8
    cfg.TRAIN.BATCH_SIZE = 3
    cfg.WORKERS = 0
    cfg.CUDA = False
    dl, train_ds = build_dataloader(cfg, 'train', shuffle=True, drop_last=True)
    assert not dl.pin_memory and dl.num_workers == 0 and len(dl) == 1 and len(train_ds) == 4
    imgs, caps, lens, cls, keys = prepare_data(next(iter(dl)), torch.device('cpu'))
    assert [tuple(t.shape) for t in imgs] == [(3, 3, 16, 16), (3, 3, 32, 32), (3, 3, 64, 64)]
    assert caps.shape == (3, 8) and lens.tolist() == sorted(lens.tolist(), reverse=True)
    assert set(keys) <= set(info['train']) and len(cls) == 3
    ds = build_dataset(cfg, 'test')
    assert len(ds) == 2 and ds.words_num == 8
    val, val_ds = build_dataloader(cfg, 'test', shuffle=False, drop_last=True, vocab_from=train_ds,
                                   device='cpu')
    assert val_ds.text is train_ds.text and len(val) == 0 and not val.pin_memory   # 2 items < batch 3
    if torch.cuda.is_available():
        assert build_dataloader(cfg, 'test', False, False, dataset=ds, device='cuda')[0].pin_memory
    cfg.WORKERS = 1
    assert build_dataloader(cfg, 'test', False, False, dataset=ds)[0].persistent_workers


def test_missing_data_dir_and_layout_files(cub, tmp_path):
    root, info = cub
    with pytest.raises(LayoutError, match=r'DATA_DIR .*absent does not exist.*train/filenames\.pickle'):
        small(tmp_path / 'absent')
    (root / 'text' / f'{info["train"][3]}.txt').unlink()
    with pytest.raises(LayoutError, match=rf'missing caption file .*{info["train"][3].split("/")[1]}\.txt'):
        small(root)


def test_short_caption_file(cub):
    root, info = cub
    (root / 'text' / f'{info["train"][0]}.txt').write_text('one\ntwo\n')
    with pytest.raises(CaptionError, match='2 valid captions, fewer than TEXT.CAPTIONS_PER_IMAGE=3'):
        small(root)


def test_missing_image_names_the_first(cub):
    root, info = cub
    for stem in info['train'][1:3]:
        (root / 'CUB_200_2011' / 'images' / f'{stem}.jpg').unlink()
    with pytest.raises(LayoutError, match=rf"2 of 4 images .* first: .*{info['train'][1]}\.jpg"):
        small(root)
    ds = small(root, filenames='existing')
    assert ds.filenames == [info['train'][0], info['train'][3]]
    # captions and class ids follow their stems
    full = small(root, require_images=False)
    assert ds.captions == full.captions[:3] + full.captions[9:12]
    assert ds.class_id.tolist() == [1, 2]
    assert small(root, require_images=False, filenames=[info['train'][3], info['train'][0]]).class_id.tolist() == [2, 1]
    assert len(small(root, filenames=lambda s: s.endswith('0003'))) == 1
    with pytest.raises(ValueError, match="stem 'nope' is not in"):
        small(root, filenames=['nope'])


def test_undecodable_image(cub):
    root, info = cub
    bad = root / 'CUB_200_2011' / 'images' / f'{info["train"][0]}.jpg'
    bad.write_bytes(b'not a jpeg at all')
    ds = small(root)
    with pytest.raises(ImageError, match=rf'cannot decode image .*{bad.name}'):
        ds[0]
    ds = small(root, skip_bad_images=True)
    with pytest.warns(UserWarning, match=rf'{bad.name}.*skipped'):
        item = ds[0]
    assert item[4] == info['train'][1]
    with warnings.catch_warnings():
        warnings.simplefilter('error')   # warned once per file
        assert ds[0][4] == info['train'][1]


def test_undecodable_image_with_cache(cub, tmp_path):
    root, info = cub
    bad = root / 'CUB_200_2011' / 'images' / f'{info["train"][2]}.jpg'
    bad.write_bytes(b'\xff\xd8 truncated')
    with pytest.raises(ImageError, match=rf'cannot decode image .*{bad.name}'):
        small(root, cache=True, cache_dir=tmp_path / 'c1')
    with pytest.warns(UserWarning, match=rf'{bad.name}.*skipped'):
        ds = small(root, cache=True, cache_dir=tmp_path / 'c2', skip_bad_images=True)
    with pytest.warns(UserWarning, match=rf'{bad.name}.*skipped'):
        assert ds[2][4] == info['train'][3]
    assert [ds[i][4] for i in (0, 1, 3)] == [info['train'][i] for i in (0, 1, 3)]


def test_cache_equals_faithful_path(cub, tmp_path):
    root, _ = cub
    faithful = small(root)
    cached = small(root, cache=True, cache_dir=tmp_path / 'cache')
    files = sorted(p.name for p in (tmp_path / 'cache').iterdir())
    assert len(files) == 2 and files[0].startswith('train-') and {f.rsplit('.')[-1] for f in files} == {'u8', 'npz'}
    for i in range(len(faithful)):
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            np.random.seed(seed)
            a = faithful[i]
            torch.manual_seed(seed)
            np.random.seed(seed)
            b = cached[i]
            assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
            assert np.array_equal(a[1], b[1]) and a[2:] == b[2:]
    # reused, not rebuilt; the memmap is not pickled into workers
    mtime = (tmp_path / 'cache' / files[1]).stat().st_mtime_ns
    again = small(root, cache=True, cache_dir=tmp_path / 'cache')
    assert (tmp_path / 'cache' / files[1]).stat().st_mtime_ns == mtime
    again[0]
    clone = pickle.loads(pickle.dumps(again))
    assert clone.cache._mm is None and clone[0][0][2].shape == (3, 64, 64)
    with pytest.raises(ValueError, match='default transform'):
        small(root, cache=True, cache_dir=tmp_path / 'cache', transform=None)


@pytest.mark.parametrize('side,size', [(64, 16), (64, 32), (256, 64), (256, 128), (299, 299), (60, 17)])
def test_resize_uint8_equals_pil(side, size):
    arr = np.random.default_rng(side + size).integers(0, 256, (side, side, 3), dtype=np.uint8)
    arr = np.clip(arr.astype(int) // 3 + np.arange(side)[:, None, None], 0, 255).astype(np.uint8)
    ref = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))
    got = resize_uint8(torch.from_numpy(arr).permute(2, 0, 1), size).permute(1, 2, 0).numpy()
    assert np.array_equal(got, ref)
    t = torch.from_numpy(arr).permute(2, 0, 1)
    assert torch.equal(normalize_uint8(t), to_normalized_tensor(arr))


def test_random_crop_flip_array_matches_torchvision():
    arr = np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    tv = train_transform(32).transforms[1:]   # RandomCrop(32), RandomHorizontalFlip()
    for seed in range(10):
        torch.manual_seed(seed)
        ref = Image.fromarray(arr)
        for t in tv:
            ref = t(ref)
        torch.manual_seed(seed)
        assert np.array_equal(random_crop_flip_array(arr, 32), np.asarray(ref))
    assert load_size(256) == 304 and load_size(299) == 355 and load_size(64) == 76
