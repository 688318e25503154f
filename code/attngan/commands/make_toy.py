#!/usr/bin/env python
"""Write the embedded default dataset: synthetic captioned birds in the CUB layout.

    python data/make_toy.py --out data/toy --seed 0
    python data/make_toy.py --out data/toy_small --per-class 4 --size 200x150

Does nothing when --out already holds a complete toy dataset made with the same parameters.
Replaces a toy dataset made with other parameters (or left incomplete) only with --force, and never
touches a non-empty folder that is not a toy dataset. See data/README.md and attngan/data/toy.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attngan.data.toy import MARKER, make_toy_dataset, read_marker, toy_params
from attngan.errors import AttnGANError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: expected WIDTHxHEIGHT, e.g. 500x375') from None
    return w, h


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob('*') if p.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='data/toy', help='output folder (default: %(default)s)')
    p.add_argument('--seed', type=int, default=0, help='same seed -> byte-identical dataset (default: 0)')
    p.add_argument('--classes', type=int, default=400, help='number of classes (default: %(default)s)')
    p.add_argument('--test-classes', type=int, default=None,
                   help='classes of the test split (default: a quarter, as in CUB)')
    p.add_argument('--per-class', type=int, default=3, help='images per class (default: %(default)s)')
    p.add_argument('--size', type=_size, default=(500, 375), metavar='WxH',
                   help='nominal image size; each image varies by +-jitter (default: 500x375, like CUB)')
    p.add_argument('--jitter', type=float, default=0.15, help='image size variation (default: %(default)s)')
    p.add_argument('--quality', type=int, default=90, help='JPEG quality (default: %(default)s)')
    p.add_argument('--force', action='store_true',
                   help='replace a toy dataset made with other parameters (or regenerate an identical one)')
    p.add_argument('-q', '--quiet', action='store_true', help='print only the summary line')
    args = p.parse_args(argv)

    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    try:
        params = toy_params(args.seed, args.classes, args.per_class, args.size, args.jitter,
                            args.test_classes, jpeg_quality=args.quality)
    except AttnGANError as e:  # a bad value: one line, as every error of the project's commands
        print(f'error: {e}', file=sys.stderr)
        return 2

    if out.is_dir() and any(out.iterdir()):
        marker = read_marker(out)
        if marker is None:
            print(f'error: {out} is not empty and is not a toy dataset (no {MARKER}); '
                  'choose another --out or empty it yourself', file=sys.stderr)
            return 2
        same = marker.get('params') == params
        if same and marker.get('complete') and not args.force:
            s = marker.get('summary', {})
            print(f"{out}: toy dataset already present (seed {params['seed']}, {s.get('n_images', '?')} images); "
                  'nothing to do (--force regenerates it)')
            return 0
        if not same and not args.force:
            old = marker.get('params') or {}
            diff = ', '.join(f'{k}: {old.get(k)!r} there, {v!r} asked' for k, v in params.items() if old.get(k) != v)
            print(f'error: {out} holds a toy dataset made with other parameters ({diff}); '
                  'pass --force to replace it, or choose another --out', file=sys.stderr)
            return 2
        # same parameters but incomplete (an interrupted run), or --force: regenerate

    try:
        summary = make_toy_dataset(out, seed=params['seed'], n_classes=params['n_classes'],
                                   images_per_class=params['images_per_class'], image_size=params['image_size'],
                                   size_jitter=params['size_jitter'], n_test_classes=params['n_test_classes'],
                                   jpeg_quality=params['jpeg_quality'], overwrite=True, verbose=not args.quiet)
    except AttnGANError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    mib = _disk_bytes(out) / 2 ** 20
    print(f"wrote {out}: {summary['n_images']} images ({summary['n_train']} train / {summary['n_test']} test), "
          f"{summary['n_classes']} classes, vocabulary {summary['vocab_size']} words, "
          f"{mib:.1f} MiB, {summary['seconds']:.1f} s")
    if not args.quiet:
        print(f"  test classes: {', '.join(summary['test_classes'])}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
