"""The caption-following measure on the toy data (attngan.metrics.toy_follow, eval/toy_follow.py): real test
crops saved in the sampler's layout follow their captions; the same crops with wrong colours do not."""
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.data.cub import load_bbox
from attngan.data.toy import ATTRIBUTES, PALETTE, load_attributes, make_toy_dataset
from attngan.data.transforms import load_image
from attngan.metrics import toy_follow as T

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 16


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """10 classes (7 train, 3 test), 20 images each, ~160x120; the reader trained and cached (~20 s)."""
    root = tmp_path_factory.mktemp('follow')
    data = root / 'toy'
    make_toy_dataset(data, seed=0, n_classes=10, images_per_class=20, image_size=(160, 120), n_test_classes=3)
    cache = root / 'reader.pt'
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 32 small images: a second thread gains little, and much less when busy
    try:
        clf = T.load_or_train(data, cache=cache, epochs=EPOCHS)
    finally:
        torch.set_num_threads(threads)
    return data, cache, clf, time.perf_counter() - t0


def _write_as_generated(data: Path, out: Path, transform=lambda a: a, reps=(0,)) -> int:
    """Real test images, cropped as the pipeline, saved where the sampler saves generated ones."""
    meta = load_attributes(data)
    boxes = load_bbox(data)
    n = 0
    for key, entry in sorted(meta['images'].items()):
        if entry['split'] != 'test':
            continue
        img = np.asarray(T.pipeline_crop(load_image(data / 'CUB_200_2011' / 'images' / f'{key}.jpg'), boxes[key]))
        for r in reps:
            path = out / f'{key}_s-1.png' if r == 0 else out / f'{key}_s-1_{r}.png'
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(transform(img))).save(path)
            n += 1
    return n


@pytest.fixture(scope='module')
def real_report(toy, tmp_path_factory):
    data, _, clf, _ = toy
    gen = tmp_path_factory.mktemp('gen') / 'netG_epoch_1' / 'valid' / 'single'
    n = _write_as_generated(data, gen)
    return n, T.evaluate_folder(clf, gen.parents[1], data)


def test_reader_reads_real_test_images(toy):
    _, _, clf, seconds = toy
    acc = clf.meta['real_test_accuracy']
    # the large parts of held-out classes (new colour combinations) are read almost always
    for a in ('crown_color', 'body_color', 'wing_color'):
        assert acc[a] >= 0.9, (a, acc)
    rc = clf.meta['real_captions']['colour']
    assert rc['pair_match'] >= 0.75, rc
    assert clf.meta['train_seconds'] > 0 and seconds < 120


def test_real_crops_in_sampler_layout_follow_their_captions(toy, real_report):
    data, _, clf, _ = toy
    n, rep = real_report
    assert rep['n_images'] == n == 60 and rep['unknown'] == 0 and rep['splits'] == ['test']
    c = rep['generated']['colour']
    # same images, same reader, caption 0 of each: close to the all-captions ceiling
    assert c['pair_match'] >= 0.75, c
    assert abs(c['pair_match'] - clf.meta['real_captions']['colour']['pair_match']) < 0.15
    assert c['pair_match'] > max(c['pair_majority'], c['pair_chance']) + 0.15, c
    assert c['all_match'] > c['all_majority'] + 0.15, c
    # a caption of another image matches less often: the text matters
    assert rep['shuffled']['colour']['pair_match'] < c['pair_match'] - 0.15, rep['shuffled']['colour']
    text = T.format_report(rep)
    assert 'crown_color' in text and 'shuf' in text


@pytest.mark.parametrize('corrupt', ['grey', 'permuted'])
def test_wrong_colours_drop_the_match(toy, real_report, tmp_path, corrupt):
    data, _, clf, _ = toy
    _, real = real_report
    if corrupt == 'grey':
        transform = lambda a: np.full_like(a, 128)  # noqa: E731
    else:  # RGB -> BRG: the reader still finds the parts, but every colour but black and white changes
        transform = lambda a: a[:, :, [2, 0, 1]]  # noqa: E731
    _write_as_generated(data, tmp_path / 'valid' / 'single', transform)
    c = T.evaluate_folder(clf, tmp_path, data)['generated']['colour']
    good = real['generated']['colour']['pair_match']
    if corrupt == 'grey':
        assert c['pair_match'] <= c['pair_chance'] + 0.05, c
    else:
        assert c['pair_match'] < good - 0.4, (c, good)
        assert c['pair_match'] < c['pair_majority'], c


def test_repetitions_use_their_caption_index(toy, tmp_path):
    data, _, clf, _ = toy
    meta = load_attributes(data)
    n_caps = len(next(iter(meta['images'].values()))['captions'])
    _write_as_generated(data, tmp_path / 'single', reps=(3, n_caps + 1))
    found = T.find_generated(tmp_path)
    assert sorted({r for _, _, r in found}) == [3, n_caps + 1]
    rep = T.evaluate_folder(clf, tmp_path, data)
    test_keys = [k for k, v in meta['images'].items() if v['split'] == 'test']
    for a in ATTRIBUTES:
        want = sum(a in meta['images'][k]['captions'][3]['mentions'] for k in test_keys) + \
            sum(a in meta['images'][k]['captions'][1]['mentions'] for k in test_keys)
        assert rep['generated']['per_attribute'][a]['n'] == want, a


def test_find_generated_parses_the_sampler_names(tmp_path):
    (tmp_path / 'a' / '001.X').mkdir(parents=True)
    for name in ('s_1_s-1.png', 's_1_s-1_7.png', 's_1_g0.png', 's_1_s-1.jpg', 's_1_s-1_x.png'):
        (tmp_path / 'a' / '001.X' / name).write_bytes(b'')
    got = [(p.name, k, r) for p, k, r in T.find_generated(tmp_path)]
    assert got == [('s_1_s-1.png', '001.X/s_1', 0), ('s_1_s-1_7.png', '001.X/s_1', 7)]
    with pytest.raises(FileNotFoundError, match='not a folder'):
        T.find_generated(tmp_path / 'missing')


def test_no_generated_image_is_an_error(toy, tmp_path):
    data, _, clf, _ = toy
    (tmp_path / '001.Unknown').mkdir()
    Image.new('RGB', (128, 128)).save(tmp_path / '001.Unknown' / 'nope_s-1.png')
    with pytest.raises(ValueError, match='no generated image'):
        T.evaluate_folder(clf, tmp_path, data)


def test_score_predictions_counts():
    colours = list(PALETTE)
    truth = [{**{a: 'red' for a in T.COLOR_ATTRS}, 'beak_size': 'long', 'tail_size': 'short'},
             {**{a: 'blue' for a in T.COLOR_ATTRS}, 'beak_size': 'short', 'tail_size': 'short'},
             {**{a: 'red' for a in T.COLOR_ATTRS}, 'beak_size': 'long', 'tail_size': 'long'}]
    mentions = [['crown_color', 'beak_size'], ['crown_color', 'wing_color'], ['tail_size']]
    pred = np.full((3, len(ATTRIBUTES)), -1)
    j = {a: i for i, a in enumerate(ATTRIBUTES)}
    pred[0, j['crown_color']] = colours.index('red')
    pred[0, j['beak_size']] = T.VALUES['beak_size'].index('long')
    pred[1, j['crown_color']] = colours.index('red')  # wrong; its wing is not found (-1)
    s = T.score_predictions(pred, truth, mentions)
    per, c = s['per_attribute'], s['colour']
    assert per['crown_color'] == {'match': 0.5, 'n': 2, 'not_found': 0.0, 'majority': 0.5}
    assert per['wing_color'] == {'match': 0.0, 'n': 1, 'not_found': 1.0, 'majority': 1.0}
    assert per['beak_size']['match'] == 1.0 and per['tail_size']['match'] == 0.0
    assert per['body_color']['n'] == 0 and per['body_color']['match'] is None
    assert (c['pairs'], c['images']) == (3, 2)
    assert c['pair_match'] == pytest.approx(1 / 3) and c['all_match'] == 0.5
    assert c['pair_majority'] == pytest.approx(2 / 3) and c['all_majority'] == 0.5  # majority crown: red
    assert c['all_chance'] == pytest.approx((1 / 9 + 1 / 81) / 2)


def test_best_threshold_separates():
    f = np.array([0.1, 0.5, 0.2, 0.9, 1.0])
    y = np.array([False, True, False, True, True])
    t = T._best_threshold(f, y)
    assert 0.2 < t < 0.5
    assert T._best_threshold(np.array([1.0, 2.0]), np.array([True, True])) < 1.0


def test_cache_is_reused_and_keyed(toy, monkeypatch):
    data, cache, clf, _ = toy
    assert cache.is_file() and not list(cache.parent.glob('*.tmp'))

    def no_training(*a, **k):
        raise AssertionError('trained again')
    monkeypatch.setattr(T, 'train_classifier', no_training)
    again = T.load_or_train(data, cache=cache, epochs=EPOCHS)
    assert again.thresholds == clf.thresholds and again.meta == clf.meta
    # other settings: another fingerprint, so it trains
    calls = []
    monkeypatch.setattr(T, 'train_classifier', lambda *a, **k: calls.append(k) or clf)
    T.load_or_train(data, cache=False, epochs=EPOCHS)
    T.load_or_train(data, cache=cache.parent / 'other.pt', epochs=EPOCHS + 1)
    assert [k['epochs'] for k in calls] == [EPOCHS, EPOCHS + 1]
    bad = cache.parent / 'bad.pt'
    bad.write_bytes(b'not a torch file')
    with pytest.warns(UserWarning, match='unreadable'):
        T.load_or_train(data, cache=bad, epochs=EPOCHS)


def test_cli(toy, real_report, tmp_path, capsys):
    data, cache, _, _ = toy
    from attngan.commands import toy_follow as cli
    gen = tmp_path / 'single'
    _write_as_generated(data, gen)
    out = tmp_path / 'r.json'
    rc = cli.main([str(tmp_path), '--data', str(data), '--cache', str(cache), '--epochs', str(EPOCHS),
                   '--json', str(out), '--quiet'])
    text = capsys.readouterr().out
    assert rc == 0 and 'named colours' in text and 'beak_color' in text
    rep = json.loads(out.read_text())
    assert rep['n_images'] == 60
    assert rep['generated']['colour']['pair_match'] == real_report[1]['generated']['colour']['pair_match']
    # checked before any training (the default --epochs would not match the cache)
    assert cli.main([str(tmp_path / 'nothing'), '--data', str(data), '--cache', str(cache), '--quiet']) == 1
    (tmp_path / 'empty').mkdir()
    assert cli.main([str(tmp_path / 'empty'), '--data', str(data), '--cache', str(cache), '--quiet']) == 1
    assert 'no <class>/<stem>_s-1' in capsys.readouterr().err

    # the demo's closing summary reads this JSON (and the DAMSM keys pinned in test_damsm.py)
    spec = importlib.util.spec_from_file_location('demo_cli', REPO / 'demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    metrics = tmp_path / 'metrics.jsonl'
    metrics.write_text(json.dumps({'kind': 'damsm_step', 'epoch': 4}) + '\n' + json.dumps(
        {'kind': 'damsm_epoch', 'epoch': 4, 'val_w_loss': 1.5, 'r_precision_i2t': 0.25,
         'r_precision_candidates': 100}) + '\n')
    damsm_line, follow_line = demo.figures(metrics, out)
    assert 'epoch 4' in damsm_line and 'R-precision 0.250' in damsm_line and 'chance 0.01' in damsm_line
    c = rep['generated']['colour']
    assert follow_line.startswith(f"samples: {100 * c['pair_match']:.0f}% of the named part colours right")
    assert f"{100 * rep['shuffled']['colour']['pair_match']:.0f}% against shuffled" in follow_line
