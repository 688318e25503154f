"""Resume at every boundary of the training loop, for both trainers, through the real entry points.

A run stopped after k iterations (TRAIN.MAX_STEPS, or SIGINT) and continued with --resume must end with the
same files as the run that was never stopped: every checkpoint tensor, the full train_state.pt, every
picture byte for byte, and the same metrics.jsonl records. The stop points cover the first batch of the run,
the first, a middle and the last batch of an epoch, the last batch of a snapshot epoch and of a non-snapshot
one, and the last batch of the run; each is computed from the straight run's own counts.
"""
import json
import os
import signal

import pytest
import torch

from attngan.cli import main, pretrain_damsm
from attngan.data.safe_pickle import safe_load
from attngan.engine.checkpoint import load_train_state
from conftest import TINY_DAMSM, TINY_GAN

MAX_EPOCH, SNAPSHOT = 3, 2  # epochs 0 and 2 are snapshot epochs, epoch 1 is not
LENGTH = [f'TRAIN.MAX_EPOCH={MAX_EPOCH}', f'TRAIN.SNAPSHOT_INTERVAL={SNAPSHOT}']
TIMING_KEYS = {'time_s', 'images_per_s'}


def _sets(items):
    out = []
    for kv in items:
        out += ['--set', kv]
    return out


def _damsm_args(toy, out, *extra):
    return (['--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1', '--data_dir', str(toy), '--manualSeed', '3',
             '--output_dir', str(out)] + _sets(TINY_DAMSM + LENGTH + list(extra)))


def _gan_args(toy, out, net_e, *extra):
    return (['--cfg', 'cfg/toy_attn2.yml', '--gpu', '-1', '--data_dir', str(toy), '--manualSeed', '5',
             '--output_dir', str(out)]
            + _sets(TINY_GAN + LENGTH + [f'TRAIN.NET_E={net_e}', 'TRAIN.LOG_INTERVAL=1',
                                         'TRAIN.SAMPLE_INTERVAL=4'] + list(extra)))


TRAINERS = {
    'damsm': (pretrain_damsm, lambda ctx, out, *extra: _damsm_args(ctx['toy'], out, *extra)),
    'gan': (main, lambda ctx, out, *extra: _gan_args(ctx['toy'], out, ctx['net_e'], *extra)),
}


@pytest.fixture(scope='module')
def ctx(tiny_toy, tmp_path_factory):
    """The toy data, the GAN's DAMSM encoders, and the straight (never stopped) run of each trainer."""
    root = tmp_path_factory.mktemp('resume')
    enc = root / 'encoders'
    assert pretrain_damsm(['--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1', '--data_dir', str(tiny_toy),
                           '--manualSeed', '1', '--output_dir', str(enc)] + _sets(TINY_DAMSM + ['TRAIN.MAX_EPOCH=1'])) == 0
    c = {'toy': tiny_toy, 'net_e': enc / 'Model' / 'text_encoder0.pth', 'root': root}
    for kind, (entry, args) in TRAINERS.items():
        straight = root / f'{kind}_straight'
        assert entry(args(c, straight)) == 0
        state = load_train_state(straight / 'Model' / 'train_state.pt')
        assert state['epoch'] == MAX_EPOCH and state['step'] == 0
        # iterations per epoch: the train split's images in whole batches (the loaders drop the last one)
        n_train = len(safe_load(tiny_toy / 'train' / 'filenames.pickle'))
        per_epoch = n_train // state['config']['TRAIN']['BATCH_SIZE']
        if kind == 'gan':
            assert state['gen_iterations'] == MAX_EPOCH * per_epoch
        c[kind] = {'dir': straight, 'per_epoch': per_epoch}
    return c


def _records(run):
    lines = (run / 'metrics.jsonl').read_text().splitlines()
    return [{k: v for k, v in json.loads(l).items() if k not in TIMING_KEYS} for l in lines]


def _assert_tensors_equal(a, b, where):
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f'{where}: keys {list(a)} != {list(b)}'
        for k in a:
            _assert_tensors_equal(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_tensors_equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {a!r} != {b!r}'


def assert_same_run(straight, resumed):
    """Both run folders hold the same checkpoints (every tensor exact), pictures (bytes) and metrics."""
    for sub in ('Model', 'Image'):
        names = sorted(p.name for p in (straight / sub).iterdir())
        assert sorted(p.name for p in (resumed / sub).iterdir()) == names, sub
    for p in sorted((straight / 'Model').glob('*.pth')):
        _assert_tensors_equal(torch.load(p, weights_only=True),
                              torch.load(resumed / 'Model' / p.name, weights_only=True), p.name)
    a = load_train_state(straight / 'Model' / 'train_state.pt')
    b = load_train_state(resumed / 'Model' / 'train_state.pt')
    skip = {'config', 'rng', 'rng_ranks'}  # the config differs in TRAIN.RESUME / MAX_STEPS; RNG: see below
    assert set(a) == set(b)
    for k in sorted(set(a) - skip):
        _assert_tensors_equal(a[k], b[k], f'train_state.{k}')
    _assert_tensors_equal(a['rng']['torch'], b['rng']['torch'], 'train_state.rng.torch')
    for p in sorted((straight / 'Image').iterdir()):
        assert (resumed / 'Image' / p.name).read_bytes() == p.read_bytes(), p.name
    assert _records(resumed) == _records(straight)


def _stop_points(n):
    """Stop positions (iterations done) from the iterations per epoch ``n`` (at least 3)."""
    return {
        'first batch of the run': 1,
        'first batch of an epoch': n + 1,
        'middle of an epoch': n + n // 2,
        'last batch of a snapshot epoch': n,
        'last batch of a non-snapshot epoch': 2 * n,
        'last batch of the run': MAX_EPOCH * n,
    }


POINTS = list(_stop_points(3))


@pytest.mark.slow
@pytest.mark.parametrize('kind', list(TRAINERS))
@pytest.mark.parametrize('point', POINTS)
def test_resume_at_every_boundary_equals_the_straight_run(ctx, kind, point, tmp_path):
    entry, args = TRAINERS[kind]
    n = ctx[kind]['per_epoch']
    assert n >= 3, 'the tiny toy split must give at least 3 iterations per epoch'
    k = _stop_points(n)[point]
    out = tmp_path / 'run'
    assert entry(args(ctx, out, f'TRAIN.MAX_STEPS={k}')) == 0
    state = load_train_state(out / 'Model' / 'train_state.pt')
    assert state['epoch'] * n + state['step'] == k
    if kind == 'gan':
        assert state['gen_iterations'] == k
    # a stop in an epoch's last step finishes that epoch's end first: the checkpoint is at the boundary
    assert (state['epoch'], state['step']) == ((k // n, 0) if k % n == 0 else (k // n, k % n))
    assert entry(args(ctx, out) + ['--resume', str(out)]) == 0
    assert_same_run(ctx[kind]['dir'], out)


@pytest.mark.slow
@pytest.mark.parametrize('kind', list(TRAINERS))
def test_sigint_in_an_epochs_last_step_resumes_exactly(ctx, kind, tmp_path, monkeypatch):
    """Ctrl-C (SIGINT) during the last step of an epoch: the step and the epoch's end finish, the checkpoint
    is written, and the resumed run equals the straight one."""
    entry, args = TRAINERS[kind]
    n = ctx[kind]['per_epoch']
    if kind == 'gan':
        from attngan.gan import GANStep as mod
        name = '__call__'
    else:
        import attngan.damsm as mod
        name = 'damsm_losses'
    real, calls = getattr(mod, name), []

    def counting(*a, **kw):
        if torch.is_grad_enabled():  # training steps only (DAMSM validation computes the losses too)
            calls.append(1)
            if len(calls) == 2 * n:  # inside the last step of epoch 1
                os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **kw)
    monkeypatch.setattr(mod, name, counting)
    out = tmp_path / 'run'
    assert entry(args(ctx, out)) == 0
    monkeypatch.setattr(mod, name, real)
    state = load_train_state(out / 'Model' / 'train_state.pt')
    assert (state['epoch'], state['step']) == (2, 0)
    assert entry(args(ctx, out) + ['--resume', str(out)]) == 0
    assert_same_run(ctx[kind]['dir'], out)


@pytest.mark.parametrize('kind', list(TRAINERS))
def test_resume_of_a_finished_run_changes_nothing(ctx, kind, tmp_path):
    """Resuming the straight run after its end trains nothing more and leaves its results as they were."""
    import shutil
    entry, args = TRAINERS[kind]
    out = tmp_path / 'run'
    shutil.copytree(ctx[kind]['dir'], out)
    assert entry(args(ctx, out) + ['--resume', str(out)]) == 0
    assert_same_run(ctx[kind]['dir'], out)
    assert 'the run is complete' in (out / 'log.txt').read_text()


@pytest.mark.parametrize('kind', list(TRAINERS))
def test_resume_refuses_a_key_that_defines_the_run(ctx, kind, tmp_path, capsys):
    """A resume whose config changes the run (here the batch size or the pooling) is one error naming the
    key and both values; the run folder is left exactly as it was (config.yaml, checkpoint, metrics)."""
    entry, args = TRAINERS[kind]
    n = ctx[kind]['per_epoch']
    out = tmp_path / 'run'
    assert entry(args(ctx, out, f'TRAIN.MAX_STEPS={n + 1}')) == 0
    before = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    saved = load_train_state(out / 'Model' / 'train_state.pt')['config']
    batch = saved['TRAIN']['BATCH_SIZE']
    for change, key, value in [(f'TRAIN.BATCH_SIZE={batch + 1}', 'TRAIN.BATCH_SIZE', batch + 1),
                               ('TEXT.SENT_POOL=last', 'TEXT.SENT_POOL', 'last')]:
        assert saved[key.split('.')[0]][key.split('.')[1]] != value
        capsys.readouterr()
        assert entry(args(ctx, out, change) + ['--resume', str(out)]) == 2
        err = capsys.readouterr().err
        assert f'{key}={value!r}' in err and 'Traceback' not in err
        assert len(err.strip().splitlines()) == 1
    after = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    assert set(after) == set(before)
    for p, data in before.items():
        if p.name != 'log.txt':  # the refused start may log, nothing else changes
            assert after[p] == data, p


@pytest.mark.parametrize('kind', list(TRAINERS))
def test_resume_with_the_runs_own_config_and_changed_lengths_and_lrs(ctx, kind, tmp_path):
    """Without --cfg, --resume trains with the run's saved config; MAX_EPOCH and the learning rates may
    change on resume: each change is logged, takes effect, and lands in config.yaml."""
    entry, args = TRAINERS[kind]
    n = ctx[kind]['per_epoch']
    out = tmp_path / 'run'
    assert entry(args(ctx, out, f'TRAIN.MAX_STEPS={n + 1}')) == 0
    saved = load_train_state(out / 'Model' / 'train_state.pt')['config']
    lr_key = 'GENERATOR_LR' if kind == 'gan' else 'ENCODER_LR'
    new_lr = saved['TRAIN'][lr_key] / 2
    more = MAX_EPOCH + 1
    resume = ['--gpu', '-1', '--resume', str(out), '--set', 'TRAIN.MAX_STEPS=0', '--set', f'TRAIN.MAX_EPOCH={more}',
              '--set', f'TRAIN.{lr_key}={new_lr}']
    assert entry(resume) == 0
    log = (out / 'log.txt').read_text()
    assert f'TRAIN.MAX_EPOCH: {MAX_EPOCH} -> {more} (changed on resume)' in log
    assert f'TRAIN.{lr_key}: {saved["TRAIN"][lr_key]!r} -> {new_lr!r} (changed on resume)' in log
    state = load_train_state(out / 'Model' / 'train_state.pt')
    assert state['epoch'] == more and state['config']['TRAIN']['MAX_EPOCH'] == more
    if kind == 'gan':
        assert state['optimizerG']['param_groups'][0]['lr'] == new_lr
        assert state['optimizersD'][0]['param_groups'][0]['lr'] == saved['TRAIN']['DISCRIMINATOR_LR']
    else:  # the decayed lr is rescaled by new / old ENCODER_LR: straight run's lr after `more` epochs, halved
        decay = saved['DAMSM']['LR_DECAY']
        expected = saved['TRAIN']['ENCODER_LR'] * decay ** more / 2
        assert state['lr'] == pytest.approx(expected, rel=1e-12)
    assert f'MAX_EPOCH: {more}' in (out / 'config.yaml').read_text()
    records = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    epochs = [r['epoch'] for r in records if r['kind'].endswith('_epoch')]
    assert epochs == list(range(more))


@pytest.mark.parametrize('kind', list(TRAINERS))
def test_metrics_logged_after_the_checkpoint_are_not_duplicated(ctx, kind, tmp_path):
    """A crash between two checkpoints leaves records the resumed run logs again: they are dropped first
    (also a line cut in the middle by the crash), so the file equals the straight run's."""
    import shutil
    entry, args = TRAINERS[kind]
    n = ctx[kind]['per_epoch']
    out = tmp_path / 'run'
    assert entry(args(ctx, out, f'TRAIN.MAX_STEPS={n}')) == 0  # checkpoint at the end of epoch 0
    shutil.copy(out / 'Model' / 'train_state.pt', tmp_path / 'boundary.pt')
    assert entry(args(ctx, out, f'TRAIN.MAX_STEPS={n + n // 2 + 1}') + ['--resume', str(out)]) == 0
    # the crash: the later checkpoint is lost, the records logged after the boundary remain
    shutil.copy(tmp_path / 'boundary.pt', out / 'Model' / 'train_state.pt')
    with open(out / 'metrics.jsonl', 'a') as f:
        f.write('{"kind": "gan_st')
    key = 'iteration' if kind == 'gan' else 'step'
    up_to_boundary = [r for r in _records(ctx[kind]['dir']) if r[key] <= n]
    assert len((out / 'metrics.jsonl').read_text().splitlines()) > len(up_to_boundary) + 1
    assert entry(args(ctx, out) + ['--resume', str(out)]) == 0
    assert _records(out) == _records(ctx[kind]['dir'])


def test_stale_temporaries_are_removed_and_a_failed_start_leaves_no_run_folder(ctx, tmp_path, capsys):
    import shutil
    out = tmp_path / 'run'
    shutil.copytree(ctx['damsm']['dir'], out)
    stale = [out / 'Model' / '.train_state.pt.x1y2.tmp', out / 'Image' / '.val_attention_latest.png.ab.tmp']
    for p in stale:
        p.write_bytes(b'half a file')
    assert pretrain_damsm(_damsm_args(ctx['toy'], out) + ['--resume', str(out)]) == 0
    assert not any(p.exists() for p in stale)
    assert 'removed 2 temporary file(s)' in (out / 'log.txt').read_text()
    # a new run whose start fails (no text encoder for the GAN) leaves nothing behind
    fresh = tmp_path / 'fresh'
    assert main(_gan_args(ctx['toy'], fresh, tmp_path / 'missing' / 'text_encoder0.pth')) == 2
    assert 'text_encoder0.pth' in capsys.readouterr().err
    assert not fresh.exists()
