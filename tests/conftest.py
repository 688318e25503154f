"""Shared test fixtures: import path, thread count, and the optional ../shared folders."""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / 'code'))

# The golden fixtures were made with 2 threads; train-mode BN sums differ slightly with 1.
import torch  # noqa: E402

torch.set_num_threads(2)

SHARED = Path(os.environ.get('ATTNGAN_SHARED', REPO_ROOT.parent / 'shared'))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f'{path} is absent (it exists only beside this repository in its CI)')
    return path


@pytest.fixture(scope='session')
def golden_dir() -> Path:
    """../shared/golden: fixtures made by running the original AttnGAN and the fork."""
    return _require(SHARED / 'golden')


@pytest.fixture(scope='session')
def shared_birds() -> Path:
    """../shared/data/birds: real CUB-200-2011 metadata, captions and JPEGs of classes 001-005."""
    return _require(SHARED / 'data' / 'birds')


@pytest.fixture(scope='session')
def shared_coco() -> Path:
    """../shared/data/coco: COCO split lists and caption annotation samples."""
    return _require(SHARED / 'data' / 'coco')


@pytest.fixture(scope='session')
def tiny_toy(tmp_path_factory) -> Path:
    """A small toy dataset (8 classes, 6 train + 2 test; 6 images each, ~120x90) for trainer tests."""
    from attngan.data.toy import make_toy_dataset
    out = tmp_path_factory.mktemp('toy') / 'toy'
    make_toy_dataset(out, seed=0, n_classes=8, images_per_class=6, image_size=(120, 90), n_test_classes=2)
    return out


#: --set overrides that make the toy configs tiny enough for tests (seconds per run on 2 CPU cores)
TINY_DAMSM = ['TRAIN.BATCH_SIZE=6', 'TREE.BASE_SIZE=64', 'DAMSM.IMAGE_SIZE=80', 'TEXT.EMBEDDING_DIM=16',
              'TRAIN.MAX_EPOCH=2', 'TRAIN.SNAPSHOT_INTERVAL=1', 'TRAIN.DAMSM_UPDATE_INTERVAL=4']
TINY_GAN = ['TRAIN.BATCH_SIZE=4', 'GAN.GF_DIM=8', 'GAN.DF_DIM=4', 'GAN.Z_DIM=8', 'GAN.CONDITION_DIM=8',
            'TEXT.EMBEDDING_DIM=16', 'DAMSM.IMAGE_SIZE=80', 'TRAIN.MAX_EPOCH=2', 'TRAIN.SNAPSHOT_INTERVAL=1',
            'TRAIN.LOG_INTERVAL=2', 'TRAIN.SAMPLE_INTERVAL=5']
