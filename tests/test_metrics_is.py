"""Inception Score: the formula against a numpy reference, the classifier path, the command line,
and eval/finetune_inception.py for one step on a generated CUB-layout fixture."""
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.metrics import inception_score as IS
from attngan.metrics.inception import (TORCHVISION_WEIGHTS_FILES, InceptionClassifier,
                                       load_classifier, rule_fill_)

REPO = Path(__file__).resolve().parents[1]


def _numpy_reference(probs, splits):
    """The improved-GAN / StackGAN computation, written out in numpy."""
    scores = []
    n = probs.shape[0]
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(np.mean(part, 0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return np.mean(scores), np.std(scores)


@pytest.mark.parametrize('n, k, splits', [(50, 7, 10), (23, 5, 4), (10, 3, 1)])
def test_formula_matches_numpy_reference(n, k, splits):
    logits = np.random.default_rng(n).standard_normal((n, k)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = _numpy_reference(probs, splits)
    np.testing.assert_allclose(IS.inception_score_from_logits(logits, splits), ref, rtol=1e-10)
    np.testing.assert_allclose(IS.inception_score(probs, splits), ref, rtol=1e-10)


def test_known_values():
    # every image predicts the same distribution: KL = 0, IS = 1 in every split
    same = np.tile([[0.2, 0.3, 0.5]], (20, 1))
    assert IS.inception_score(same, 4) == pytest.approx((1.0, 0.0), abs=1e-12)
    # confident and evenly spread over 5 classes within each split: IS = 5 (0 log 0 taken as 0)
    onehot = np.eye(5)[np.arange(20) % 5]
    assert IS.inception_score(onehot, 4) == pytest.approx((5.0, 0.0), abs=1e-9)
    # split 1 uses 5 classes, split 2 only 1: scores 5 and 1
    mixed = np.concatenate([np.eye(5), np.tile(np.eye(5)[:1], (5, 1))])
    assert IS.inception_score(mixed, 2) == pytest.approx((3.0, 2.0), abs=1e-9)


def test_bad_input():
    with pytest.raises(ValueError, match='at least one image per split'):
        IS.inception_score_from_logits(np.zeros((5, 3)), 10)
    with pytest.raises(ValueError, match='sum to 1'):
        IS.inception_score(np.ones((4, 3)), 2)
    with pytest.raises(ValueError, match='N x K'):
        IS.inception_score_from_logits(np.zeros(5), 1)


def _write_images(folder: Path, n: int, size=(32, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        arr = rng.integers(0, 255, (size[1] // 4, size[0] // 4, 3)).astype(np.uint8)
        Image.fromarray(arr).resize(size, Image.NEAREST).save(folder / f'{i}.jpg', quality=95)
    return sorted(folder.glob('*.jpg'))


def test_classifier_logits_use_pil_resize_and_unit_range(tmp_path):
    clf = rule_fill_(InceptionClassifier(10))
    files = _write_images(tmp_path / 'g', 2)
    got = IS.classifier_logits(files, clf, batch_size=2, device='cpu', workers=0, channels_last=False)
    pil = [Image.open(f).convert('RGB').resize((299, 299), Image.BILINEAR) for f in files]
    x = torch.stack([torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1) for im in pil])
    with torch.inference_mode():
        want = clf.net(x.float() / 255 * 2 - 1)
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, want.double().numpy(), rtol=0, atol=1e-4)


def _load(name):
    return importlib.import_module(f'attngan.commands.{name}')


def test_cli_missing_imagenet_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    _write_images(tmp_path / 'g', 2)
    rc = _load('inception_score').main([str(tmp_path / 'g')])
    err = capsys.readouterr().err
    assert rc == 1 and TORCHVISION_WEIGHTS_FILES[0] in err and 'download.pytorch.org' in err


def _make_cub(root: Path):
    """3 classes x 2 images (one train, one test each), boxes, and a test split of 2 classes."""
    cub = root / 'CUB_200_2011'
    classes = ['001.Red_Bird', '002.Blue_Bird', '003.Green_Bird']
    lines = {k: [] for k in ('images', 'labels', 'split', 'boxes')}
    idx = 0
    for c, name in enumerate(classes, start=1):
        (cub / 'images' / name).mkdir(parents=True)
        for j in range(2):
            idx += 1
            stem = f'{name[4:]}_{j:04d}_{idx}'
            colour = [(200, 30, 30), (30, 30, 200), (30, 200, 30)][c - 1]
            img = Image.new('RGB', (80, 60), colour)
            img.save(cub / 'images' / name / f'{stem}.jpg')
            lines['images'].append(f'{idx} {name}/{stem}.jpg')
            lines['labels'].append(f'{idx} {c}')
            lines['split'].append(f'{idx} {1 - j}')
            lines['boxes'].append(f'{idx} 10.0 5.0 50.0 40.0')
    for key, fname in (('images', 'images.txt'), ('labels', 'image_class_labels.txt'),
                       ('split', 'train_test_split.txt'), ('boxes', 'bounding_boxes.txt')):
        (cub / fname).write_text('\n'.join(lines[key]) + '\n')
    (cub / 'classes.txt').write_text('\n'.join(f'{i} {n}' for i, n in enumerate(classes, 1)) + '\n')
    (root / 'test').mkdir()
    with open(root / 'test' / 'filenames.pickle', 'wb') as f:
        pickle.dump([lines['images'][i].split()[1][:-4] for i in (2, 4)], f, protocol=0)
    return classes


def test_finetune_one_step_then_inception_score(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    classes = _make_cub(tmp_path / 'birds')
    ft = _load('finetune_inception')
    # the 50-test-class option reads AttnGAN's test split
    train, val, names = ft.cub_items(tmp_path / 'birds', 'test50')
    assert names == classes[1:] and len(train) == 2 and len(val) == 2
    # without ImageNet weights the default init refuses, naming the file and the test-only way out
    out = tmp_path / 'clf.pth'
    rc = ft.main(['--data-dir', str(tmp_path / 'birds'), '--out', str(out), '--device', 'cpu'])
    err = capsys.readouterr().err
    assert rc == 1 and TORCHVISION_WEIGHTS_FILES[0] in err and '--init random' in err
    assert not out.exists()
    rc = ft.main(['--data-dir', str(tmp_path / 'birds'), '--out', str(out), '--init', 'random',
                  '--max-steps', '1', '--batch-size', '2', '--workers', '0', '--device', 'cpu'])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert 'train 3 images, validation 3' in text and 'step 1/1' in text
    clf = load_classifier(out)
    assert clf.num_classes == 3 and clf.class_names == classes
    gen = tmp_path / 'gen'
    _write_images(gen, 4)
    rc = _load('inception_score').main([str(gen), '--classifier', str(out), '--splits', '2',
                                        '--device', 'cpu', '--workers', '0'])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert 'fine-tuned on CUB-200-2011 (3 classes: all CUB classes' in text
    mean = float(text.split('Inception Score: ')[1].split()[0])
    assert 1.0 <= mean <= 3.0  # IS lies between 1 and the number of classes
