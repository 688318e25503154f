"""The embedded default dataset (attngan.data.toy, data/make_toy.py): layout, determinism, class split,
and captions that say what the pixels show."""
import json
import pickle
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from attngan.build import build_text_encoder
from attngan.config import get_default_config, load_config
from attngan.data import toy
from attngan.data.toy import (ATTRIBUTES, COLOR_PART, PALETTE, PART_LABELS, design_classes, load_attributes,
                              make_toy_dataset, nearest_color, read_marker, render_bird)

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_classes=8, images_per_class=5, image_size=(200, 150))  # 40 images, ~0.3 s
WORDS_NUM = 18  # the loader keeps at most this many tokens of a caption (original TEXT.WORDS_NUM)

# Caption nouns -> drawn part; 'bird' carries the body colour ("a red bird", "this bird is mostly red").
NOUN_PART = {'crown': 'head', 'head': 'head', 'belly': 'body', 'breast': 'body', 'body': 'body',
             'bird': 'body', 'wings': 'wing', 'wing': 'wing', 'beak': 'beak', 'bill': 'beak', 'tail': 'tail'}
PART_COLOR_ATTR = {part: attr for attr, part in COLOR_PART.items()}


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy') / 'toy'
    summary = make_toy_dataset(out, seed=0, **SMALL)
    return out, summary


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _read_pairs(path: Path) -> dict:
    """'<id> <rest>' lines of a CUB metadata file -> {id: rest}."""
    out = {}
    for line in path.read_text(encoding='ascii').splitlines():
        i, rest = line.split(' ', 1)
        out[int(i)] = rest
    return out


def tokenize(text):
    return re.findall(r'\w+', text.lower())


def parse_caption(text):
    """[(word, part)] for every colour and size word, by the caption's grammar alone.

    A word belongs to the part noun right after it (a size word may have a colour between), else to the
    nearest part noun within the four words before it ("its tail is short and yellow").
    """
    tokens = tokenize(text)
    found = []
    for i, t in enumerate(tokens):
        if t not in PALETTE and t not in ('short', 'long'):
            continue
        after = tokens[i + 1:i + 2] if t in PALETTE else tokens[i + 1:i + 3]
        part = next((NOUN_PART[n] for n in after if n in NOUN_PART), None)
        if part is None:
            part = next((NOUN_PART[n] for n in reversed(tokens[max(0, i - 4):i]) if n in NOUN_PART), None)
        assert part is not None, f'{t!r} in {text!r} names no part'
        found.append((t, part))
    return found


# ---------------------------------------------------------------------------------------------------

def test_layout_complete_and_readable(small):
    root, summary = small
    cub = root / 'CUB_200_2011'
    images = _read_pairs(cub / 'images.txt')
    boxes = {i: [float(v) for v in rest.split()] for i, rest in _read_pairs(cub / 'bounding_boxes.txt').items()}
    assert sorted(images) == list(range(1, len(images) + 1)) and sorted(boxes) == sorted(images)
    box_of = {images[i][:-4]: boxes[i] for i in images}
    assert all(name.endswith('.jpg') for name in images.values())

    seen = []
    for split in ('train', 'test'):
        with open(root / split / 'filenames.pickle', 'rb') as f:
            names = pickle.load(f)
        with open(root / split / 'class_info.pickle', 'rb') as f:
            class_info = pickle.load(f)
        assert isinstance(names, list) and len(names) == len(class_info) == summary[f'n_{split}'] > 0
        for key, cls in zip(names, class_info):
            assert isinstance(key, str) and isinstance(cls, int)
            class_dir, stem = key.split('/')
            assert int(class_dir.split('.')[0]) == cls  # CUB: the class number prefixes its folder
            with Image.open(cub / 'images' / f'{key}.jpg') as im:
                assert im.format == 'JPEG' and im.mode == 'RGB'
                w, h = im.size
                im.load()
            assert w != h
            x, y, bw, bh = box_of[key]
            assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
            lines = (root / 'text' / f'{key}.txt').read_text(encoding='ascii').split('\n')
            assert lines[-1] == '' and len(lines) == 11, key  # exactly 10 captions, newline-terminated
            assert all(1 <= len(tokenize(c)) <= WORDS_NUM for c in lines[:-1])
        seen += names
    assert sorted(seen) == sorted(box_of)  # every image is in exactly one split

    examples = (root / 'example_filenames.txt').read_text().split()
    assert examples == ['example_captions']
    ex = (root / 'example_captions.txt').read_text().splitlines()
    assert len(ex) == 12 and all(ex)
    assert read_marker(root)['complete'] is True
    assert len(load_attributes(root)['images']) == summary['n_images'] == 40


def test_box_is_the_bird_on_pixels(small):
    """Bird-coloured pixels (near a palette colour) lie inside the box and fill much of it."""
    root, _ = small
    cub = root / 'CUB_200_2011'
    images = _read_pairs(cub / 'images.txt')
    boxes = _read_pairs(cub / 'bounding_boxes.txt')
    pal = np.array(list(PALETTE.values()), np.float32)
    for i, name in images.items():
        img = np.asarray(Image.open(cub / 'images' / name).convert('RGB'), np.float32)
        birdish = np.sqrt(((img[:, :, None, :] - pal) ** 2).sum(-1)).min(-1) < 30
        x, y, w, h = (int(float(v)) for v in boxes[i].split())
        inside = np.zeros_like(birdish)
        inside[max(0, y - 2):y + h + 2, max(0, x - 2):x + w + 2] = True
        assert (birdish & ~inside).mean() < 1e-3, name
        # a bird fills ~40% of its box (long tail and beak widen it); outlines and JPEG chroma smearing lower
        # that on these small images to >= 0.25, an empty or misplaced box to ~0
        assert birdish[y:y + h, x:x + w].mean() > 0.2, name


def test_same_seed_identical_bytes_other_seed_differs(small, tmp_path):
    root, _ = small
    first = _files(root)
    make_toy_dataset(tmp_path / 'again', seed=0, **SMALL)
    again = _files(tmp_path / 'again')
    assert list(first) == list(again)
    assert [k for k in first if first[k] != again[k]] == []

    other_root = tmp_path / 'other'
    make_toy_dataset(other_root, seed=1, **SMALL)
    other = _files(other_root)
    jpgs = lambda files: sorted(v for k, v in files.items() if k.endswith('.jpg'))  # noqa: E731
    assert not set(jpgs(first)) & set(jpgs(other))
    caps = lambda files: sorted(v for k, v in files.items() if k.startswith('text/'))  # noqa: E731
    assert caps(first) != caps(other)


def test_train_test_classes_disjoint_and_recombined(small):
    root, _ = small
    meta = load_attributes(root)
    splits = {}
    for split in ('train', 'test'):
        with open(root / split / 'filenames.pickle', 'rb') as f:
            splits[split] = {k.split('/')[0] for k in pickle.load(f)}
    assert splits['train'] and splits['test'] and not splits['train'] & splits['test']
    assert len(splits['test']) == 2  # a quarter of 8
    attrs = {name: tuple(c['attributes'][a] for a in ATTRIBUTES) for name, c in meta['classes'].items()}
    assert len(set(attrs.values())) == len(attrs)  # every class is its own combination
    for name in splits['test']:
        for k, value in enumerate(attrs[name]):  # every test attribute value was seen in training
            assert value in {attrs[t][k] for t in splits['train']}, (name, ATTRIBUTES[k])


@pytest.mark.parametrize('n_classes,n_test,seed', [(20, 5, 0), (20, 5, 1), (40, 10, 0), (100, 25, 0), (400, 100, 0),
                                                   (6, 2, 3), (3, 1, 0)])
def test_class_design(n_classes, n_test, seed):
    classes = design_classes(n_classes, n_test, seed)
    train = [c['attributes'] for c in classes if c['split'] == 'train']
    test = [c['attributes'] for c in classes if c['split'] == 'test']
    assert len(train) == n_classes - n_test and len(test) == n_test
    assert len({tuple(t.values()) for t in train + test}) == n_classes  # every class a distinct combination
    if len(train) >= len(PALETTE):  # enough train classes: every colour of every part is taught
        for attr in ATTRIBUTES:
            assert {t[attr] for t in train} == set(toy._values(attr)), attr
    for t in test:
        assert min(sum(t[a] != r[a] for a in ATTRIBUTES) for r in train) >= (2 if len(train) > 2 else 1)
        assert all(t[a] in {r[a] for r in train} for a in ATTRIBUTES)
    if n_test > 1:  # test classes are told apart by as many attributes as the train ones allow
        pairwise = [sum(x[a] != y[a] for a in ATTRIBUTES) for i, x in enumerate(test) for y in test[i + 1:]]
        assert min(pairwise) >= (4 if n_classes >= 20 else 2), pairwise
    for c in train + test:  # neighbouring parts never share a colour (a hidden part cannot be learned)
        assert c['crown_color'] != c['body_color'] and c['wing_color'] != c['body_color']
        assert c['beak_color'] != c['crown_color'] and c['tail_color'] != c['body_color']


def test_caption_colour_words_match_pixels(small):
    """Each colour word, attached to its part by grammar, is the colour of that part's pixels in the JPEG."""
    root, _ = small
    meta = load_attributes(root)
    checked = Counter()
    for key, m in meta['images'].items():
        img = np.asarray(Image.open(root / 'CUB_200_2011' / 'images' / f'{key}.jpg').convert('RGB'), np.float32)
        _, labels = render_bird(m)  # where each part was drawn
        seen_colour = {}
        for part, label in PART_LABELS.items():
            if part == 'eye':
                continue
            region = ndimage.binary_erosion(labels == label, iterations=1)  # skip edges blurred by JPEG
            if region.sum() < 5:  # a tiny short beak: its median is still its colour
                region = labels == label
            assert region.sum() >= 5, (key, part)
            seen_colour[part] = nearest_color(np.median(img[region], axis=0))
        captions = (root / 'text' / f'{key}.txt').read_text().splitlines()
        assert [c['text'] for c in m['captions']] == captions
        for cap in captions:
            for word, part in parse_caption(cap):
                if word in PALETTE:
                    assert seen_colour[part] == word, (key, cap, part, seen_colour[part])
                    checked['colour'] += 1
                else:  # sizes: the caption agrees with the recorded attribute
                    assert m['attributes'][f'{part}_size'] == word, (key, cap)
                    checked['size'] += 1
        for attr, part in COLOR_PART.items():  # every part, mentioned or not, has its class colour
            assert seen_colour[part] == m['attributes'][attr], (key, part)
    assert checked['colour'] > 300 and checked['size'] > 50


def test_recorded_mentions_match_text(small):
    root, _ = small
    for m in load_attributes(root)['images'].values():
        for cap in m['captions']:
            words = parse_caption(cap['text'])
            named = {f'{part}_size' if w in ('short', 'long') else PART_COLOR_ATTR[part] for w, part in words}
            assert named == set(cap['mentions']), cap


def test_captions_vary(small):
    """Subsets and order of mentioned parts vary, and templates differ."""
    root, _ = small
    meta = load_attributes(root)
    mentions = Counter()
    orders, openings, n = set(), set(), 0
    for m in meta['images'].values():
        for cap in m['captions']:
            n += 1
            mentions.update(set(cap['mentions']))
            orders.add(tuple(dict.fromkeys(a.rsplit('_', 1)[0] for a in cap['mentions'])))
            openings.add(' '.join(tokenize(cap['text'])[:2]))
        assert len({c['text'] for c in m['captions']}) == 10  # no repeated caption for an image
    for attr in ATTRIBUTES:
        assert 0.1 * n < mentions[attr] < 0.9 * n, attr
    assert len(orders) > 50 and len(openings) > 15


def test_captions_describe_most_of_the_bird(small):
    """Format 3: every part that fits in 18 words is named (format 2 named 2-5 parts, 3.4 on average)."""
    root, _ = small
    n_parts = []
    for m in load_attributes(root)['images'].values():
        for cap in m['captions']:
            assert len(tokenize(cap['text'])) <= 18, cap
            n_parts.append(len({a.rsplit('_', 1)[0] for a in cap['mentions']}))
    assert min(n_parts) >= 2 and max(n_parts) == 5
    assert sum(n_parts) / len(n_parts) > 4.0


def test_part_sizes_drawn(small):
    """Long beaks and tails cover more pixels (relative to the head) than short ones."""
    root, _ = small
    ratio = {('beak', 'short'): [], ('beak', 'long'): [], ('tail', 'short'): [], ('tail', 'long'): []}
    for m in load_attributes(root)['images'].values():
        _, labels = render_bird(m)
        head = (labels == PART_LABELS['head']).sum() + (labels == PART_LABELS['eye']).sum()
        for part in ('beak', 'tail'):
            ratio[(part, m['attributes'][f'{part}_size'])].append((labels == PART_LABELS[part]).sum() / head)
    for part in ('beak', 'tail'):
        assert ratio[(part, 'short')] and ratio[(part, 'long')]
        assert max(ratio[(part, 'short')]) < min(ratio[(part, 'long')]), part


def test_render_reproduces_jpeg_and_background_avoids_palette(small):
    root, _ = small
    pal = np.array(list(PALETTE.values()), np.float32)
    for key, m in list(load_attributes(root)['images'].items())[::4]:
        img = np.asarray(Image.open(root / 'CUB_200_2011' / 'images' / f'{key}.jpg').convert('RGB'), np.float32)
        rendered, labels = render_bird(m)
        assert np.abs(np.asarray(rendered, np.float32) - img).mean() < 6, key
        background = img[~ndimage.binary_dilation(labels > 0, iterations=3)]
        assert np.sqrt(((background[:, None, :] - pal) ** 2).sum(-1)).min() > 35, key


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match='n_classes'):
        make_toy_dataset(tmp_path / 'a', n_classes=1)
    with pytest.raises(ValueError, match='image_size'):
        make_toy_dataset(tmp_path / 'a', image_size=(20, 10))
    (tmp_path / 'b').mkdir()
    (tmp_path / 'b' / 'mine.txt').write_text('not a toy dataset')
    with pytest.raises(FileExistsError, match='not a toy dataset'):
        make_toy_dataset(tmp_path / 'b', **SMALL)
    assert (tmp_path / 'b' / 'mine.txt').exists()


def test_bad_arguments_are_project_errors(tmp_path):
    """Everything a user's arguments or folders cause is an AttnGANError (with its builtin base kept)."""
    from attngan.errors import AttnGANError
    with pytest.raises(ValueError) as e:
        make_toy_dataset(tmp_path / 'a', n_classes=1)
    assert isinstance(e.value, AttnGANError)
    with pytest.raises(ValueError) as e:
        design_classes(5, 5, seed=0)
    assert isinstance(e.value, AttnGANError) and 'n_test_classes=5' in str(e.value)
    (tmp_path / 'b').mkdir()
    (tmp_path / 'b' / 'mine.txt').write_text('not a toy dataset')
    with pytest.raises(FileExistsError) as e:
        make_toy_dataset(tmp_path / 'b', **SMALL)
    assert isinstance(e.value, AttnGANError)
    with pytest.raises(FileNotFoundError) as e:
        load_attributes(tmp_path / 'b')
    assert isinstance(e.value, AttnGANError) and str(tmp_path / 'b' / 'attributes.json') in str(e.value)


def test_cli_bad_value_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / 'data' / 'make_toy.py'), '--out', 'toy', '--classes', '2', '-q'],
                       capture_output=True, text=True, cwd=tmp_path)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith('error: toy dataset: n_classes=2: need at least 3') and not (tmp_path / 'toy').exists()


def _cli():
    from attngan.commands import make_toy as module
    return module.main


def test_cli_runs_standalone(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / 'data' / 'make_toy.py'), '--out', 'toy', '--classes', '4',
                        '--per-class', '2', '--size', '120x90', '-q'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and '8 images' in r.stdout, r.stderr
    marker = json.loads((tmp_path / 'toy' / 'toy_dataset.json').read_text())
    assert marker['params']['image_size'] == [120, 90] and marker['complete']


def test_cli_overwrite_policy(tmp_path, capsys):
    main = _cli()
    small = ['--classes', '4', '--per-class', '2', '--size', '120x90', '-q']
    out = str(tmp_path / 'toy')
    assert main(['--out', out, *small]) == 0
    (tmp_path / 'toy' / 'captions.pickle').write_bytes(b'stale vocabulary')
    capsys.readouterr()
    assert main(['--out', out, *small]) == 0 and 'nothing to do' in capsys.readouterr().out
    assert main(['--out', out, '--seed', '1', *small]) == 2
    err = capsys.readouterr().err
    assert 'seed' in err and '--force' in err
    assert main(['--out', out, '--seed', '1', '--force', *small]) == 0
    assert not (tmp_path / 'toy' / 'captions.pickle').exists()  # derived files go with the old dataset
    assert read_marker(out)['params']['seed'] == 1
    (tmp_path / 'toy' / 'toy_dataset.json').write_text(
        json.dumps({**read_marker(out), 'complete': False}))  # an interrupted run: redone without --force
    assert main(['--out', out, '--seed', '1', *small]) == 0 and read_marker(out)['complete']
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'x').write_text('x')
    assert main(['--out', str(tmp_path / 'other'), '--force', *small]) == 2
    assert 'not a toy dataset' in capsys.readouterr().err and (tmp_path / 'other' / 'x').exists()


def test_toy_configs_agree():
    gan, damsm = load_config(REPO / 'cfg' / 'toy_attn2.yml'), load_config(REPO / 'cfg' / 'DAMSM' / 'toy.yml')
    assert gan.DATA_DIR == damsm.DATA_DIR == 'data/toy'
    assert gan.TEXT.EMBEDDING_DIM == damsm.TEXT.EMBEDDING_DIM
    assert gan.TEXT.SENT_POOL == damsm.TEXT.SENT_POOL == 'max'
    assert gan.TEXT.CAPTIONS_PER_IMAGE == damsm.TEXT.CAPTIONS_PER_IMAGE == 10
    assert gan.TREE.BRANCH_NUM >= 2  # word attention needs a second stage
    # the GAN loads the image encoder that the DAMSM config trains
    assert damsm.DAMSM.IMAGE_ENCODER == gan.DAMSM.IMAGE_ENCODER == 'small_cnn'
    assert damsm.DAMSM.IMAGE_SIZE == gan.DAMSM.IMAGE_SIZE
    assert damsm.DAMSM.SMALL_CNN_WIDTH == gan.DAMSM.SMALL_CNN_WIDTH
    last = damsm.TRAIN.MAX_EPOCH - 1
    assert gan.TRAIN.NET_E == f'DAMSMencoders/toy/text_encoder{last}.pth'


def test_rnn_dropout_key():
    """TEXT.RNN_DROPOUT reaches RNN_ENCODER: the original's 0.5 by default, none in the toy DAMSM config."""
    default = build_text_encoder(get_default_config(), 40)
    toy = build_text_encoder(load_config(REPO / 'cfg' / 'DAMSM' / 'toy.yml'), 40)
    assert default.drop.p == 0.5 and toy.drop.p == 0.0
    assert list(default.state_dict()) == list(toy.state_dict())  # same checkpoint keys either way


def test_box_crop_square_lies_inside_the_image(small):
    """The loaders crop 1.5 x the box's longer side around its centre (the original's get_imgs); a crop
    clamped at an edge is not square, and the random crop after the resize then cuts the bird."""
    from attngan.data.transforms import bbox_crop_box
    root, _ = small
    meta = load_attributes(root)
    for key, m in meta['images'].items():
        left, top, right, bottom = bbox_crop_box(*m['size'], m['bbox'])
        assert right - left == bottom - top == 2 * int(max(m['bbox'][2:]) * 0.75), (key, m['bbox'], m['size'])
