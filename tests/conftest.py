"""Shared test fixtures: thread count, the optional ../shared folders, tiny toy data and configs.

The package is imported as installed (``make test`` runs ``pip install -e .`` first).
"""
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# The golden fixtures were made with 2 threads; ATTNGAN_TEST_THREADS=1 checks that the tolerances hold
# with another reduction order too.
torch.set_num_threads(int(os.environ.get('ATTNGAN_TEST_THREADS', '2')))

#: ../shared beside the checkout (CI has it, users do not). ATTNGAN_SHARED moves the whole folder;
#: ATTNGAN_GOLDEN / ATTNGAN_BIRDS / ATTNGAN_COCO point one part elsewhere (another fixture set, other
#: real classes), so that the suite can be run against inputs it was not written on.
SHARED = Path(os.environ.get('ATTNGAN_SHARED', REPO_ROOT.parent / 'shared'))
GOLDEN = Path(os.environ.get('ATTNGAN_GOLDEN', SHARED / 'golden'))
BIRDS = Path(os.environ.get('ATTNGAN_BIRDS', SHARED / 'data' / 'birds'))
COCO = Path(os.environ.get('ATTNGAN_COCO', SHARED / 'data' / 'coco'))

#: Under CI=true the shared folders are part of the test input: their absence fails instead of skipping.
IN_CI = os.environ.get('CI', '').lower() == 'true'


def require_shared(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test, or fail it under ``CI=true``."""
    if not path.exists():
        if IN_CI:
            pytest.fail(f'{path} is absent, and CI=true: the shared fixtures must be present in CI')
        pytest.skip(f'{path} is absent (it exists only beside this repository in its CI)')
    return path


@pytest.fixture(scope='session')
def golden_dir() -> Path:
    """../shared/golden: fixtures made by running the original AttnGAN and the fork."""
    return require_shared(GOLDEN)


@pytest.fixture(scope='session')
def shared_birds() -> Path:
    """../shared/data/birds: real CUB-200-2011 metadata, captions and JPEGs of some classes."""
    return require_shared(BIRDS)


@pytest.fixture(scope='session')
def shared_coco() -> Path:
    """../shared/data/coco: COCO split lists and caption annotation samples."""
    return require_shared(COCO)


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
