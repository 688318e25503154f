"""Images/s, peak memory and FLOPs of one GAN training iteration: faithful fp32 path vs fast path.

Models (bird configs, 3 stages up to 256 px, vocabulary 5,450, 18-word captions, synthetic inputs,
randomly initialised encoders): ``attngan`` (cfg/bird_attn2.yml), ``dualattn`` (the fork's variant,
cfg/bird_dualattn.yml), ``dualattn_paper`` (cfg/bird_dualattn_paper.yml); and ``toy`` (cfg/toy_attn2.yml as
the demo trains it: 2 stages up to 128 px, its small widths and SmallCNNEncoder, vocabulary 40). One iteration
is attngan.gan.GANStep: text encoder, G forward, one step per D, the G step with the DAMSM losses, EMA.

Paths: ``fp32`` (TRAIN.FAST False: the default, matches the goldens) and ``fast`` (TRAIN.FAST True:
bf16 autocast; on CUDA also channels_last, fused Adam, cudnn.benchmark and, unless --no-compile,
torch.compile of G and the Ds; see attngan/engine/fast.py).

Prints, per model and path: the median seconds per iteration over --iters after --warmup, images/s
(batch / median), peak memory (CUDA: max allocated; CPU: the process's peak RSS so far), and the
FLOPs per image of one fp32 iteration (torch.utils.flop_counter; forward + backward of every module,
counted once) with the achieved TFLOP/s; with --peak-tflops the fraction of the device's peak.

    python bench/train_step.py --device cuda                      # batch 20, both paths, all models
    python bench/train_step.py --device cpu --batch 2 --iters 3 --models attngan   # a CPU figure
    python bench/train_step.py --device cpu --threads 2 --models toy    # the demo's GAN step (batch 6)
    python bench/train_step.py --device cuda --peak-tflops 989    # H100 SXM dense bf16 peak
"""
import argparse
import logging
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch
from torch.utils.flop_counter import FlopCounterMode

from attngan.build import (build_discriminators, build_generator, build_image_encoder,
                           build_text_encoder)
from attngan.config import load_config
from attngan.engine.fast import adam, fast_path, images_to, prepare_module
from attngan.engine.run import tune_malloc
from attngan.gan import GANStep, copy_G_params

BIRD = ('TREE.BRANCH_NUM=3', 'DAMSM.INCEPTION_WEIGHTS=random')
#: model -> (config file, its overrides, vocabulary size)
MODELS = {'attngan': ('bird_attn2.yml', BIRD, 5450), 'dualattn': ('bird_dualattn.yml', BIRD, 5450),
          'dualattn_paper': ('bird_dualattn_paper.yml', BIRD, 5450), 'toy': ('toy_attn2.yml', (), 40)}
BIRD_MODELS = ['attngan', 'dualattn', 'dualattn_paper']


def build(model: str, fast: bool, batch: int | None, device: torch.device, compile_: bool):
    """Modules, optimizers and one synthetic batch (``batch`` None: the config's TRAIN.BATCH_SIZE);
    returns (a no-argument step function, the FastPath, the batch size)."""
    config, overrides, n_words = MODELS[model]
    cfg = load_config(ROOT / 'cfg' / config, [*overrides, f'TRAIN.FAST={fast}', f'TRAIN.COMPILE={compile_}'])
    batch = batch or cfg.TRAIN.BATCH_SIZE
    fp = fast_path(cfg, device)
    torch.manual_seed(0)
    text_encoder = build_text_encoder(cfg, n_words).requires_grad_(False).eval().to(device)
    image_encoder = build_image_encoder(cfg).requires_grad_(False).eval().to(device)
    # default torch init: the original's orthogonal init takes ~30 s at this size and changes no timing
    netG = build_generator(cfg, init_weights=False).train().to(device)
    netsD = [d.train().to(device) for d in build_discriminators(cfg, init_weights=False)]
    prepare_module(netG, fp)
    for d in netsD:
        prepare_module(d, fp, heads=('COND_DNET', 'UNCOND_DNET'))
    if fp.channels_last:
        image_encoder.to(memory_format=torch.channels_last)
    optG = adam(netG.parameters(), cfg.TRAIN.GENERATOR_LR, fp)
    optsD = [adam(d.parameters(), cfg.TRAIN.DISCRIMINATOR_LR, fp) for d in netsD]
    avg = copy_G_params(netG)

    g = torch.Generator().manual_seed(1)
    T = cfg.TEXT.WORDS_NUM
    cap_lens = torch.sort(torch.randint(5, T + 1, (batch,), generator=g), descending=True).values
    captions = torch.randint(1, n_words, (batch, T), generator=g)
    captions[torch.arange(T)[None, :] >= cap_lens[:, None]] = 0
    imgs = images_to([(torch.rand(batch, 3, 64 * 2 ** i, 64 * 2 ** i, generator=g) * 2 - 1).to(device)
                      for i in range(cfg.TREE.BRANCH_NUM)], fp)
    captions, class_ids = captions.to(device), torch.arange(batch, device=device)
    sm = cfg.TRAIN.SMOOTH
    gan_step = GANStep(text_encoder, image_encoder, netG, netsD, optG, optsD, avg, batch_size=batch,
                       z_dim=cfg.GAN.Z_DIM, gamma1=sm.GAMMA1, gamma2=sm.GAMMA2, gamma3=sm.GAMMA3, lambda_=sm.LAMBDA,
                       amp_dtype=fp.amp_dtype, device=device)

    def step():
        return gan_step(imgs, captions, cap_lens, class_ids)
    return step, fp, batch


def peak_memory_gib(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--models', nargs='+', default=BIRD_MODELS, choices=list(MODELS),
                    help='default: the three bird models (toy: the demo config)')
    ap.add_argument('--paths', nargs='+', default=['fp32', 'fast'], choices=['fp32', 'fast'])
    ap.add_argument('--batch', type=int, default=None,
                    help="per-device batch (default: each config's TRAIN.BATCH_SIZE; bird 20, toy 6)")
    ap.add_argument('--iters', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=5, help='untimed iterations first (compile happens here)')
    ap.add_argument('--no-compile', action='store_true', help='fast path without torch.compile')
    ap.add_argument('--no-flops', action='store_true')
    ap.add_argument('--peak-tflops', type=float, default=None,
                    help="the device's peak TFLOP/s, to print the achieved fraction")
    ap.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format='%(message)s')  # not the random-trunk warning per model
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == 'cpu':
        tune_malloc()
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    print(f'device: {name}; torch {torch.__version__}; batch {args.batch or "of each config"}; median of '
          f'{args.iters} after {args.warmup} warm-up iterations')
    print(f'{"model":<15} {"path":<5} {"batch":>5} {"s/iter":>8} {"images/s":>9} {"peak GiB":>9} {"GFLOP/img":>10} '
          f'{"TFLOP/s":>8}{"  of peak" if args.peak_tflops else ""}')
    for model in args.models:
        flops_per_image = None
        for path in args.paths:
            if device.type == 'cuda':
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            step, fp, batch = build(model, path == 'fast', args.batch, device, not args.no_compile)
            if flops_per_image is None and not args.no_flops and path == 'fp32':
                with FlopCounterMode(display=False) as counter:
                    step()
                flops_per_image = counter.get_total_flops() / batch
            for _ in range(args.warmup):
                step()
            times = []
            for _ in range(args.iters):
                if device.type == 'cuda':
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                out, _ = step()
                if device.type == 'cuda':
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            assert bool(torch.isfinite(out['errG_total'])), f'{model} {path}: non-finite loss'
            med = statistics.median(times)
            ips = batch / med
            line = f'{model:<15} {path:<5} {batch:>5} {med:>8.3f} {ips:>9.1f} {peak_memory_gib(device):>9.2f}'
            if flops_per_image:
                tflops = flops_per_image * ips / 1e12
                line += f' {flops_per_image / 1e9:>10.1f} {tflops:>8.2f}'
                if args.peak_tflops:
                    line += f'  {100 * tflops / args.peak_tflops:5.1f}%'
            print(line + ('' if path == 'fp32' else f'   [{fp.describe()}]'), flush=True)


if __name__ == '__main__':
    main()
