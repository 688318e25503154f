#!/usr/bin/env python
"""The whole pipeline on the embedded toy dataset, on a laptop CPU in minutes (``make demo``).

1. writes the synthetic CUB-layout dataset to data/toy (once),
2. pretrains the DAMSM encoders (cfg/DAMSM/toy.yml),
3. trains AttnGAN on them (cfg/toy_attn2.yml; on a CPU with native bf16, AMX or AVX512-BF16, with the fast
   path TRAIN.FAST: bf16 autocast, ~1.3x faster per step; ``--set TRAIN.FAST=false`` keeps the fp32 path),
4. samples the test split and measures whether the samples follow their captions,
then prints the headline figures and where the pictures, checkpoints and figures are.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from attngan.engine.fast import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parent
PY = sys.executable


def step(title: str, args: list[str]) -> None:
    print(f'\n=== {title}\n$ {" ".join(args)}', flush=True)
    t0 = time.time()
    r = subprocess.run(args, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f'demo: "{title}" failed (exit {r.returncode}); see the messages above')
    print(f'=== {title}: {time.time() - t0:.0f} s', flush=True)


def latest(folder: Path, pattern: str) -> Path:
    files = sorted(folder.glob(pattern), key=lambda p: int(''.join(c for c in p.stem if c.isdigit()) or 0))
    if not files:
        sys.exit(f'demo: no {pattern} in {folder}')
    return files[-1]


def figures(damsm_metrics: Path, follow_json: Path) -> list[str]:
    """The headline figures of the two stages: the DAMSM's last validation and eval/toy_follow.py's result."""
    lines = []
    epochs = [r for r in map(json.loads, damsm_metrics.read_text().splitlines()) if r.get('kind') == 'damsm_epoch']
    if epochs and 'r_precision_i2t' in epochs[-1]:
        r = epochs[-1]
        lines.append(f"DAMSM, epoch {r['epoch']}: validation word loss {r['val_w_loss']:.2f}, image-to-text "
                     f"R-precision {r['r_precision_i2t']:.3f} (top-1 of {r['r_precision_candidates']}; "
                     f"chance {1 / r['r_precision_candidates']:.2f})")
    c = json.loads(follow_json.read_text())
    gen, shuf = c['generated']['colour'], c['shuffled']['colour']
    lines.append(f"samples: {100 * gen['pair_match']:.0f}% of the named part colours right "
                 f"({100 * shuf['pair_match']:.0f}% against shuffled captions, chance {100 * gen['pair_chance']:.0f}%)")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='output/demo', help='folder for the demo runs (default: %(default)s)')
    p.add_argument('--data', default='data/toy', help='toy dataset folder (default: %(default)s)')
    p.add_argument('--set', dest='overrides', action='append', default=[],
                   help='extra --set KEY=VALUE for both trainers (e.g. TRAIN.MAX_EPOCH=2 for a quick look; '
                        'TRAIN.FAST=false: the fp32 GAN path on any CPU)')
    args = p.parse_args()
    t0 = time.time()
    out = ROOT / args.out
    data = ROOT / args.data
    sets = [a for kv in args.overrides for a in ('--set', kv)]
    # does nothing when the same toy dataset is there; stops naming the differences when an older one is
    step('toy dataset', [PY, 'data/make_toy.py', '--out', str(data), '--seed', '0'])
    damsm = out / 'damsm'
    step('DAMSM pretraining', [PY, 'pretrain_DAMSM.py', '--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1',
                               '--data_dir', str(data), '--manualSeed', '1', '--output_dir', str(damsm), *sets])
    net_e = latest(damsm / 'Model', 'text_encoder*.pth')
    gan = out / 'attngan'
    native_bf16 = cpu_has_native_bf16()
    print('\nThis CPU computes bf16 natively (AMX or AVX512-BF16): AttnGAN trains with the bf16 fast path '
          '(TRAIN.FAST)' if native_bf16 else '\nNo native bf16 on this CPU: AttnGAN trains with the fp32 path')
    fast = ['--set', 'TRAIN.FAST=true'] if native_bf16 else []  # before the user's --set: theirs win
    step('AttnGAN training', [PY, 'main.py', '--cfg', 'cfg/toy_attn2.yml', '--gpu', '-1', '--data_dir', str(data),
                              '--manualSeed', '1', '--output_dir', str(gan), '--set', f'TRAIN.NET_E={net_e}',
                              *fast, *sets])
    net_g = latest(gan / 'Model', 'netG_epoch_*.pth')
    step('sampling the test split', [PY, 'main.py', '--cfg', 'cfg/toy_attn2.yml', '--gpu', '-1',
                                     '--data_dir', str(data), '--set', 'TRAIN.FLAG=false',
                                     '--set', 'B_VALIDATION=true', '--set', f'TRAIN.NET_E={net_e}',
                                     '--set', f'TRAIN.NET_G={net_g}'])
    follow_json = out / 'toy_follow.json'
    step('do the samples follow their captions?', [PY, 'eval/toy_follow.py', str(net_g.with_suffix('') / 'valid'),
                                                   '--data', str(data), '--threads', '1', '--json', str(follow_json)])
    print(f'\nDemo finished in {time.time() - t0:.0f} s.')
    for line in figures(damsm / 'metrics.jsonl', follow_json):
        print(f'  {line}')
    print(f'  DAMSM encoders, attention pictures, metrics.jsonl: {damsm}')
    print(f'  AttnGAN checkpoints (Model/), sample grids and attention pictures (Image/): {gan}')
    print(f'  test-split samples: {net_g.with_suffix("")}/valid/single/')


if __name__ == '__main__':
    main()
