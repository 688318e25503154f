"""AttnGAN training and sampling through main.py's entry point on a tiny toy dataset."""
import json

import pytest
import torch

from attngan.build import build_generator
from attngan.cli import main, pretrain_damsm
from attngan.config import load_config
from attngan.engine.checkpoint import load_train_state
from attngan.engine.loop import keeps_pictures
from attngan.gan import generator_epoch
from conftest import TINY_DAMSM, TINY_GAN


@pytest.fixture(scope='module')
def encoders(tiny_toy, tmp_path_factory):
    out = tmp_path_factory.mktemp('damsm') / 'run'
    args = ['--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1', '--data_dir', str(tiny_toy), '--manualSeed', '1',
            '--output_dir', str(out)]
    for kv in TINY_DAMSM + ['TRAIN.MAX_EPOCH=1']:
        args += ['--set', kv]
    assert pretrain_damsm(args) == 0
    return out / 'Model' / 'text_encoder0.pth'


def _gan_args(toy, out, net_e, cfg='cfg/toy_attn2.yml', extra=()):
    args = ['--cfg', cfg, '--gpu', '-1', '--data_dir', str(toy), '--manualSeed', '5', '--output_dir', str(out)]
    for kv in TINY_GAN + [f'TRAIN.NET_E={net_e}'] + list(extra):
        args += ['--set', kv]
    return args


@pytest.fixture(scope='module')
def gan_run(tiny_toy, encoders, tmp_path_factory):
    out = tmp_path_factory.mktemp('gan') / 'run'
    assert main(_gan_args(tiny_toy, out, encoders)) == 0
    return out


def test_snapshots_and_pictures(gan_run):
    model = gan_run / 'Model'
    # the original saves at epoch % SNAPSHOT_INTERVAL == 0 and once more at the end, named MAX_EPOCH
    assert sorted(p.name for p in model.glob('netG_epoch_*.pth')) == \
        ['netG_epoch_0.pth', 'netG_epoch_1.pth', 'netG_epoch_2.pth']
    assert (model / 'netD0.pth').is_file() and (model / 'netD1.pth').is_file()
    image = gan_run / 'Image'
    images = {p.name for p in image.iterdir()}
    assert 'G_average_epoch1_grid.png' in images and 'G_average_epoch1_0.png' in images
    assert 'D_average_epoch1.png' in images and 'G_average_iter5_grid.png' in images
    for name in ('G_average_{}_grid.png', 'G_average_{}_0.png', 'D_average_{}.png'):  # the last epoch's, twice
        assert (image / name.format('latest')).read_bytes() == (image / name.format('epoch1')).read_bytes()
    records = [json.loads(l) for l in (gan_run / 'metrics.jsonl').read_text().splitlines()]
    epochs = [r for r in records if r['kind'] == 'gan_epoch']
    assert [r['epoch'] for r in epochs] == [0, 1]
    assert all(r['errG_total'] == r['errG_total'] for r in epochs)  # not NaN


def test_per_epoch_pictures_are_kept_at_snapshot_epochs_and_the_last():
    cfg = load_config('cfg/toy_attn2.yml')
    assert (cfg.TRAIN.SNAPSHOT_INTERVAL, cfg.TRAIN.MAX_EPOCH) == (5, 15)
    assert [e for e in range(15) if keeps_pictures(e, cfg)] == [0, 5, 10, 14]


def test_snapshot_loads_strictly_into_fresh_generator(gan_run):
    cfg = load_config('cfg/toy_attn2.yml', TINY_GAN)
    netG = build_generator(cfg)
    sd = torch.load(gan_run / 'Model' / 'netG_epoch_2.pth', weights_only=True)
    netG.load_state_dict(sd, strict=True)
    assert generator_epoch('x/netG_epoch_2.pth') == 2


def test_resume_equals_straight_run(gan_run, tiny_toy, encoders, tmp_path):
    out = tmp_path / 'run'
    # 36 images / batch 4 = 9 steps per epoch; stop at step 13 (inside epoch 1), then resume
    assert main(_gan_args(tiny_toy, out, encoders, extra=['TRAIN.MAX_STEPS=13'])) == 0
    state = load_train_state(out / 'Model' / 'train_state.pt')
    assert (state['epoch'], state['step'], state['gen_iterations']) == (1, 4, 13)
    resume = _gan_args(tiny_toy, out, encoders) + ['--resume', str(out / 'Model' / 'train_state.pt')]
    assert main(resume) == 0
    a = torch.load(gan_run / 'Model' / 'netG_epoch_2.pth', weights_only=True)
    b = torch.load(out / 'Model' / 'netG_epoch_2.pth', weights_only=True)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


def test_net_g_resume_as_original(gan_run, tiny_toy, encoders, tmp_path):
    out = tmp_path / 'run'
    net_g = gan_run / 'Model' / 'netG_epoch_1.pth'
    assert main(_gan_args(tiny_toy, out, encoders, extra=[f'TRAIN.NET_G={net_g}'])) == 0
    assert not (out / 'Model' / 'netG_epoch_0.pth').exists()
    assert (out / 'Model' / 'netG_epoch_2.pth').is_file()


def test_sampling_test_split_in_original_layout(gan_run, tiny_toy, encoders):
    net_g = gan_run / 'Model' / 'netG_epoch_2.pth'
    args = _gan_args(tiny_toy, gan_run, encoders, extra=[
        'TRAIN.FLAG=false', 'B_VALIDATION=true', f'TRAIN.NET_G={net_g}', 'SAMPLE.NUM_PER_IMAGE=2'])
    assert main(args) == 0
    single = gan_run / 'Model' / 'netG_epoch_2' / 'valid' / 'single'
    files = sorted(single.rglob('*.png'))
    assert len(files) == 12 * 2  # 12 test images, 2 captions each
    assert any(f.name.endswith('_s-1.png') for f in files)
    first = {f.read_bytes() for f in files}
    assert main(args) == 0  # same seed: same images
    assert {f.read_bytes() for f in sorted(single.rglob('*.png'))} == first


def test_custom_captions_and_unknown_words(gan_run, tiny_toy, encoders, capsys, caplog):
    net_g = gan_run / 'Model' / 'netG_epoch_2.pth'
    args = _gan_args(tiny_toy, gan_run, encoders, extra=[f'TRAIN.NET_G={net_g}'])
    root = gan_run / 'Model' / 'netG_epoch_2' / 'captions'
    caption = 'this bird has a red crown and blue wings'
    assert main(args + ['--caption', caption]) == 0
    first = root / '1'
    assert (first / '0_s_0_g0.png').is_file() and (first / '0_s_0_g1.png').is_file()
    assert (first / '0_s_0_a0.png').is_file()
    assert (first / 'captions.txt').read_text() == f'0: {caption}\n'
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    # a second run gets its own folder: the first run's pictures stay as they were
    caplog.clear()
    cfg = load_config('cfg/toy_attn2.yml', TINY_GAN)
    words = cfg.TEXT.WORDS_NUM
    long_caption = ' '.join(['red'] * (3 * words))
    exact_caption = ' '.join(['red'] * words)
    assert main(args + ['--set', 'SAMPLE.NUM_PER_IMAGE=2', '--caption', caption, '--caption', long_caption,
                        '--caption', exact_caption]) == 0
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    second = root / '2'
    names = {p.name for p in second.iterdir()}
    stages = len([n for n in before if n.startswith('0_s_0_g')])
    maps = len([n for n in before if n.startswith('0_s_0_a')])
    expected = {'captions.txt'} | {f'{i}_s_{c}_{kind}{k}.png' for i in range(2) for c in range(3)
                                   for kind, n in (('g', stages), ('a', maps)) for k in range(n)}
    assert names == expected  # SAMPLE.NUM_PER_IMAGE images per caption, every stage and attention picture
    assert f'wrote {len(expected)} files under {second}' in caplog.text  # every file counted
    assert f'has {3 * words} known words; cut to the first TEXT.WORDS_NUM={words}' in caplog.text
    from PIL import Image
    # the long caption's picture is as wide as one of WORDS_NUM words
    assert Image.open(second / '0_s_1_a0.png').size == Image.open(second / '0_s_2_a0.png').size
    assert main(args + ['--caption', 'zzz qqq']) == 2
    assert "'zzz qqq'" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == ['1', '2']  # a failed run leaves no folder behind
    # example_filenames.txt, as the original's gen_example
    assert main(args + ['--set', 'TRAIN.FLAG=false']) == 0
    assert list((gan_run / 'Model' / 'netG_epoch_2').glob('*/0_s_*_a0.png'))


@pytest.mark.parametrize('cfg_file', ['cfg/toy_dualattn.yml', 'cfg/toy_dualattn_paper.yml'])
def test_dualattn_variants_train_through_the_trainer(cfg_file, tiny_toy, encoders, tmp_path):
    """A few iterations of each DualAttnGAN variant through main.py: finite losses, pictures drawn
    (the fork's generator returns no attention maps: its pictures have no attention rows)."""
    out = tmp_path / 'run'
    assert main(_gan_args(tiny_toy, out, encoders, cfg=cfg_file,
                          extra=['TRAIN.MAX_STEPS=3', 'TRAIN.SAMPLE_INTERVAL=2'])) == 0
    records = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    steps = [r for r in records if r['kind'] == 'gan_step']
    assert steps and all(abs(r['errG_total']) < float('inf') and r['errG_total'] == r['errG_total'] for r in steps)
    assert (out / 'Image' / 'G_average_iter2_grid.png').is_file()
    assert (out / 'Model' / 'train_state.pt').is_file()
