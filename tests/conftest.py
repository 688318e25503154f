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
