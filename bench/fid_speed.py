#!/usr/bin/env python
"""FID feature extraction speed: pytorch-fid against attngan.metrics.fid on the same images.

Generates ``--n`` PNG images (``--size`` px, default 256 like AttnGAN's samples) into a temporary
folder, loads the same rule-filled weights into pytorch-fid's InceptionV3 and ours (nothing is
downloaded), then times each extracting 2048-d pool3 features of every image: pytorch-fid's
``get_activations`` (its loader: PIL -> float tensors, resize on the device) and our
``run_batches`` (libpng decoding, uint8 batches, resize on the device, inference mode,
channels_last and BatchNorm folded into the convolutions on CPU). Each gets
one untimed warm-up batch; both use the same batch size and number of decoding workers. On CUDA
pytorch-fid is timed twice: with PyTorch's default TF32 cuDNN convolutions (how it runs for
users) and in fp32 (the arithmetic ours keeps; features are compared against this run). Prints
images/s, the speed-up, and the largest feature difference (``--exact`` adds our NCHW path,
which must match bit for bit; ``--fid`` adds the FID of the two halves under each).

  python bench/fid_speed.py [--n 2000] [--size 256] [--batch-size 50] [--workers W] [--device D]
"""
import argparse
import os
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np
import torch
from PIL import Image

from attngan.metrics import fid as F
from attngan.metrics.inception import FIDInceptionV3, rule_filled_state_dict


def _make_image(args):
    path, size, seed = args
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([np.sin(xx * rng.uniform(1, 9) + yy * rng.uniform(1, 9) + rng.uniform(0, 6))
                    for _ in range(3)], -1) * 90 + 128
    for _ in range(6):  # a few flat-coloured blobs on the smooth background
        x0, y0 = rng.integers(0, size - 32, 2)
        w, h = rng.integers(16, size // 2, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n', type=int, default=2000)
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--batch-size', type=int, default=50)
    p.add_argument('--workers', type=int, default=None, help='default: min(8, CPUs), as pytorch-fid')
    p.add_argument('--device', default=None)
    p.add_argument('--dir', default=None, help='image folder to (re)use instead of a temporary one')
    p.add_argument('--exact', action='store_true', help='also time our exact (NCHW) path')
    p.add_argument('--fid', action='store_true', help='also compare FID(first half, second half)')
    args = p.parse_args(argv)

    try:
        import pytorch_fid.fid_score as pfs
        import pytorch_fid.inception as pfi
    except ImportError:
        print('error: pytorch-fid is not installed (pip install -r requirements-test.txt)', file=sys.stderr)
        return 1
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    workers = F.default_workers() if args.workers is None else args.workers

    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix='fid_speed_')
        folder = Path(tmp.name)
    else:
        folder = Path(args.dir)
        folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f'{i:05d}.png' for i in range(args.n)]
    todo = [(f, args.size, i) for i, f in enumerate(files) if not f.exists()]
    t0 = time.perf_counter()
    if todo:
        with Pool(max(1, min(16, os.cpu_count() or 1))) as pool:
            pool.map(_make_image, todo, chunksize=16)
    print(f'{args.n} PNG images of {args.size}x{args.size} in {folder} '
          f'({len(todo)} generated in {time.perf_counter() - t0:.1f} s)')

    sd = rule_filled_state_dict(FIDInceptionV3())
    ours = FIDInceptionV3()
    ours.load_state_dict(sd)
    pfi.load_state_dict_from_url = lambda *a, **k: {k_: v.clone() for k_, v in sd.items()}
    theirs = pfi.InceptionV3([3]).to(device).eval()
    pfs.tqdm = lambda x: x  # no progress bar in the timing
    print(f'device {device}; batch size {args.batch_size}; {workers} decoding workers; '
          f'torch {torch.__version__}, {torch.get_num_threads()} CPU threads')

    def run_theirs(fs):
        return pfs.get_activations(fs, theirs, args.batch_size, 2048, device, workers)

    def run_ours(fs, channels_last=None):
        return F.run_batches(ours, fs, 2048, batch_size=args.batch_size, device=device,
                             workers=workers, channels_last=channels_last)

    def timed(fn, *a):
        fn(files[:args.batch_size], *a)  # warm-up: workers, kernels, cuDNN autotuning
        sync(device)
        t = time.perf_counter()
        out = fn(files, *a)
        sync(device)
        return out, args.n / (time.perf_counter() - t)

    if device.type == 'cuda':  # pytorch-fid as users run it: PyTorch's default TF32 cuDNN convs
        torch.backends.cudnn.allow_tf32 = True
        tf32, r_tf32 = timed(run_theirs)
        print(f'pytorch-fid (TF32)   : {r_tf32:8.1f} images/s   (cuDNN TF32, the CUDA default)')
    torch.backends.cudnn.allow_tf32 = False
    ref, r_theirs = timed(run_theirs)
    print(f'pytorch-fid          : {r_theirs:8.1f} images/s' + ('   (fp32)' if device.type == 'cuda' else ''))
    feats, r_ours = timed(run_ours)
    diff = np.abs(feats - ref).max()
    print(f'attngan (default)    : {r_ours:8.1f} images/s   x{r_ours / r_theirs:.2f}   '
          f'max |feature diff| {diff:.2e} (features ~{np.abs(ref).mean():.3f})')
    if device.type == 'cuda':
        print(f'  vs pytorch-fid with TF32: x{r_ours / r_tf32:.2f}; its TF32 features differ from '
              f'fp32 by up to {np.abs(tf32 - ref).max():.2e}')
    if args.exact:
        ex, r_ex = timed(run_ours, False)
        print(f'attngan (--exact)    : {r_ex:8.1f} images/s   x{r_ex / r_theirs:.2f}   '
              f'max |feature diff| {np.abs(ex - ref).max():.2e}')
    if args.fid:
        h = args.n // 2
        for name, f in (('pytorch-fid', ref), ('attngan', feats)):
            a, b = F.statistics_from_features(f[:h]), F.statistics_from_features(f[h:])
            print(f'FID(first half, second half) from {name} features: '
                  f'{F.frechet_distance(a.mu, a.sigma, b.mu, b.sigma):.6f}')
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
