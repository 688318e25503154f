#!/usr/bin/env python
"""Training-loader throughput: images/s of the faithful path and of the pre-cropped cache.

Setting of the bird config: 3 branches (64/128/256 px), bounding-box crop, real CUB JPEGs from
../shared/data/birds filtered to the stems whose image is present, batch 20, 2 workers. Each path is timed
over whole epochs after one warm-up epoch (workers started, files in the page cache); the runs alternate
between the two paths and the median is printed.

  python bench/data_loader.py [--data-dir DIR] [--workers 2] [--batch-size 20] [--epochs 3] [--repeats 3]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import torch

from attngan.data import TextDataset, load_text_data


def epoch_rate(loader, epochs: int) -> float:
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for imgs, *_ in loader:
            n += imgs[0].shape[0]
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-dir', default=str(REPO.parent / 'shared' / 'data' / 'birds'))
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--batch-size', type=int, default=20)
    p.add_argument('--epochs', type=int, default=3, help='epochs per timed run')
    p.add_argument('--repeats', type=int, default=3, help='timed runs per path (median reported)')
    p.add_argument('--cache-dir', default='', help='where to build the cache (default: a temporary folder)')
    args = p.parse_args(argv)
    torch.set_num_threads(1)   # the main process only collates; the workers do the work

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        print(f'error: {data_dir} does not exist (pass --data-dir)', file=sys.stderr)
        return 2
    td = load_text_data(data_dir, 10, write=False)
    common = dict(base_size=64, branch_num=3, words_num=18, captions_per_image=10, filenames='existing',
                  text_data=td)
    faithful = TextDataset(data_dir, 'train', **common)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        t0 = time.perf_counter()
        cached = TextDataset(data_dir, 'train', cache=True, cache_dir=cache_dir, cache_workers=args.workers,
                             **common)
        build_s = time.perf_counter() - t0
        loaders = {}
        for name, ds in (('faithful', faithful), ('cache', cached)):
            loaders[name] = torch.utils.data.DataLoader(
                ds, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                persistent_workers=args.workers > 0)
            epoch_rate(loaders[name], 1)   # warm-up
        rates = {name: [] for name in loaders}
        for _ in range(args.repeats):
            for name, dl in loaders.items():
                rates[name].append(epoch_rate(dl, args.epochs))
        print(f'{len(faithful)} real CUB images (train split, images present), 3 branches up to 256 px, '
              f'batch {args.batch_size}, {args.workers} workers, torch {torch.__version__}')
        print(f'cache build: {build_s:.1f} s, {cached.cache.nbytes / 2**20:.1f} MiB '
              f'({cached.cache.nbytes / len(cached) / 1024:.0f} KiB per image)')
        med = {name: statistics.median(r) for name, r in rates.items()}
        for name, r in rates.items():
            print(f'{name:9s} {med[name]:7.1f} images/s  (runs: {", ".join(f"{x:.1f}" for x in r)})')
        print(f'speed-up of the cache: {med["cache"] / med["faithful"]:.2f}x')
        del loaders
    return 0


if __name__ == '__main__':
    sys.exit(main())
