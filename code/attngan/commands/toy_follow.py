"""Do generated toy birds show the part colours their captions name?

    python eval/toy_follow.py GEN_DIR [--data data/toy] [--json OUT.json]

GEN_DIR holds the sampler's images of the toy test split, ``<class>/<stem>_s-1.png`` and
``<stem>_s-1_<r>.png`` (searched recursively: the NET_G folder or its valid/single folder). A part reader
trained on the real toy train images (attngan.metrics.toy_follow; trained once, about a minute or two on
2 CPU cores, then cached in DATA/follow_classifier.pt) reads each image's part colours; the table compares
them with the caption each image was generated from, beside the reader's accuracy on real test images,
the same images scored against shuffled captions, the majority rate and chance.

Exit status: 0 with figures, 1 when it cannot answer (no toy dataset, no generated image).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from attngan.config import resolve_path
from attngan.errors import AttnGANError, InputError
from attngan.metrics import toy_follow as TF


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('gen_dir', metavar='GEN_DIR', help='folder of generated images (sampler layout)')
    p.add_argument('--data', default=None, help='toy dataset folder (default: the project\'s data/toy)')
    p.add_argument('--json', metavar='OUT', default=None, help='also write all figures to this JSON file')
    p.add_argument('--cache', default=None,
                   help='part reader file (default: DATA/follow_classifier.pt); "none" to neither read nor write')
    p.add_argument('--epochs', type=int, default=12, help='training epochs of the part reader (default 12)')
    p.add_argument('--threads', type=int, default=None,
                   help='torch CPU threads (default: torch decides; 1 is faster on a busy machine)')
    p.add_argument('--seed', type=int, default=0, help='training and caption-shuffle seed')
    p.add_argument('--quiet', action='store_true', help='no training progress')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cache = False if args.cache == 'none' else args.cache
    if args.data is None:
        args.data = str(resolve_path('data/toy'))
    try:
        if not TF.find_generated(args.gen_dir):  # before training: fail fast
            raise InputError(f'{args.gen_dir}: no <class>/<stem>_s-1[_<r>].png image under it')
        clf = TF.load_or_train(args.data, cache=cache, epochs=args.epochs, seed=args.seed, verbose=not args.quiet)
        report = TF.evaluate_folder(clf, args.gen_dir, args.data, shuffle_seed=args.seed)
    except AttnGANError as e:
        print(f'toy_follow: {e}', file=sys.stderr)
        return 1
    report['seconds'] = round(time.perf_counter() - t0, 1)
    print(TF.format_report(report))
    print(f"({report['seconds']} s in all)")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, default=str) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
