"""attngan.data.convert and the prepare_data.py command line: COCO JSON and custom folders -> DATA_DIR."""
import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attngan.data import CaptionError, LayoutError, TextDataset, load_text_data
from attngan.data import convert as C
from attngan.data.convert import coco_annotation_files, convert_coco, convert_custom, read_coco_captions
from attngan.data.safe_pickle import safe_load
from attngan.commands import prepare_data
from data_fixtures import COCO_CAPTIONS, make_coco_json, write_jpeg

REPO = Path(__file__).resolve().parents[1]


def five(i):
    return COCO_CAPTIONS[i % len(COCO_CAPTIONS)]


@pytest.fixture()
def coco_json(tmp_path):
    ann = tmp_path / 'annotations'
    make_coco_json(ann / 'captions_train2014.json',
                   {9: five(0), 25: five(1) + ['a sixth caption\nwith a newline'], 30: five(2)[:3]})
    make_coco_json(ann / 'captions_val2014.json', {42: five(3), 73: five(4)}, prefix='COCO_val2014_')
    return ann


def test_convert_coco(coco_json, tmp_path):
    train_json, val_json = coco_annotation_files(coco_json)
    assert train_json.name == 'captions_train2014.json' and val_json.name == 'captions_val2014.json'
    out = tmp_path / 'coco'
    with pytest.warns(UserWarning, match='1 train images have fewer than 5 captions'):
        s = convert_coco(out, train_json, val_json)
    assert (s['train'], s['test']) == (2, 2)
    train = safe_load(out / 'train' / 'filenames.pickle')
    assert train == ['COCO_train2014_000000000009', 'COCO_train2014_000000000025']
    assert safe_load(out / 'test' / 'filenames.pickle') == ['COCO_val2014_000000000042', 'COCO_val2014_000000000073']
    lines = (out / 'text' / 'COCO_train2014_000000000025.txt').read_text().splitlines()
    assert lines == five(1) + ['a sixth caption with a newline']
    assert not (out / 'text' / 'COCO_train2014_000000000030.txt').exists()
    assert sorted(os.listdir(out)) == ['test', 'text', 'train']   # no staging left, no class_info
    # with images in place it loads as the original COCO layout
    for stem in train + safe_load(out / 'test' / 'filenames.pickle'):
        write_jpeg(out / 'images' / f'{stem}.jpg', (40, 30), seed=1)
    d = TextDataset(out, 'train', base_size=16, branch_num=1, captions_per_image=5)
    assert len(d) == 2 and not d.use_bbox and d[1][3] == 1
    # existing outputs are not overwritten by accident
    with pytest.raises(FileExistsError, match='text, test, train already exist'):
        convert_coco(out, train_json, val_json)
    convert_coco(out, train_json, val_json, min_captions=3, overwrite=True)
    assert len(safe_load(out / 'train' / 'filenames.pickle')) == 3


@pytest.mark.filterwarnings('ignore:1 train images have fewer')
def test_convert_coco_filenames_from(coco_json, tmp_path):
    lists = tmp_path / 'orig'
    for split, stems in (('train', ['COCO_train2014_000000000025']), ('test', ['COCO_val2014_000000000073'])):
        (lists / split).mkdir(parents=True)
        (lists / split / 'filenames.pickle').write_bytes(pickle.dumps(stems, protocol=0))
    out = tmp_path / 'coco'
    convert_coco(out, *coco_annotation_files(coco_json), filenames_from=lists)
    assert safe_load(out / 'train' / 'filenames.pickle') == ['COCO_train2014_000000000025']
    (lists / 'train' / 'filenames.pickle').write_bytes(pickle.dumps(['COCO_train2014_000000000030']))
    with pytest.raises(CaptionError, match='1 stems of .*fewer than 5 captions.*000000000030'):
        convert_coco(tmp_path / 'c2', *coco_annotation_files(coco_json), filenames_from=lists)
    assert not (tmp_path / 'c2' / 'text').exists()


def test_real_coco_annotation_samples(shared_coco, tmp_path):
    train_json, val_json = coco_annotation_files(shared_coco / 'annotations')
    caps, inferred = read_coco_captions(train_json)
    data = json.loads(train_json.read_text())
    n_ann = len(data['annotations'])
    assert sum(len(c) for c in caps.values()) == n_ann > 0
    # every listed image keeps its file name's stem; an annotation of an unlisted image gets the name of
    # the files' pattern (<prefix><12-digit id>), the prefix read from a listed file name of that form
    listed = {int(img['id']): os.path.splitext(img['file_name'])[0] for img in data['images']}
    prefix = next(stem[:-12] for i, stem in listed.items() if stem.endswith(f'{i:012d}'))
    unlisted = {int(a['image_id']) for a in data['annotations']} - set(listed)
    assert set(caps) == set(listed.values()) | {f'{prefix}{i:012d}' for i in unlisted}
    assert inferred == len(unlisted)
    assert all('\n' not in c for cs in caps.values() for c in cs)
    with pytest.warns(UserWarning):
        s = convert_coco(tmp_path / 'out', train_json, val_json, min_captions=1)
    stems = safe_load(tmp_path / 'out' / 'train' / 'filenames.pickle')
    assert len(stems) == s['train'] > 0
    td = load_text_data(tmp_path / 'out', 1, write=False)
    assert td.n_words > 100


# ------------------------------------------------------------------------------------------------- custom

def make_folder(root, classes=('cats', 'dogs'), per_class=3, png=False):
    rows = []
    for c in classes:
        for i in range(per_class):
            ext = 'png' if (png and i == 0) else 'jpg'
            rel = f'{c}/img{i}.{ext}'
            p = root / rel
            if ext == 'png':
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((20, 30, 3), 80, np.uint8)).save(p)
            else:
                write_jpeg(p, (30 + i, 24), seed=i, mode='L' if i == 1 else 'RGB')
            for k in range(2):
                rows.append((rel, f'a {c[:-1]} picture number {i} caption {k}'))
    return rows


def test_custom_folders_tsv(tmp_path):
    rows = make_folder(tmp_path / 'imgs', png=True)
    cap = tmp_path / 'captions.tsv'
    cap.write_text('# image\tcaption\n' + ''.join(f'{r}\t{c}\n' for r, c in rows))
    out = tmp_path / 'data'
    s = convert_custom(tmp_path / 'imgs', cap, out, test_fraction=1 / 3, seed=1)
    assert s['captions_per_image'] == 2 and s['classes'] == 2 and (s['train'], s['test']) == (4, 2)
    assert s['layout'] == 'coco'
    train = safe_load(out / 'train' / 'filenames.pickle')
    assert all(t.split('/')[0] in ('cats', 'dogs') for t in train)
    ids = safe_load(out / 'train' / 'class_info.pickle')
    assert ids == [1 if t.startswith('cats') else 2 for t in train]
    # JPEGs copied byte for byte, the PNG re-encoded as JPEG
    assert (out / 'images' / 'cats' / 'img2.jpg').read_bytes() == (tmp_path / 'imgs/cats/img2.jpg').read_bytes()
    with Image.open(out / 'images' / 'cats' / 'img0.jpg') as im:
        assert im.format == 'JPEG'
    assert (out / 'example_filenames.txt').read_text() == 'example_captions\n'
    d = TextDataset(out, 'train', base_size=16, branch_num=2, captions_per_image=2, words_num=10)
    assert len(d) == 4 and d.n_words == s['vocabulary'] and d[0][0][1].shape == (3, 32, 32)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith('.')) == []


def test_custom_csv_with_class_column_split_and_boxes(tmp_path):
    rows = make_folder(tmp_path / 'imgs', classes=('flat',), per_class=4)
    cap = tmp_path / 'captions.csv'
    with open(cap, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['Image', 'Caption', 'class', 'split'])
        for i, (r, c) in enumerate(rows):
            n = int(r[-5])
            w.writerow([r, c, 'red birds' if n < 2 else 'blue', 'test' if n == 3 else 'train'])
    boxes = tmp_path / 'boxes.txt'
    boxes.write_text(''.join(f'flat/img{i}.jpg 2 3 10 12\n' for i in range(4)))
    out = tmp_path / 'data'
    s = convert_custom(tmp_path / 'imgs', cap, out, bboxes=boxes)
    assert (s['train'], s['test'], s['classes'], s['layout']) == (3, 1, 2, 'cub')
    assert safe_load(out / 'test' / 'filenames.pickle') == ['blue/flat/img3']
    assert safe_load(out / 'train' / 'class_info.pickle') == [2, 2, 1]   # sorted names: blue=1, red birds=2
    assert (out / 'CUB_200_2011' / 'images' / 'red_birds' / 'flat' / 'img0.jpg').is_file()
    assert (out / 'CUB_200_2011' / 'bounding_boxes.txt').read_text().splitlines()[0] == '1 2.0 3.0 10.0 12.0'
    d = TextDataset(out, 'train', base_size=8, branch_num=1, captions_per_image=2, transform=None)
    assert d.use_bbox and d.bbox['red_birds/flat/img0'] == [2, 3, 10, 12]
    assert d[0][0][0].shape == (3, 18, 16)   # r=9, centre (7, 9): x 0..16, y 0..18


def test_custom_json_and_errors(tmp_path):
    rows = make_folder(tmp_path / 'imgs', per_class=2)
    data = {}
    for r, c in rows:
        data.setdefault(r, []).append(c)
    cap = tmp_path / 'c.json'
    cap.write_text(json.dumps(data))
    with pytest.raises(CaptionError, match='fewer than 3 captions; first: cats/img0.jpg'):
        convert_custom(tmp_path / 'imgs', cap, tmp_path / 'o1', captions_per_image=3)
    data['cats/missing.jpg'] = ['a cat']
    cap.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match='1 images named in .* missing; first: .*cats/missing.jpg'):
        convert_custom(tmp_path / 'imgs', cap, tmp_path / 'o1')
    del data['cats/missing.jpg']
    data['cats/img0.jpg'] = ['!!!', '...']
    cap.write_text(json.dumps(data))
    with pytest.raises(CaptionError, match='no caption with a word in it; first: cats/img0.jpg'):
        convert_custom(tmp_path / 'imgs', cap, tmp_path / 'o1')
    data['../escape.jpg'] = ['x']
    cap.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match='inside it'):
        convert_custom(tmp_path / 'imgs', cap, tmp_path / 'o1')
    assert not (tmp_path / 'o1').exists() or not any((tmp_path / 'o1').iterdir())


def test_custom_failure_leaves_nothing(tmp_path, monkeypatch):
    rows = make_folder(tmp_path / 'imgs')
    cap = tmp_path / 'c.tsv'
    cap.write_text(''.join(f'{r}\t{c}\n' for r, c in rows))
    out = tmp_path / 'data'
    calls = []
    real = C._write_jpeg

    def flaky(*a):
        calls.append(1)
        if len(calls) == 4:
            raise OSError('disk full')
        return real(*a)
    monkeypatch.setattr(C, '_write_jpeg', flaky)
    with pytest.raises(OSError, match='disk full'):
        convert_custom(tmp_path / 'imgs', cap, out)
    assert list(out.iterdir()) == []


@pytest.mark.filterwarnings('ignore:1 train images have fewer')
def test_cli(tmp_path, coco_json, capsys):
    rows = make_folder(tmp_path / 'imgs')
    cap = tmp_path / 'c.tsv'
    cap.write_text(''.join(f'{r}\t{c}\n' for r, c in rows))
    out = tmp_path / 'data'
    assert prepare_data.main(['custom', '--images', str(tmp_path / 'imgs'), '--captions', str(cap),
                              '--out', str(out), '--split-by', 'class', '--test-fraction', '0.5']) == 0
    assert 'TEXT.CAPTIONS_PER_IMAGE: 2' in capsys.readouterr().out
    assert len({t.split('/')[0] for t in safe_load(out / 'test' / 'filenames.pickle')}) == 1
    cfg = tmp_path / 'cfg.yml'
    cfg.write_text(f'DATA_DIR: {out}\nTEXT:\n  CAPTIONS_PER_IMAGE: 2\n')
    assert prepare_data.main(['check-data', '--cfg', str(cfg), '--decode-images']) == 0
    assert 'no problems found' in capsys.readouterr().out
    next((out / 'images' / 'dogs').iterdir()).unlink()
    assert prepare_data.main(['check-data', '--cfg', str(cfg)]) == 1
    assert 'missing images' in capsys.readouterr().out
    assert prepare_data.main(['check-data', '--cfg', str(cfg), '--data_dir', str(tmp_path / 'none')]) == 1
    assert 'does not exist' in capsys.readouterr().out
    assert prepare_data.main(['coco', '--annotations', str(coco_json), '--out', str(tmp_path / 'coco')]) == 0
    assert (tmp_path / 'coco' / 'train' / 'filenames.pickle').is_file()
    assert prepare_data.main(['coco', '--annotations', str(coco_json), '--out', str(tmp_path / 'coco')]) == 2
    assert 'already exist' in capsys.readouterr().err


# ------------------------------------------------- user-caused errors are the project's, bugs keep tracebacks

def _captioned_folder(tmp_path):
    rows = make_folder(tmp_path / 'imgs')
    cap = tmp_path / 'c.tsv'
    cap.write_text(''.join(f'{r}\t{c}\n' for r, c in rows))
    return tmp_path / 'imgs', cap


def _project_error(excinfo, cls, message):
    """The error is the project's (AttnGANError and ``cls``), one line, exactly ``message``."""
    from attngan.errors import AttnGANError
    assert isinstance(excinfo.value, AttnGANError) and isinstance(excinfo.value, cls)
    assert str(excinfo.value) == message


def test_custom_input_errors_are_project_errors(tmp_path):
    from attngan.errors import InputError
    imgs, cap = _captioned_folder(tmp_path)
    nope = tmp_path / 'boxes.txt'
    with pytest.raises(Exception) as e:
        convert_custom(imgs, cap, tmp_path / 'o', bboxes=nope)
    _project_error(e, FileNotFoundError, f'bounding-box file {nope} does not exist')
    with pytest.raises(Exception) as e:
        convert_custom(imgs, cap, tmp_path / 'o', classes='none', split_by='class')
    _project_error(e, InputError, "split_by='class' (--split-by class) needs classes: a class column in the "
                                  "captions file or images in class sub-folders (--classes column|folders)")
    latin1 = tmp_path / 'latin1.tsv'
    latin1.write_bytes('cats/img0.jpg\ta caf\xe9 cat\n'.encode('latin1'))
    with pytest.raises(Exception) as e:
        convert_custom(imgs, latin1, tmp_path / 'o')
    assert isinstance(e.value, CaptionError) and str(e.value).startswith(f'{latin1}: not UTF-8 text (')
    broken = tmp_path / 'broken.json'
    broken.write_text('{"cats/img0.jpg": ["a cat"')
    with pytest.raises(Exception) as e:
        convert_custom(imgs, broken, tmp_path / 'o')
    assert isinstance(e.value, LayoutError) and str(e.value).startswith(f'{broken}: not valid JSON (')
    wrong = tmp_path / 'wrong.json'
    wrong.write_text(json.dumps({'cats/img0.jpg': 3}))
    with pytest.raises(Exception) as e:
        convert_custom(imgs, wrong, tmp_path / 'o')
    _project_error(e, LayoutError, f'{wrong}: entry 0 (cats/img0.jpg): the captions must be a string or a '
                                   f'list of strings, got int')
    assert not (tmp_path / 'o').exists() or not any((tmp_path / 'o').iterdir())
    out = tmp_path / 'done'
    convert_custom(imgs, cap, out)
    with pytest.raises(Exception) as e:
        convert_custom(imgs, cap, out)
    assert isinstance(e.value, FileExistsError) and isinstance(e.value, C.OutputExistsError)


def test_malformed_coco_json_names_the_entry(tmp_path):
    path = make_coco_json(tmp_path / 'captions_train2014.json', {9: five(0), 25: five(1)})
    data = json.loads(path.read_text())
    del data['images'][1]['file_name']
    path.write_text(json.dumps(data))
    with pytest.raises(LayoutError) as e:
        read_coco_captions(path)
    assert str(e.value) == (f'{path}: "images" entry 1 is not in the COCO captions format '
                            f"(KeyError: 'file_name')")


def test_prepare_data_cli_one_line_for_input_and_traceback_for_bugs(tmp_path, capsys, monkeypatch):
    imgs, cap = _captioned_folder(tmp_path)
    nope = tmp_path / 'boxes.txt'
    assert prepare_data.main(['custom', '--images', str(imgs), '--captions', str(cap), '--out',
                              str(tmp_path / 'o'), '--bboxes', str(nope)]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert err == [f'error: bounding-box file {nope} does not exist']
    # a bug (here a ValueError that no input caused) is not turned into an input error
    import attngan.data.check as check

    def bug(*a, **k):
        raise ValueError('a bug in the library')
    monkeypatch.setattr(check, 'check_data', bug)
    cfg = tmp_path / 'cfg.yml'
    cfg.write_text(f'DATA_DIR: {tmp_path}\n')
    with pytest.raises(ValueError, match='a bug in the library'):
        prepare_data.main(['check-data', '--cfg', str(cfg)])
