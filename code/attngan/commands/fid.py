"""Fréchet Inception Distance between two image folders or .npz statistics.

    python eval/fid.py GEN_DIR REAL_DIR [--mode standard|legacy] [--real-prep none|cub-bbox|resize256]
    python eval/fid.py REAL_DIR --save-stats real.npz        # cache one folder's statistics
    python eval/fid.py GEN_DIR real.npz

Folders are searched recursively for images; a .npz holds ``mu`` and ``sigma`` (pytorch-fid's
format; ours adds ``n`` and ``protocol``). The output states the protocol: network, weight
file, resizing, and the number of images on each side.

``--mode standard`` (default): TTUR / pytorch-fid (FID Inception of the TF graph 2015-12-05,
weights ``pt_inception-2015-12-05-6726825d.pth``). ``--mode legacy``: torchvision's ImageNet
Inception-v3 as in the DM-GAN / DF-GAN code (the numbers of the AttnGAN-lineage tables).
Weights are never downloaded: they are looked up in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) or given with ``--weights``.

``--real-prep`` prepares the real folder (PATH2; the only PATH with ``--save-stats``):
``cub-bbox`` crops CUB images to AttnGAN's training box then resizes them to 256x256;
``resize256`` resizes whole images to 256x256 (as the DualAttnGAN student project did).
With two PATHs, ``--save-stats`` writes PATH2's statistics (reuse them as PATH2 next time).

Exit status: 0 with a FID, 1 when it cannot answer (bad input, missing weights).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from attngan.metrics import fid as F
from attngan.errors import AttnGANError, MissingFileError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('paths', nargs='+', metavar='PATH',
                   help='generated folder, then real folder or .npz (one PATH with --save-stats)')
    p.add_argument('--mode', choices=F.MODES, default='standard')
    p.add_argument('--weights', default=None,
                   help='weight file (default: looked up in the torch hub checkpoint cache)')
    p.add_argument('--batch-size', type=int, default=50)
    p.add_argument('--device', default=None, help='cuda, cuda:1, cpu (default: cuda if available)')
    p.add_argument('--workers', type=int, default=None,
                   help='image-decoding processes (default: min(8, CPUs))')
    p.add_argument('--save-stats', metavar='OUT.npz', default=None)
    p.add_argument('--real-prep', choices=F.REAL_PREPS, default='none')
    p.add_argument('--cub-dir', default=None,
                   help='CUB_200_2011 folder for --real-prep cub-bbox (default: found above PATH)')
    p.add_argument('--exact', action='store_true',
                   help="pytorch-fid's exact CPU arithmetic (NCHW instead of channels_last; slower)")
    p.add_argument('--no-progress', action='store_true')
    return p


def _describe_sizes(sizes: dict) -> str:
    if not sizes:
        return ''
    items = sorted(sizes.items(), key=lambda kv: -kv[1])
    if len(items) == 1:
        (h, w), _ = items[0]
        return f', all {w}x{h}'
    head = ', '.join(f'{w}x{h} x{n}' for (h, w), n in items[:4])
    return f', mixed sizes ({head}{", ..." if len(items) > 4 else ""}; each resized alone)'


def _describe(label: str, stats: F.FIDStatistics, prep, mode: str) -> str:
    if stats.sizes:
        sizes = _describe_sizes(stats.sizes) if mode == 'standard' else ', each resized to 299x299 by PIL'
        line = f'{label} {stats.source}: {stats.n} images{sizes}'
        if prep is not None:
            line += f'; {prep.describe()}'
        if stats.skipped:
            ex = ', '.join(p.name for p in stats.skipped[:3])
            line += f'; skipped {len(stats.skipped)} non-image files ({ex}{", ..." if len(stats.skipped) > 3 else ""})'
        return line
    n = f'{stats.n} images' if stats.n is not None else 'image count not recorded'
    proto = stats.protocol or 'protocol not recorded (e.g. a pytorch-fid .npz)'
    return f'{label} {stats.source}: precomputed statistics ({n}; {proto})'


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = lambda msg, cat, *a, **k: print(f'warning: {msg}', file=sys.stderr)
    if len(args.paths) > 2 or (len(args.paths) == 1 and not args.save_stats):
        print('error: give two PATHs (or one PATH with --save-stats OUT.npz)', file=sys.stderr)
        return 1
    try:
        for path in args.paths:
            if not Path(path).expanduser().exists():
                raise MissingFileError(f'{path}: no such folder or .npz file')
        extractor = F.FeatureExtractor(args.mode, args.weights, device=args.device,
                                       batch_size=args.batch_size, workers=args.workers,
                                       channels_last=False if args.exact else None)
        real = args.paths[-1]
        prep = F.make_real_prep(args.real_prep, real, args.cub_dir)
        print(f'FID protocol: {extractor.describe()}')
        print(f'Device: {extractor.device}; batch size {args.batch_size}'
              f'{"; exact pytorch-fid arithmetic" if args.exact else ""}')
        t0 = time.time()
        stats = []
        for i, path in enumerate(args.paths):
            p = prep if i == len(args.paths) - 1 else None
            s = extractor.statistics(path, p, progress=not args.no_progress and sys.stderr.isatty())
            print(_describe(f'PATH{i + 1}', s, p if s.sizes else None, args.mode))
            stats.append(s)
        if args.save_stats:
            F.save_statistics(args.save_stats, stats[-1])
            print(f'saved the statistics of {stats[-1].source} to {args.save_stats}')
        if len(stats) == 2:
            value = F.frechet_distance(stats[0].mu, stats[0].sigma, stats[1].mu, stats[1].sigma)
            print(f'FID ({args.mode}): {value:.4f}   [{time.time() - t0:.1f} s]')
    except AttnGANError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
