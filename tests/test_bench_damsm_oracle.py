"""bench/damsm_toy_oracle.py: the oracle codes say what the toy's images show and captions name; every mode runs."""
import importlib.util
import re
from pathlib import Path

import pytest

from attngan.config import load_config
from attngan.data import build_dataloader, build_dataset, prepare_data
from attngan.data.toy import load_attributes, tokenize
from conftest import TINY_DAMSM

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('damsm_toy_oracle', REPO / 'bench' / 'damsm_toy_oracle.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_oracle_codes_match_attributes_json(bench, tiny_toy):
    codes = bench.AttributeCodes(tiny_toy)
    meta = load_attributes(tiny_toy)
    cfg = load_config(REPO / 'cfg' / 'DAMSM' / 'toy.yml', TINY_DAMSM)
    cfg.DATA_DIR = str(tiny_toy)
    ds = build_dataset(cfg, 'train')
    loader, _ = build_dataloader(cfg, 'train', shuffle=False, drop_last=True, dataset=ds, device='cpu')
    _, captions, cap_lens, _, keys = prepare_data(next(iter(loader)), 'cpu')
    image = codes.image(keys)
    caption = codes.caption(keys, captions, cap_lens, ds.ixtoword)
    assert image.shape == caption.shape == (len(keys), codes.dim)
    assert (image.sum(1) == 7).all()  # one value of each attribute
    assert ((caption == 1) <= (image == 1)).all()  # a caption names only what its image shows
    for key, row, cap, n in zip(keys, caption, captions.tolist(), cap_lens.tolist()):
        text = ' '.join(ds.ixtoword[t] for t in cap[:n])
        named = [c['mentions'] for c in meta['images'][key]['captions'] if ' '.join(tokenize(c['text'])) == text]
        assert named and int(row.sum()) == len(named[0])


@pytest.mark.parametrize('mode', ['text', 'image', 'both', 'joint'])
def test_each_mode_trains_and_reports(bench, tiny_toy, mode, capsys):
    args = ['--mode', mode, '--epochs', '1', '--data-dir', str(tiny_toy)]
    for kv in TINY_DAMSM:
        args += ['--set', kv]
    assert bench.main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    m = re.search(r'train ([\d.]+) test ([\d.]+)', line)
    assert m and all(0.0 <= float(v) <= 1.0 for v in m.groups()), line
