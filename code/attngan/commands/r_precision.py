"""R-precision of a generator (DM-GAN's protocol).

    python eval/r_precision.py --cfg cfg/bird_attn2.yml --net_g models/bird_AttnGAN2.pth [--n 30000]

Generates ``--n`` images from the test split's captions (captions cycled over the test images
as main.py's sampling does; seeded) and, for each, compares the DAMSM image encoder's global
code of the generated image with the sentence embeddings of its true caption and 99 mismatched
captions (from other classes when the split has class_info.pickle, as CUB; from other images
otherwise, as COCO). Cosine similarity; a hit when the true caption ranks first; the hit rate
over 10 folds, mean +- std.

The generator's own text encoder is TRAIN.NET_E of the config. ``--net_e`` scores with another
DAMSM text encoder (its image encoder is the ``image_encoder<N>.pth`` beside it); by default the
training encoders score, which is optimistic (the generator was trained against them): the
output says which. Nothing is written to disk.

Exit status: 0 with a score, 1 when it cannot answer (missing files, split too small for R).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from attngan.errors import AttnGANError
from attngan.config import load_config
from attngan.engine.run import select_device
from attngan.metrics.r_precision_gen import r_precision_of_generator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--cfg', required=True, help="the generator's config (e.g. a run's config.yaml)")
    p.add_argument('--net_g', required=True, help='generator checkpoint (netG_epoch_<N>.pth)')
    p.add_argument('--net_e', default=None,
                   help='DAMSM text encoder to score with (default: TRAIN.NET_E, the training one)')
    p.add_argument('--n', type=int, default=30000, help='images to generate (default: %(default)s)')
    p.add_argument('--candidates', type=int, default=100,
                   help='R: the true caption and R-1 mismatched ones (default: %(default)s)')
    p.add_argument('--folds', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=None, help='default: TRAIN.BATCH_SIZE')
    p.add_argument('--gpu', type=int, default=None, help='GPU index; -1 for the CPU')
    p.add_argument('--seed', type=int, default=None, help='default: SAMPLE.SEED')
    p.add_argument('--data_dir', default='', help='overrides DATA_DIR')
    p.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                   help='override a config key (repeatable)')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.cfg, args.overrides)
        cfg.TRAIN.FLAG = False
        cfg.TRAIN.NET_G = str(Path(args.net_g).expanduser().resolve())
        if args.data_dir:
            cfg.DATA_DIR = str(Path(args.data_dir).resolve())
        if args.gpu is not None:
            if args.gpu < 0:
                cfg.CUDA = False
            else:
                cfg.GPU_ID = args.gpu
        device = select_device(cfg)
        t0 = time.time()
        res = r_precision_of_generator(cfg, device, args.n, batch_size=args.batch_size, seed=args.seed,
                                       net_e=args.net_e, n_candidates=args.candidates, n_folds=args.folds)
    except AttnGANError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'R-precision protocol: {res.describe()}')
    print(f'Device: {device}')
    print(f'R-precision: {res.mean:.4f} +- {res.std:.4f}   [{time.time() - t0:.1f} s]')
    return 0


if __name__ == '__main__':
    sys.exit(main())
