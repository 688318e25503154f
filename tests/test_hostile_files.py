"""Crafted, truncated and foreign files given to the command lines: one clear line, never code execution,
never a traceback. And the other side of that rule: a bug inside the library keeps its traceback."""
import importlib.util
import io
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.cli import main, pretrain_damsm
from conftest import TINY_DAMSM, TINY_GAN


class _RunsCode:
    """Unpickling this runs ``touch <marker>``: what a crafted checkpoint does to torch.load(weights_only=False)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _crafted(kind: str, path, marker):
    """A file whose unpickling would create ``marker``: a torch zip checkpoint or a plain pickle."""
    payload = {'kind': 'gan', 'epoch': 0, 'hook': _RunsCode(marker)}
    if kind == 'torch':
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def _truncated(path, src_bytes: bytes):
    path.write_bytes(src_bytes[:len(src_bytes) // 2])
    return path


def _sets(items):
    out = []
    for kv in items:
        out += ['--set', kv]
    return out


def _one_line(err: str) -> str:
    lines = [l for l in err.strip().splitlines() if l.startswith('error:')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


def _load_eval(name):
    return importlib.import_module(f'attngan.commands.{name}')


@pytest.fixture(scope='module')
def damsm_run(tiny_toy, tmp_path_factory):
    out = tmp_path_factory.mktemp('hostile') / 'damsm'
    args = ['--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1', '--data_dir', str(tiny_toy), '--manualSeed', '1',
            '--output_dir', str(out)] + _sets(TINY_DAMSM + ['TRAIN.MAX_EPOCH=1'])
    assert pretrain_damsm(args) == 0
    return out


@pytest.mark.parametrize('kind', ['torch', 'pickle'])
@pytest.mark.parametrize('entry', ['main', 'pretrain_damsm'])
def test_crafted_train_state_is_refused_without_running_it(tmp_path, capsys, kind, entry, tiny_toy):
    marker = tmp_path / 'pwned'
    state = _crafted(kind, tmp_path / 'train_state.pt', marker)
    # the payload is real: an unsafe load runs it
    torch.load(state, weights_only=False) if kind == 'torch' else pickle.loads(state.read_bytes())
    assert marker.exists()
    marker.unlink()
    fn = main if entry == 'main' else pretrain_damsm
    cfg = 'cfg/toy_attn2.yml' if entry == 'main' else 'cfg/DAMSM/toy.yml'
    assert fn(['--cfg', cfg, '--gpu', '-1', '--data_dir', str(tiny_toy), '--resume', str(state)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(state) in line and 'refused' in line
    assert not marker.exists()


def test_truncated_and_foreign_train_state_are_one_line(damsm_run, tmp_path, capsys, tiny_toy):
    good = (damsm_run / 'Model' / 'train_state.pt').read_bytes()
    cases = {'truncated': _truncated(tmp_path / 'half.pt', good),
             'empty': tmp_path / 'empty.pt',
             'text': tmp_path / 'text.pt',
             'weights only': tmp_path / 'weights.pt'}
    cases['empty'].write_bytes(b'')
    cases['text'].write_text('not a checkpoint\n')
    torch.save({'encoder.weight': torch.zeros(2)}, cases['weights only'])  # a state_dict, not a train_state
    for name, path in cases.items():
        args = ['--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1', '--data_dir', str(tiny_toy), '--resume', str(path)]
        assert pretrain_damsm(args) == 2, name
        line = _one_line(capsys.readouterr().err)
        assert str(path) in line, name


def test_crafted_captions_pickle_is_one_line(tiny_toy, damsm_run, tmp_path, capsys):
    data = tmp_path / 'toy'
    shutil.copytree(tiny_toy, data)
    marker = tmp_path / 'pwned'
    (data / 'captions.pickle').write_bytes(pickle.dumps([_RunsCode(marker)], protocol=2))
    for fn, cfg, extra in [(pretrain_damsm, 'cfg/DAMSM/toy.yml', TINY_DAMSM),
                           (main, 'cfg/toy_attn2.yml',
                            TINY_GAN + [f'TRAIN.NET_E={damsm_run / "Model" / "text_encoder0.pth"}'])]:
        args = ['--cfg', cfg, '--gpu', '-1', '--data_dir', str(data), '--output_dir', str(tmp_path / 'run')]
        assert fn(args + _sets(extra)) == 2
        line = _one_line(capsys.readouterr().err)
        assert 'captions.pickle' in line
        assert not marker.exists()
        assert not (tmp_path / 'run').exists()  # the failed start left no run folder


def _images(folder, n=2, size=32):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f'{i}.png')
    return folder


@pytest.fixture
def weight_files(tmp_path):
    marker = tmp_path / 'pwned'
    real = io.BytesIO()
    torch.save({'Conv2d_1a_3x3.conv.weight': torch.zeros(32, 3, 3, 3)}, real)
    files = {
        'crafted torch': _crafted('torch', tmp_path / 'crafted.pth', marker),
        'crafted pickle': _crafted('pickle', tmp_path / 'crafted.pkl', marker),
        'truncated': _truncated(tmp_path / 'truncated.pth', real.getvalue()),
        'empty': tmp_path / 'empty.pth',
    }
    files['empty'].write_bytes(b'')
    with zipfile.ZipFile(tmp_path / 'foreign.pth', 'w') as z:
        z.writestr('readme.txt', 'a zip, not a torch file')
    files['foreign zip'] = tmp_path / 'foreign.pth'
    return files, marker


def test_fid_weights_hostile_files(tmp_path, weight_files, capsys):
    files, marker = weight_files
    gen, real = _images(tmp_path / 'gen'), _images(tmp_path / 'real')
    fid = _load_eval('fid')
    for name, path in files.items():
        for mode in ('standard', 'legacy'):
            rc = fid.main([str(gen), str(real), '--weights', str(path), '--mode', mode, '--device', 'cpu',
                           '--workers', '0', '--no-progress'])
            assert rc == 1, (name, mode)
            line = _one_line(capsys.readouterr().err)
            assert str(path) in line, (name, mode, line)
    assert not marker.exists()


def test_inception_score_classifier_hostile_files(tmp_path, weight_files, capsys):
    files, marker = weight_files
    gen = _images(tmp_path / 'gen')
    is_cli = _load_eval('inception_score')
    for name, path in files.items():
        for args in (['--classifier', str(path)], ['--classifier', 'imagenet', '--weights', str(path)]):
            rc = is_cli.main([str(gen), '--splits', '1', '--device', 'cpu', '--workers', '0', '--no-progress'] + args)
            assert rc == 1, (name, args)
            line = _one_line(capsys.readouterr().err)
            assert str(path) in line, (name, args, line)
    assert not marker.exists()


def test_diverging_gan_stops_with_the_nan_message(damsm_run, tiny_toy, tmp_path, capsys):
    """Learning rates of 100 make D's outputs NaN within a few steps: the run stops naming the step and the
    loss (binary_cross_entropy's own range check would have raised first)."""
    out = tmp_path / 'run'
    args = ['--cfg', 'cfg/toy_attn2.yml', '--gpu', '-1', '--data_dir', str(tiny_toy), '--manualSeed', '5',
            '--output_dir', str(out)] + _sets(TINY_GAN + [
                f'TRAIN.NET_E={damsm_run / "Model" / "text_encoder0.pth"}', 'TRAIN.GENERATOR_LR=100.0',
                'TRAIN.DISCRIMINATOR_LR=100.0'])
    assert main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert 'loss' in line and ' is nan' in line and 'step ' in line, line


def test_a_library_bug_keeps_its_traceback(damsm_run, tiny_toy, tmp_path, monkeypatch):
    """Only the project's own errors become one line: a ValueError or KeyError from a bug propagates."""
    import attngan.gan

    for exc in (ValueError('a bug'), KeyError('a bug'), FileNotFoundError('a bug')):
        def broken(*a, exc=exc, **k):
            raise exc
        monkeypatch.setattr(attngan.gan.GANStep, '__call__', broken)
        args = ['--cfg', 'cfg/toy_attn2.yml', '--gpu', '-1', '--data_dir', str(tiny_toy),
                '--output_dir', str(tmp_path / type(exc).__name__)] + _sets(
                    TINY_GAN + [f'TRAIN.NET_E={damsm_run / "Model" / "text_encoder0.pth"}'])
        with pytest.raises(type(exc), match='a bug'):
            main(args)
