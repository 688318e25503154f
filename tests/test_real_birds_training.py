"""Short DAMSM and AttnGAN runs on the real CUB captions and images in ../shared/data/birds.

The shared folder holds the JPEGs of classes 001-005 only and is read-only, so the test builds a
DATA_DIR beside it: symlinks to the real images, boxes and captions, and split lists filtered to the
stems whose image exists (the loader writes captions.pickle there). Skipped when the folder is absent.
"""
import json
import pickle

import pytest

from attngan.cli import main, pretrain_damsm

TINY = ['TRAIN.BATCH_SIZE=6', 'TREE.BASE_SIZE=64', 'DAMSM.IMAGE_SIZE=80', 'TEXT.EMBEDDING_DIM=16',
        'DAMSM.INCEPTION_WEIGHTS=random', 'WORKERS=0']


@pytest.fixture(scope='module')
def filtered_birds(shared_birds, tmp_path_factory):
    root = tmp_path_factory.mktemp('birds') / 'birds'
    root.mkdir()
    for name in ('CUB_200_2011', 'text'):
        (root / name).symlink_to(shared_birds / name, target_is_directory=True)
    images = shared_birds / 'CUB_200_2011' / 'images'
    counts = {}
    for split in ('train', 'test'):
        with open(shared_birds / split / 'filenames.pickle', 'rb') as f:
            stems = pickle.load(f, encoding='latin1')
        with open(shared_birds / split / 'class_info.pickle', 'rb') as f:
            classes = pickle.load(f, encoding='latin1')
        keep = [i for i, s in enumerate(stems) if (images / f'{s}.jpg').is_file()]
        (root / split).mkdir()
        with open(root / split / 'filenames.pickle', 'wb') as f:
            pickle.dump([stems[i] for i in keep], f)
        with open(root / split / 'class_info.pickle', 'wb') as f:
            pickle.dump([classes[i] for i in keep], f)
        counts[split] = len(keep)
    assert counts == {'train': 162, 'test': 120}
    return root


def _args(cfg, data_dir, out, extra):
    args = ['--cfg', cfg, '--gpu', '-1', '--data_dir', str(data_dir), '--manualSeed', '3', '--output_dir', str(out)]
    for kv in TINY + extra:
        args += ['--set', kv]
    return args


def test_damsm_then_gan_on_real_cub(filtered_birds, tmp_path):
    damsm = tmp_path / 'damsm'
    assert pretrain_damsm(_args('cfg/DAMSM/bird.yml', filtered_birds, damsm,
                                ['TRAIN.MAX_EPOCH=1', 'TRAIN.SNAPSHOT_INTERVAL=1'])) == 0
    records = [json.loads(line) for line in (damsm / 'metrics.jsonl').read_text().splitlines()]
    epoch = [r for r in records if r.get('kind') == 'damsm_epoch']
    assert len(epoch) == 1 and epoch[0]['val_s_loss'] == epoch[0]['val_s_loss']  # ran validation, not NaN
    assert 0.0 <= epoch[0]['r_precision_i2t'] <= 1.0
    net_e = damsm / 'Model' / 'text_encoder0.pth'
    assert net_e.is_file() and (damsm / 'Model' / 'image_encoder0.pth').is_file()
    # the vocabulary is built from the captions of the split lists (as the original): 282 real images
    with open(filtered_birds / 'captions.pickle', 'rb') as f:
        assert len(pickle.load(f)[3]) == 1013

    gan = tmp_path / 'gan'
    assert main(_args('cfg/bird_attn2.yml', filtered_birds, gan,
                      ['TREE.BRANCH_NUM=2', 'GAN.GF_DIM=8', 'GAN.DF_DIM=4', 'TRAIN.MAX_STEPS=2',
                       f'TRAIN.NET_E={net_e}'])) == 0
    assert (gan / 'Model' / 'train_state.pt').is_file()
