"""eval/compare.py and eval/r_precision.py on tiny toy runs; generated-image R-precision on constructed cases."""
import csv
import importlib.util
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.cli import main as gan_main
from attngan.cli import pretrain_damsm
from attngan.config import load_config
from attngan.data import build_dataset
from attngan.data.toy import make_toy_dataset
from attngan.metrics import fid as F
from attngan.metrics import r_precision_gen as RG
from conftest import REPO_ROOT, TINY_DAMSM, TINY_GAN


def _script(name):
    return importlib.import_module(f'attngan.commands.{name}')


compare = _script('compare')
rprec_cli = _script('r_precision')


def _args(cfg, toy, out, seed, sets):
    args = ['--cfg', str(REPO_ROOT / cfg), '--gpu', '-1', '--data_dir', str(toy), '--manualSeed', str(seed),
            '--output_dir', str(out)]
    for kv in sets:
        args += ['--set', kv]
    return args


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A tiny DAMSM run, then an AttnGAN and a DualAttnGAN run of 2 epochs (2 steps each): netG_epoch_0, _1
    and _2 (the original's final save, equal to _1).

    Toy data: 2 train classes and 2 test classes of 5 images (10 captions each), so the test pool has
    50 captions outside each class: R-precision runs with R = 10 here. (The DAMSM trainer's retrieval
    check needs >= 10 test images in full batches: DAMSM batch 10.)"""
    root = tmp_path_factory.mktemp('compare')
    toy = root / 'toy'
    make_toy_dataset(toy, seed=0, n_classes=4, images_per_class=5, image_size=(120, 90), n_test_classes=2)
    assert pretrain_damsm(_args('cfg/DAMSM/toy.yml', toy, root / 'damsm', 1, TINY_DAMSM + ['TRAIN.MAX_EPOCH=1', 'TRAIN.BATCH_SIZE=10'])) == 0
    net_e = root / 'damsm' / 'Model' / 'text_encoder0.pth'
    out = {}
    for name, cfg in (('attngan', 'cfg/toy_attn2.yml'), ('dualattn', 'cfg/toy_dualattn.yml')):
        out[name] = root / name
        assert gan_main(_args(cfg, toy, out[name], 5, TINY_GAN + [f'TRAIN.NET_E={net_e}'])) == 0
    out['net_e'] = net_e
    return out


def _run_cfg(run, epoch):
    cfg = load_config(run / 'config.yaml')
    cfg.TRAIN.FLAG = False
    cfg.TRAIN.NET_G = str(run / 'Model' / f'netG_epoch_{epoch}.pth')
    return cfg


def _sample(run, epoch, num_per_image):
    """main.py's own test-split sampling (sample_split) for one checkpoint."""
    args = ['--cfg', str(run / 'config.yaml'), '--gpu', '-1']
    for kv in ['TRAIN.FLAG=false', 'B_VALIDATION=true', f'TRAIN.NET_G={run / "Model" / f"netG_epoch_{epoch}.pth"}',
               f'SAMPLE.NUM_PER_IMAGE={num_per_image}']:
        args += ['--set', kv]
    assert gan_main(args) == 0
    return run / 'Model' / f'netG_epoch_{epoch}' / 'valid' / 'single'


def _fast_frechet(calls):
    # A 2048-d sqrtm takes ~10-40 s on 2 shared cores; the distance itself is tested in
    # test_metrics_fid. This stand-in keeps the terms without the matrix root.
    def fd(mu1, sigma1, mu2, sigma2, eps=1e-6):
        calls.append((mu1.shape, sigma1.shape, mu2.shape, sigma2.shape))
        return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2))
    return fd


def test_write_samples_equal_main_sampling(runs, tmp_path):
    folder = _sample(runs['dualattn'], 2, 2)  # epoch 2: not one that the comparison below reuses
    cfg = _run_cfg(runs['dualattn'], 2)
    written = RG.write_samples(cfg, torch.device('cpu'), 20, tmp_path / 'single')
    assert len(written) == 20 and len(set(written)) == 20 and len(list(folder.rglob('*.png'))) == 20
    for p in written:  # same names, same bytes: a sampled folder can stand for compare's set
        assert (folder / p.relative_to(tmp_path / 'single')).read_bytes() == p.read_bytes()


@pytest.mark.filterwarnings('ignore::attngan.metrics.fid.FIDWarning')  # 10 real images for 2048-d features
def test_compare_two_runs_two_epochs(runs, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(F, 'frechet_distance', _fast_frechet(calls))
    reused = _sample(runs['attngan'], 1, 1)  # 10 samples >= --n: compare reuses them
    before = {p: p.stat().st_mtime_ns for p in reused.rglob('*.png')}
    out = tmp_path / 'out'
    rc = compare.main(['--runs', f'attngan={runs["attngan"]}', f'dualattn={runs["dualattn"]}', '--epochs', '0', '1',
                       '--n', '4', '--is-splits', '2', '--r-folds', '2', '--r-candidates', '10', '--random-weights',
                       '--workers', '0', '--gpu', '-1', '--out', str(out)])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert 'WARNING: rule-filled random Inception weights' in stdout

    with open(out / 'comparison.csv', newline='') as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == compare.COLUMNS
        rows = list(reader)
    assert [(r['model'], r['epoch']) for r in rows] == [('attngan', '0'), ('attngan', '1'),
                                                        ('dualattn', '0'), ('dualattn', '1')]
    for r in rows:
        values = [float(r[c]) for c in ('is_mean', 'is_std', 'fid', 'r_precision_mean', 'r_precision_std')]
        assert all(math.isfinite(v) for v in values), r
        assert float(r['is_mean']) >= 1.0 - 1e-9 and 0.0 <= float(r['r_precision_mean']) <= 1.0
        assert r['n_images'] == '4' and r['inception_weights'] == 'random (smoke test)' and r['note'] == ''
        assert r['samples'] == ('reused' if (r['model'], r['epoch']) == ('attngan', '1') else 'generated')
    assert {p: p.stat().st_mtime_ns for p in reused.rglob('*.png')} == before  # not rewritten
    gen = runs['dualattn'] / 'Model' / 'netG_epoch_0' / 'valid' / 'single'
    assert len(list(gen.rglob('*.png'))) >= 4
    # one FID per row, each against the same 2048-d real statistics
    assert len(calls) == 4 and all(c == ((2048,), (2048, 2048), (2048,), (2048, 2048)) for c in calls)

    md = (out / 'comparison.md').read_text()
    assert 'smoke test' in md and 'scores with the training encoders are optimistic' in md
    assert 'R-precision (attngan, dualattn): ' in md  # same DAMSM encoders: one protocol line
    table = [line for line in md.splitlines() if line.startswith('| ') and line[2:9] in ('attngan', 'dualatt')]
    assert len(table) == 4 and '| IS ↑ | FID ↓ | R-precision ↑ |' in md
    for stem in ('is', 'fid', 'r_precision'):
        img = np.asarray(Image.open(out / f'{stem}.png').convert('RGB')).astype(int)
        assert img.shape == (560, 900, 3)
        for color in MPL_COLORS:  # a line (kept apart from the other) and a legend entry per model
            assert (np.abs(img - np.array(color)).sum(axis=2) < 12).sum() > 15, (stem, color)


def test_compare_without_weights_keeps_going(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'no_weights'))  # no Inception weights in this cache
    out = tmp_path / 'out'
    rc = compare.main(['--runs', f'attngan={runs["attngan"]}', '--epochs', '2', '7', '--n', '4',
                       '--metrics', 'is,rprec', '--r-folds', '2', '--r-candidates', '10', '--workers', '0',
                       '--gpu', '-1', '--out', str(out)])
    assert rc == 0
    assert 'IS will not be computed' in capsys.readouterr().err
    rows = list(csv.DictReader(open(out / 'comparison.csv', newline='')))
    assert [r['epoch'] for r in rows] == ['2', '7']
    assert math.isnan(float(rows[0]['is_mean'])) and math.isnan(float(rows[0]['fid']))
    assert 0.0 <= float(rows[0]['r_precision_mean']) <= 1.0
    assert math.isnan(float(rows[1]['r_precision_mean'])) and 'missing checkpoint' in rows[1]['note']
    md = (out / 'comparison.md').read_text()
    assert 'IS: not computed' in md and 'inception_v3_google' in md and 'FID' not in md.split('| model')[1]
    assert (out / 'is.png').is_file() and (out / 'r_precision.png').is_file() and not (out / 'fid.png').exists()
    assert compare.main(['--runs', f'x={tmp_path}', '--out', str(out)]) == 1  # no config.yaml there


def test_r_precision_cli_on_tiny_run(runs, capsys, tmp_path):
    run = runs['attngan']
    base = ['--cfg', str(run / 'config.yaml'), '--net_g', str(run / 'Model' / 'netG_epoch_2.pth'),
            '--n', '6', '--folds', '3', '--gpu', '-1']
    assert rprec_cli.main(base + ['--candidates', '10']) == 0
    out = capsys.readouterr().out
    m = re.search(r'^R-precision: ([0-9.]+) \+- ([0-9.]+)', out, re.M)
    assert m and 0.0 <= float(m.group(1)) <= 1.0 and 0.0 <= float(m.group(2)) <= 0.5
    assert str(runs['net_e']) in out and 'image_encoder0.pth' in out and 'optimistic' in out
    assert 'true caption and 9 mismatched captions' in out and 'other classes' in out
    # other encoder files (copies here): loaded and used for scoring, and said to be separate
    for kind in ('text', 'image'):
        (tmp_path / f'{kind}_encoder3.pth').write_bytes((runs['net_e'].parent / f'{kind}_encoder0.pth').read_bytes())
    assert rprec_cli.main(base + ['--candidates', '10', '--net_e', str(tmp_path / 'text_encoder3.pth')]) == 0
    out2 = capsys.readouterr().out
    assert str(tmp_path / 'image_encoder3.pth') in out2 and 'separate encoders' in out2
    assert re.search(r'^R-precision: [0-9.]+ \+- [0-9.]+', out2, re.M).group(0) == m.group(0)  # same weights
    assert rprec_cli.main(base) == 1  # R = 100 needs 99 captions of other classes; the split has 50
    assert 'lower the number of candidates' in capsys.readouterr().err


class _EmbedInImage(torch.nn.Module):
    """A generator whose image carries the sentence embedding it was given (first D values)."""

    def forward(self, noise, sent_emb, words_emb, mask):
        b, d = sent_emb.shape
        img = torch.zeros(b, 3, 8, 8)
        img.view(b, -1)[:, :d] = sent_emb
        return [img], None, None, None


class _ReadFromImage(torch.nn.Module):
    """An image encoder returning (sign x) the embedding stored in the image as its global code."""

    def __init__(self, d, sign):
        super().__init__()
        self.d, self.sign = d, sign

    def forward(self, x):
        return None, self.sign * x.flatten(1)[:, :self.d]


@pytest.mark.parametrize('sign, expected', [(1.0, 1.0), (-1.0, 0.0)])
def test_generator_r_precision_constructed(runs, sign, expected):
    run = runs['attngan']
    cfg = _run_cfg(run, 2)
    dataset = build_dataset(cfg, 'test', require_images=False, transform=None, cache=False)
    text = RG.load_text_encoder(cfg, runs['net_e'], dataset.n_words, torch.device('cpu'))
    d = cfg.TEXT.EMBEDDING_DIM
    res = RG.r_precision_of_generator(cfg, torch.device('cpu'), 12, n_candidates=10, n_folds=3, dataset=dataset,
                                      nets=(text, _EmbedInImage(), text, _ReadFromImage(d, sign)))
    # the image code equals (or opposes) the true caption's embedding: always first (or always last)
    assert res.mean == expected and res.std == 0.0 and len(res.result.hits) == 12
    assert res.result.n_candidates == 10 and res.mismatch_rule.startswith('other classes')


MPL_COLORS = [(31, 119, 180), (255, 127, 14)]  # matplotlib's first two default line colours


def _pixels(path, color, tol=12):
    img = np.asarray(Image.open(path).convert('RGB')).astype(int)
    return (np.abs(img - np.array(color)).sum(axis=2) < tol)


def test_plot_keeps_identical_series_apart_with_gaps_and_ranges(tmp_path):
    same = [(100, 0.5, None), (150, 0.6, 0.05), (200, math.nan, None), (250, 0.98, 0.05)]
    plot = compare.plot_metric(tmp_path / 'p.png', 'R-precision vs epoch', {'a': same, 'b': list(same)},
                               'higher is better', 'smoke test', value_range=(0.0, 1.0))
    assert Image.open(tmp_path / 'p.png').size == (900, 560)
    (xa, ya), (xb, yb) = plot.lines['a'], plot.lines['b']
    assert all(u < v for u, v in zip(xa, xb)) and max(v - u for u, v in zip(xa, xb)) < 0.05 * (250 - 100)
    assert math.isnan(ya[2]) and math.isnan(yb[2])  # a gap, not a line through the missing epoch
    assert 0.0 <= plot.ylim[0] < 0.5 and 0.98 < plot.ylim[1] <= 1.0  # 0.98 + 0.05 would pass 1
    for color in MPL_COLORS:  # both coinciding series are visible
        assert _pixels(tmp_path / 'p.png', color).sum() > 50, color
    low = compare.plot_metric(tmp_path / 'low.png', 'R-precision', {'a': [(1, 0.01, 0.05), (2, 0.02, 0.05)]},
                              value_range=(0.0, 1.0))
    assert low.ylim[0] == 0.0  # the error bars would take the axis below 0
    empty = compare.plot_metric(tmp_path / 'e.png', 'IS', {'a': [(1, math.nan, None)]})
    assert Image.open(tmp_path / 'e.png').size == (900, 560) and math.isnan(empty.lines['a'][1][0])


def test_inception_weights_cell_only_when_is_or_fid_ran():
    class Args:
        random_weights = False
    assert compare.inception_weights(Args, {'rprec'}) == ''
    assert compare.inception_weights(Args, {'is', 'rprec'}) == 'pretrained'
    Args.random_weights = True
    assert compare.inception_weights(Args, {'fid'}) == 'random (smoke test)'
