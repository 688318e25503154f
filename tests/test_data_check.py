"""Edge cases of the data pipeline and of ``prepare_data.py check-data``: empty splits, crafted or unreadable
metadata pickles, zero-byte / truncated JPEGs found without decoding, the missing-image option, and the
project's error classes for everything a user's files can cause. Everything is generated here."""
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import attngan.data as D
from attngan.config import get_default_config
from attngan.data import DatasetError, LayoutError, TextDataset, build_dataloader, build_dataset
from attngan.data.check import check_data
from attngan.data.safe_pickle import UnsafePickleError, safe_load
from attngan.data.transforms import load_image
from attngan.errors import AttnGANError
from attngan.commands import prepare_data
from data_fixtures import make_cub

REPO = Path(__file__).resolve().parents[1]

K = 3  # captions per image of make_cub's files that the tests use


@pytest.fixture()
def cub(tmp_path):
    info = make_cub(tmp_path / 'cub')
    return tmp_path / 'cub', info


def small(root, split='train', **kw):
    return TextDataset(root, split, base_size=16, branch_num=2, words_num=8, captions_per_image=K, **kw)


def small_cfg(root):
    cfg = get_default_config()
    cfg.DATA_DIR = str(root)
    cfg.TREE.BASE_SIZE, cfg.TREE.BRANCH_NUM = 16, 2
    cfg.TEXT.CAPTIONS_PER_IMAGE, cfg.TEXT.WORDS_NUM = K, 8
    cfg.TRAIN.BATCH_SIZE, cfg.WORKERS, cfg.CUDA = 2, 0, False
    return cfg


def empty_split(root, split):
    (root / split / 'filenames.pickle').write_bytes(pickle.dumps([], protocol=2))
    (root / split / 'class_info.pickle').write_bytes(pickle.dumps([], protocol=2))


def check_cli(root, capsys=None):
    """``prepare_data.py check-data``: (exit status, stdout lines, stderr lines); in this process through
    ``prepare_data.main`` with ``capsys``, else as a subprocess (the standalone command, ~5 s)."""
    cfg = root.parent / 'check.yml'
    cfg.write_text(f'DATA_DIR: {root}\nTEXT:\n  CAPTIONS_PER_IMAGE: {K}\n')
    if capsys is not None:
        capsys.readouterr()
        rc = prepare_data.main(['check-data', '--cfg', str(cfg)])
        out, err = capsys.readouterr()
    else:
        r = subprocess.run([sys.executable, str(REPO / 'prepare_data.py'), 'check-data', '--cfg', str(cfg)],
                           capture_output=True, text=True, cwd=REPO)
        rc, out, err = r.returncode, r.stdout, r.stderr
    return rc, out.splitlines(), [l for l in err.splitlines() if l.strip()]


def problem_lines(stdout_lines):
    return [l[len('  - '):] for l in stdout_lines if l.startswith('  - ')]


# ------------------------------------------------------------------------------------------- empty split

@pytest.mark.parametrize('split', ['train', 'test'])
def test_empty_split_is_one_line_naming_split_and_data_dir(cub, split):
    root, info = cub
    empty_split(root, split)
    want = (f'the {split} split of DATA_DIR {root} is empty: {root / split / "filenames.pickle"} '
            f'lists no stems')
    with pytest.raises(DatasetError) as e:
        small(root, split)
    assert str(e.value) == want and isinstance(e.value, D.SplitError)
    # the DataLoader a trainer builds says the same (not torch's RandomSampler "num_samples=0")
    with pytest.raises(DatasetError) as e:
        build_dataloader(small_cfg(root), split, shuffle=True, drop_last=True)
    assert str(e.value) == want
    other = 'test' if split == 'train' else 'train'
    assert small(root, other).filenames == info[other]   # the other split still loads


def test_empty_selection_is_an_error(cub):
    root, info = cub
    with pytest.raises(DatasetError) as e:
        small(root, filenames=lambda s: False)
    assert str(e.value) == (f'no stem of the train split of DATA_DIR {root} was selected: the filenames '
                            f'filter left none of its {len(info["train"])} stems')


def test_check_data_reports_an_empty_split(cub):
    root, info = cub
    empty_split(root, 'test')
    rep = check_data(root, K)
    want = f'the test split of DATA_DIR {root} is empty: {root / "test" / "filenames.pickle"} lists no stems'
    assert rep.problems == [want]
    assert rep.info['train split'].startswith(f'{len(info["train"])} stems')   # nothing else lost
    rc, out, err = check_cli(root)   # the standalone command, once
    assert rc == 1 and problem_lines(out) == [want] and not err


# ------------------------------------------------------------------------------ crafted metadata pickles

class _Marker:
    """Unpickling this would create a file (the side effect a crafted pickle could have)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def _bad_pickles(marker):
    crafted = pickle.dumps(_Marker(marker), protocol=2)
    good = pickle.dumps(['a/b'] * 4, protocol=2)
    return {'crafted': (crafted, 'refused to unpickle: global io.open is not allowed'),
            'truncated': (good[:len(good) // 2], 'not a readable pickle'),
            'zero bytes': (b'', 'not a readable pickle'),
            'not a pickle': (b'this is text, not a pickle\n', 'not a readable pickle')}


@pytest.mark.parametrize('kind', ['crafted', 'truncated', 'zero bytes', 'not a pickle'])
@pytest.mark.parametrize('name', ['train/filenames.pickle', 'test/class_info.pickle', 'captions.pickle'])
def test_check_data_reports_bad_metadata_pickle_once(cub, tmp_path, capsys, name, kind):
    root, info = cub
    marker = tmp_path / 'pwned'
    data, reason = _bad_pickles(marker)[kind]
    path = root / name
    path.write_bytes(data)
    rep = check_data(root, K)
    assert not marker.exists()          # nothing was executed
    mine = [p for p in rep.problems if str(path) in p]
    assert len(mine) == 1 and mine[0].startswith(f'{path}: {reason}') and '\n' not in mine[0]
    assert rep.problems == mine         # one line, and no other problem made up from it
    other_split = 'test' if name.startswith('train/') else 'train'
    assert rep.info[f'{other_split} split'].startswith(f'{len(info[other_split])} stems')
    if kind == 'crafted':   # the command prints the same line
        rc, out, err = check_cli(root, capsys)
        assert not marker.exists()
        assert rc == 1 and problem_lines(out) == mine and not err


def test_check_data_reports_every_bad_pickle(cub, tmp_path):
    """A bad split list does not hide a bad captions.pickle (or the other split's class_info)."""
    root, info = cub
    marker = tmp_path / 'pwned'
    bad = _bad_pickles(marker)
    names = {'train/filenames.pickle': 'crafted', 'test/class_info.pickle': 'truncated',
             'captions.pickle': 'not a pickle'}
    for name, kind in names.items():
        (root / name).write_bytes(bad[kind][0])
    rep = check_data(root, K)
    assert not marker.exists()
    assert len(rep.problems) == len(names)
    for problem, (name, kind) in zip(rep.problems, names.items()):
        assert problem.startswith(f'{root / name}: {bad[kind][1]}')


@pytest.mark.parametrize('name', ['train/filenames.pickle', 'train/class_info.pickle', 'captions.pickle'])
def test_crafted_metadata_pickle_never_runs_when_loading(cub, tmp_path, name):
    root, _ = cub
    marker = tmp_path / 'pwned'
    (root / name).write_bytes(pickle.dumps(_Marker(marker), protocol=2))
    with pytest.raises(UnsafePickleError, match=rf'^{root / name}: refused to unpickle: global io\.open'):
        small(root)
    assert not marker.exists()


def test_safe_load_of_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        safe_load(tmp_path / 'absent.pickle')
    assert isinstance(e.value, AttnGANError) and str(tmp_path / 'absent.pickle') in str(e.value)
    (tmp_path / 'dir.pickle').mkdir()
    with pytest.raises(UnsafePickleError, match=rf'^{tmp_path / "dir.pickle"}: cannot read'):
        safe_load(tmp_path / 'dir.pickle')


# ------------------------------------------------------------------------------- images, cheap check

def _corrupt_images(root, info):
    """Break some JPEGs in ways that the cheap check must see; return {stem: reason} of the broken ones."""
    images = root / 'CUB_200_2011' / 'images'
    p = {s: images / f'{s}.jpg' for s in info['stems']}
    train, test = info['train'], info['test']
    p[train[0]].write_bytes(b'')
    data = p[train[1]].read_bytes()
    p[train[1]].write_bytes(data[:len(data) // 2])
    p[train[2]].write_bytes(b'GIF? no: neither a JPEG nor any image\n' * 4)
    # not problems: bytes after the end-of-image marker, and a PNG named .jpg (both decode)
    p[train[3]].write_bytes(p[train[3]].read_bytes() + b'\x00' * 100)
    with Image.open(p[test[0]]) as im:
        im.convert('RGB').save(p[test[0]], 'PNG')
    return {train[0]: 'empty file (0 bytes)',
            train[1]: 'truncated JPEG (no end-of-image marker FFD9 at its end)',
            train[2]: 'not a JPEG (no start-of-image marker FFD8) nor another image format'}


def test_check_data_finds_zero_byte_and_truncated_jpegs_without_decoding(cub, capsys):
    root, info = cub
    broken = _corrupt_images(root, info)
    images = root / 'CUB_200_2011' / 'images'
    # the cheap check agrees with a full decode on every file
    for s in info['stems']:
        if s in broken:
            with pytest.raises(D.ImageError):
                load_image(images / f'{s}.jpg')
        else:
            load_image(images / f'{s}.jpg')
    rep = check_data(root, K, max_listed=10)
    rel = {s: (images / f'{s}.jpg').relative_to(root) for s in broken}
    listed = ', '.join(f'{rel[s]}: {why}' for s, why in broken.items())
    assert rep.problems == [f'unreadable images (train): {len(broken)} of {len(info["train"])}; first: {listed}']
    assert rep.info['train images present'] == len(info['train'])
    rc, out, err = check_cli(root, capsys)
    assert rc == 1 and not err
    assert problem_lines(out) == [check_data(root, K).problems[0]]
    assert problem_lines(out)[0].startswith(f'unreadable images (train): {len(broken)} of {len(info["train"])}; ')
    # --decode-images finds the same files, no more
    assert check_data(root, K, decode_images=True, max_listed=10).problems == rep.problems


def test_check_data_decode_images_finds_what_the_cheap_check_cannot(cub):
    root, info = cub
    # a JPEG with a bogus Huffman table: markers and header intact (PIL skips the table), pixels undecodable
    p = root / 'CUB_200_2011' / 'images' / f'{info["test"][1]}.jpg'
    data = bytearray(p.read_bytes())
    dht = data.index(b'\xff\xc4')
    data[dht + 5:dht + 21] = b'\xff' * 16   # the 16 code-length counts
    p.write_bytes(bytes(data))
    with pytest.raises(D.ImageError):
        load_image(p)
    assert check_data(root, K).ok
    rep = check_data(root, K, decode_images=True)
    assert len(rep.problems) == 1 and rep.problems[0].startswith('undecodable images (test): 1 of 2; first: ')
    assert str(p) in rep.problems[0]


# ------------------------------------------------------------------------------------- missing images

def test_missing_image_names_the_option_that_skips_them(cub):
    root, info = cub
    gone = info['train'][1:3]
    for s in gone:
        (root / 'CUB_200_2011' / 'images' / f'{s}.jpg').unlink()
    path = root / 'CUB_200_2011' / 'images' / f'{gone[0]}.jpg'
    with pytest.raises(LayoutError) as e:
        small(root)
    assert str(e.value) == (
        f'{len(gone)} of {len(info["train"])} images of the train split are missing; first: {path} '
        f'(stem {gone[0]!r}). Put the images there, or set DATA.SKIP_MISSING_IMAGES: True to leave out the '
        f'stems without an image (`python prepare_data.py check-data --cfg CFG` lists them)')
    cfg = small_cfg(root)
    assert cfg.DATA.SKIP_MISSING_IMAGES is False
    with pytest.raises(LayoutError):
        build_dataset(cfg, 'train')
    cfg.DATA.SKIP_MISSING_IMAGES = True
    with pytest.warns(UserWarning) as w:
        ds = build_dataset(cfg, 'train')
    assert ds.filenames == [s for s in info['train'] if s not in gone]
    assert [str(x.message) for x in w] == [
        f'{len(gone)} of {len(info["train"])} images of the train split are missing under '
        f'{root / "CUB_200_2011" / "images"} (first: {path}); their stems are left out (DATA.SKIP_MISSING_IMAGES)']
    # sampling needs no images: the key does not filter then
    assert build_dataset(cfg, 'train', require_images=False).filenames == info['train']


# ------------------------------------------------------------------ project errors for user-caused input

def test_bad_use_bbox_value_is_a_config_error(cub):
    from attngan.config import ConfigError
    from attngan.data.cub import resolve_use_bbox
    root, _ = cub
    with pytest.raises(ConfigError, match=r"^DATA.USE_BBOX must be 'auto', True or False, got 'maybe'$"):
        resolve_use_bbox(root, 'maybe')


def test_unknown_stem_is_a_split_error(cub):
    root, _ = cub
    with pytest.raises(DatasetError) as e:
        small(root, filenames=['nope'])
    assert isinstance(e.value, ValueError) and isinstance(e.value, D.SplitError)
    assert str(e.value) == f"stem 'nope' is not in {root / 'train' / 'filenames.pickle'}"


def test_corrupt_cache_index_is_an_image_error(cub, tmp_path):
    root, _ = cub
    small(root, cache=True, cache_dir=tmp_path / 'c')
    index = next((tmp_path / 'c').glob('train-*.npz'))
    index.write_bytes(b'not an npz')
    with pytest.raises(D.ImageError, match=rf'^{index}: not a readable cache index .*delete'):
        small(root, cache=True, cache_dir=tmp_path / 'c')
