"""Peak memory and time of one training iteration: AttnGAN vs DualAttnGAN (fork) vs DualAttnGAN (paper).

One iteration = attngan.gan.GANStep: frozen text encoder, G forward, 3 D steps, G step with the
DAMSM losses (Inception image encoder at 299 px), Adam, EMA. Bird config (cfg/bird_attn2.yml,
cfg/bird_dualattn.yml, cfg/bird_dualattn_paper.yml: GF_DIM 32, DF_DIM 64, 3 stages up to 256 px),
batch 20 by default for all three (the fork's own config uses 8), vocabulary 5450, 18-word captions,
random encoders (DAMSM.INCEPTION_WEIGHTS random) and torch's default init.

Each model runs in a fresh subprocess so that peaks do not mix. After --warmup iterations (Adam's state
is allocated in the first), the peak is reset and --iters iterations are timed. Peak memory: on a GPU
torch.cuda.max_memory_allocated; on the CPU the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs; without that, ru_maxrss since the process start). "before" is the memory held
before the timed iterations (weights, optimiser state, and on the CPU the Python/torch runtime).
Target of the issue: the paper variant's peak <= 1.25 x AttnGAN's.

    python bench/dualattn_memory.py [--batch 20] [--device auto|cpu|cuda] [--models attngan fork paper]
        [--iters 1] [--warmup 1] [--threads N] [--set KEY=VALUE ...]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {'attngan': 'bird_attn2.yml', 'fork': 'bird_dualattn.yml', 'paper': 'bird_dualattn_paper.yml'}
N_WORDS = 5450
GIB = 1024 ** 3


def _rss_peak_bytes() -> int:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_now_bytes() -> int:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_rss_peak() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def worker(args) -> dict:
    import torch

    from attngan.build import build_discriminators, build_generator, build_image_encoder, build_text_encoder
    from attngan.config import load_config
    from attngan.gan import GANStep, copy_G_params
    from attngan.models import count_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    overrides = ['DAMSM.INCEPTION_WEIGHTS=random', f'TRAIN.BATCH_SIZE={args.batch}'] + list(args.set or [])
    cfg = load_config(ROOT / 'cfg' / CONFIGS[args.worker], overrides)
    B, T = args.batch, cfg.TEXT.WORDS_NUM
    torch.manual_seed(0)
    text_encoder = build_text_encoder(cfg, N_WORDS, device).requires_grad_(False).eval()
    image_encoder = build_image_encoder(cfg, device=device).requires_grad_(False).eval()
    netG = build_generator(cfg, device, init_weights=False).train()
    netsD = [d.train() for d in build_discriminators(cfg, device, init_weights=False)]
    adam = dict(lr=cfg.TRAIN.GENERATOR_LR, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), **adam)
    optimizersD = [torch.optim.Adam(d.parameters(), **dict(adam, lr=cfg.TRAIN.DISCRIMINATOR_LR)) for d in netsD]
    avg = copy_G_params(netG)

    g = torch.Generator().manual_seed(1)
    cap_lens = torch.sort(torch.randint(5, T + 1, (B,), generator=g), descending=True).values
    captions = torch.randint(1, N_WORDS, (B, T), generator=g)
    captions[torch.arange(T)[None, :] >= cap_lens[:, None]] = 0
    imgs = [(torch.rand(B, 3, 64 * 2 ** i, 64 * 2 ** i, generator=g) * 2 - 1).to(device)
            for i in range(cfg.TREE.BRANCH_NUM)]
    captions, cap_lens = captions.to(device), cap_lens.to(device)
    class_ids = torch.arange(B)
    sm = cfg.TRAIN.SMOOTH
    gan_step = GANStep(text_encoder, image_encoder, netG, netsD, optimizerG, optimizersD, avg, batch_size=B,
                       z_dim=cfg.GAN.Z_DIM, gamma1=sm.GAMMA1, gamma2=sm.GAMMA2, gamma3=sm.GAMMA3, lambda_=sm.LAMBDA,
                       ema_decay=cfg.TRAIN.EMA_DECAY, device=device)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def step():
        out, _ = gan_step(imgs, captions, cap_lens, class_ids)
        sync()
        return out

    for _ in range(args.warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        peak_kind = 'torch.cuda.max_memory_allocated'
    else:
        reset = _reset_rss_peak()
        before = _rss_now_bytes()
        peak_kind = 'peak RSS (VmHWM after reset)' if reset else 'peak RSS since process start'
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if cuda else _rss_peak_bytes()
    finite = all(bool(torch.isfinite(v).all()) for v in out.values() if torch.is_tensor(v))
    return dict(model=args.worker, generator=type(netG).__name__, g_params=count_parameters(netG),
                batch=B, device=str(torch.cuda.get_device_name(device) if cuda else 'cpu'),
                threads=torch.get_num_threads(), peak_bytes=peak, before_bytes=before, peak_kind=peak_kind,
                seconds=statistics.median(times), finite=finite)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--batch', type=int, default=20)
    ap.add_argument('--device', default='auto', help="'auto' (cuda if available), 'cpu' or 'cuda[:i]'")
    ap.add_argument('--models', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument('--iters', type=int, default=1)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--set', action='append', metavar='KEY=VALUE', help='config override for every model')
    ap.add_argument('--worker', choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print('RESULT ' + json.dumps(worker(args)), flush=True)
        return
    if args.device == 'auto':
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    results = []
    for model in args.models:
        cmd = [sys.executable, __file__, '--worker', model, '--batch', str(args.batch), '--device', args.device,
               '--iters', str(args.iters), '--warmup', str(args.warmup), '--threads', str(args.threads)]
        for s in args.set or []:
            cmd += ['--set', s]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'))
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')), None)
        if proc.returncode != 0 or line is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            oom = any('out of memory' in t.lower() for t in tail)
            print(f'{model}: FAILED (exit {proc.returncode}{", out of memory" if oom else ""}): ' + ' | '.join(tail))
            results.append(dict(model=model, failed=True))
            continue
        r = json.loads(line[len('RESULT '):])
        results.append(r)
        print(f"{model:8s} {r['generator']:20s} G {r['g_params'] / 1e6:6.2f}M params  batch {r['batch']}  "
              f"peak {r['peak_bytes'] / GIB:7.2f} GiB  (before {r['before_bytes'] / GIB:6.2f} GiB)  "
              f"{r['seconds']:8.3f} s/iter  finite={r['finite']}", flush=True)
    ok = {r['model']: r for r in results if not r.get('failed')}
    if ok:
        first = next(iter(ok.values()))
        print(f"device: {first['device']} (threads {first['threads']}); peak = {first['peak_kind']}")
    if 'attngan' in ok:
        base = ok['attngan']['peak_bytes']
        for m in ('fork', 'paper'):
            if m in ok:
                ratio = ok[m]['peak_bytes'] / base
                note = f" (target <= 1.25: {'met' if ratio <= 1.25 else 'NOT met'})" if m == 'paper' else ''
                print(f'{m} / attngan peak: {ratio:.2f}x{note}')


if __name__ == '__main__':
    main()
