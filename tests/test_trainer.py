"""The trainer with a task of its own: a third model is one Task subclass and a config naming it (TRAIN.TASK),
and it gets the loop, logging, checkpoints and the exact resume without code of its own for them."""
import json

import pytest
import torch

from attngan.cli import pretrain_damsm
from attngan.config import ConfigError
from attngan.engine.checkpoint import load_train_state
from attngan.engine.trainer import TASKS, Task, task_class


class Points(torch.utils.data.Dataset):
    """x -> y = x . w_true + noise, a fixed set (seeded), for a least-squares task."""

    def __init__(self, n: int, dim: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.arange(1.0, dim + 1) + 0.01 * torch.randn(n, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class RegressionTask(Task):
    """Least squares with SGD: the smallest task that has weights, an optimizer, random draws and snapshots."""

    kind, title, position_key, counter_key = 'regression', 'REG', 'step', 'iteration'
    N, DIM = 24, 4

    def build_dataset(self):
        return Points(self.N, self.DIM)

    def build(self, dataset, loader, resuming):
        self.net = torch.nn.Linear(self.DIM, 1)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=self.cfg.TRAIN.ENCODER_LR)
        return 0

    def load_state(self, state, epoch, step):
        self.net.load_state_dict(state['net'])
        self.opt.load_state_dict(state['opt'])

    def state_dict(self):
        return {'net': self.net.state_dict(), 'opt': self.opt.state_dict()}

    def step(self, batch):
        x, y = batch
        x = x + 0.1 * torch.randn_like(x)  # a random draw per step: the resume must restore the RNG
        loss = torch.nn.functional.mse_loss(self.net(x).squeeze(1), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {'mse': loss.detach()}

    def is_log_step(self, step, iteration, n_batches):
        return True

    def end_epoch(self, epoch, n_steps, losses):
        torch.save(self.net.state_dict(), self.run.model_dir / f'net{epoch}.pth')
        return {'mse': float(losses['mse'])}


TASK = f'{__name__}:RegressionTask'


def _args(toy, out, *sets):
    args = ['--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1', '--data_dir', str(toy), '--manualSeed', '7',
            '--output_dir', str(out)]
    for kv in (f'TRAIN.TASK={TASK}', 'TRAIN.BATCH_SIZE=4', 'TRAIN.MAX_EPOCH=3', 'TRAIN.ENCODER_LR=0.05') + sets:
        args += ['--set', kv]
    return args


def test_a_task_of_its_own_trains_logs_and_resumes_exactly(tiny_toy, tmp_path):
    straight = tmp_path / 'straight'
    assert pretrain_damsm(_args(tiny_toy, straight)) == 0
    records = [json.loads(l) for l in (straight / 'metrics.jsonl').read_text().splitlines()]
    per_epoch = RegressionTask.N // 4
    steps = [r for r in records if r['kind'] == 'regression_step']
    assert [r['step'] for r in steps] == list(range(1, 3 * per_epoch + 1))
    epochs = [r for r in records if r['kind'] == 'regression_epoch']
    assert [r['epoch'] for r in epochs] == [0, 1, 2]
    mean = [sum(r['mse'] for r in steps if r['epoch'] == e) / per_epoch for e in range(3)]
    assert mean[2] < mean[0] / 2  # it learns
    state = load_train_state(straight / 'Model' / 'train_state.pt')
    assert (state['kind'], state['epoch'], state['step'], state['iteration']) == ('regression', 3, 0, 3 * per_epoch)
    stopped = tmp_path / 'stopped'
    assert pretrain_damsm(_args(tiny_toy, stopped, f'TRAIN.MAX_STEPS={per_epoch + 2}')) == 0
    assert pretrain_damsm(_args(tiny_toy, stopped) + ['--resume', str(stopped)]) == 0
    for e in range(3):
        a = torch.load(straight / 'Model' / f'net{e}.pth', weights_only=True)
        b = torch.load(stopped / 'Model' / f'net{e}.pth', weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ('time_s', 'images_per_s')} for r in rs]  # noqa: E731
    again = [json.loads(l) for l in (stopped / 'metrics.jsonl').read_text().splitlines()]
    assert strip(again) == strip(records)


def test_task_names():
    assert task_class('gan').kind == 'gan' and task_class('damsm').kind == 'damsm'
    assert set(TASKS) == {'gan', 'damsm'}
    assert task_class(TASK) is RegressionTask
    for bad, match in [('dfgan', 'expected one of'), ('no_such_module:Task', "no module 'no_such_module'"),
                       (f'{__name__}:Points', 'no Task subclass')]:
        with pytest.raises(ConfigError, match=match):
            task_class(bad)


def test_tensorboard_scalars_and_a_clear_warning_without_the_package(tiny_toy, tmp_path, monkeypatch, caplog):
    """TRAIN.TENSORBOARD mirrors the logged scalars into TensorBoard event files (the optional extra
    ``pip install -e .[tensorboard]``); without the package the run goes on with metrics.jsonl and says so."""
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / 'tb'
    assert pretrain_damsm(_args(tiny_toy, out, 'TRAIN.TENSORBOARD=true', 'TRAIN.MAX_EPOCH=1')) == 0
    acc = EventAccumulator(str(out / 'tensorboard'))
    acc.Reload()
    steps = [e.step for e in acc.Scalars('mse')]
    n_records = sum(1 for l in (out / 'metrics.jsonl').read_text().splitlines() if 'mse' in l)
    assert len(steps) == n_records and steps[:2] == [1, 2]

    import builtins
    real_import = builtins.__import__

    def no_tensorboard(name, *a, **k):
        if name.startswith('torch.utils.tensorboard'):
            raise ImportError('No module named tensorboard')
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', no_tensorboard)
    out = tmp_path / 'no_tb'
    assert pretrain_damsm(_args(tiny_toy, out, 'TRAIN.TENSORBOARD=true', 'TRAIN.MAX_EPOCH=1')) == 0
    assert 'tensorboard package is not installed' in (out / 'log.txt').read_text()
    assert (out / 'metrics.jsonl').read_text() and not (out / 'tensorboard').exists()
