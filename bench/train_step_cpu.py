"""Time one full faithful AttnGAN training iteration on the CPU.

Setting of the issue: GF_DIM 32, DF_DIM 64, 3 stages (64/128/256 px), batch 2, vocabulary 5450,
18-word captions, randomly initialised encoders (bird config otherwise: EMBEDDING_DIM 256,
Z_DIM 100, CONDITION_DIM 100). One iteration = text encoder, G forward, 3 D steps, G step with
the DAMSM losses, EMA (attngan.gan.GANStep). Prints the median of 5 timed iterations after a
warm-up. The original code takes about 4.2-5.0 s per iteration on the 2-core CPU of the CI machine.

The default is the faithful path: fp32, NCHW, torch.optim.Adam with its default implementation
(as the original). --fused-adam and --channels-last time the optional speed-ups (same fp32 math,
different rounding); --device cuda times the same iteration on a GPU.

glibc's malloc returns every freed block above 32 MB (and the trimmed heap top) to the OS, so each
iteration page-faults its big tensors (D_NET256's weights and gradients, Adam temporaries, 256 px
activations) back in (1 thread: 5.6 s of CPU time per iteration instead of 4.7 s; more of the wall
time with 2 threads). tune_malloc() keeps freed memory in the process (no effect on any number);
--no-malloc-tuning times without it. (--channels-last was slower on the 2-core CI CPU.)

--baseline re-enacts the original's computation with this port's modules, for a same-machine
ratio: GLU by slicing, words_loss looping over captions, the G backward also filling the Ds'
gradients, a per-parameter EMA loop, log strings every iteration, glibc's default malloc.

    python bench/train_step_cpu.py [--threads 2] [--iters 5] [--fused-adam] [--channels-last]
                                   [--no-malloc-tuning] [--baseline] [--device cpu]
"""
import argparse
import logging
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch

from attngan.engine.run import tune_malloc
from attngan.build import (build_discriminators, build_generator, build_image_encoder,
                           build_text_encoder)
from attngan.config import load_config
from attngan.gan import GANStep, copy_G_params


def baseline_step(text_encoder, image_encoder, netG, netsD, optimizerG, optimizersD, avg_param_G, imgs,
                  captions, cap_lens, class_ids, noise, real_labels, fake_labels, match_labels, *,
                  gamma1, gamma2, gamma3, lambda_):
    """The original condGANTrainer iteration's computation (see --baseline), same numbers as GANStep."""
    import torch.nn.functional as F
    import numpy as np
    from attngan.GlobalAttention import func_attention
    from attngan.losses import KL_loss, cosine_similarity, discriminator_loss, sent_loss

    B = captions.size(0)
    words_embs, sent_emb = text_encoder(captions, cap_lens, text_encoder.init_hidden(B))
    words_embs, sent_emb = words_embs.detach(), sent_emb.detach()
    mask = (captions == 0)[:, :words_embs.size(2)]
    noise.normal_(0, 1)
    fake_imgs, _, mu, logvar = netG(noise, sent_emb, words_embs, mask)
    D_logs = ''
    for i in range(len(netsD)):
        netsD[i].zero_grad()
        errD = discriminator_loss(netsD[i], imgs[i], fake_imgs[i], sent_emb, real_labels, fake_labels)
        errD.backward()
        optimizersD[i].step()
        D_logs += 'errD%d: %.2f ' % (i, errD.item())
    netG.zero_grad()
    errG_total, logs = 0, ''
    for i in range(len(netsD)):
        features = netsD[i](fake_imgs[i])
        g_loss = (F.binary_cross_entropy(netsD[i].UNCOND_DNET(features), real_labels) +
                  F.binary_cross_entropy(netsD[i].COND_DNET(features, sent_emb), real_labels))
        errG_total = errG_total + g_loss
        logs += 'g_loss%d: %.2f ' % (i, g_loss.item())
    region_features, cnn_code = image_encoder(fake_imgs[-1])
    sims, masks = [], []
    ids = class_ids.cpu().numpy()
    for i, n in enumerate(cap_lens.tolist()):  # the original's loop over captions
        m = (ids == ids[i]).astype('uint8')
        m[i] = 0
        masks.append(m)
        word = words_embs[i, :, :n].unsqueeze(0).contiguous().repeat(B, 1, 1)
        wc, _ = func_attention(word, region_features, gamma1)
        row = cosine_similarity(word.transpose(1, 2).contiguous().view(B * n, -1),
                                wc.transpose(1, 2).contiguous().view(B * n, -1)).view(B, n)
        sims.append(torch.log(row.mul_(gamma2).exp_().sum(dim=1, keepdim=True)))
    sims = torch.cat(sims, 1) * gamma3
    sims = sims.masked_fill(torch.as_tensor(np.stack(masks), dtype=torch.bool, device=sims.device), -float('inf'))
    w_loss = (F.cross_entropy(sims, match_labels) + F.cross_entropy(sims.t(), match_labels)) * lambda_
    s_loss = sum(sent_loss(cnn_code, sent_emb, match_labels, ids, B, gamma3=gamma3)) * lambda_
    errG_total = errG_total + w_loss + s_loss
    kl_loss = KL_loss(mu, logvar)
    errG_total = errG_total + kl_loss
    logs += 'w_loss: %.2f s_loss: %.2f kl_loss: %.2f ' % (w_loss.item(), s_loss.item(), kl_loss.item())
    errG_total.backward()  # also into every D parameter, as the original
    optimizerG.step()
    with torch.no_grad():
        for p, avg_p in zip(netG.parameters(), avg_param_G):
            avg_p.mul_(0.999).add_(p.data, alpha=0.001)
    return {'errG_total': errG_total.detach(), 'logs': D_logs + logs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--iters', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--fused-adam', action='store_true', help='torch.optim.Adam(fused=True)')
    ap.add_argument('--channels-last', action='store_true', help='G, Ds, image encoder and images NHWC')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--no-malloc-tuning', action='store_true', help="keep glibc's default malloc settings")
    ap.add_argument('--baseline', action='store_true', help="the original's computation (see above)")
    args = ap.parse_args()
    tuned = False if (args.no_malloc_tuning or args.baseline) else tune_malloc()
    if args.baseline:
        from attngan import models

        def glu_by_slicing(self, x):
            nc = x.size(1) // 2
            return x[:, :nc] * torch.sigmoid(x[:, nc:])
        models.GLU.forward = glu_by_slicing
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format='%(message)s')

    cfg = load_config(ROOT / 'cfg' / 'bird_attn2.yml',
                      ['GAN.GF_DIM=32', 'GAN.DF_DIM=64', 'TREE.BRANCH_NUM=3', 'DAMSM.INCEPTION_WEIGHTS=random'])
    n_words, B, T = 5450, args.batch, cfg.TEXT.WORDS_NUM
    torch.manual_seed(0)
    text_encoder = build_text_encoder(cfg, n_words).requires_grad_(False).eval()
    image_encoder = build_image_encoder(cfg).requires_grad_(False).eval()
    # default torch init instead of the original's orthogonal one (which takes ~30 s at this size)
    netG = build_generator(cfg, init_weights=False).train()
    netsD = [d.train() for d in build_discriminators(cfg, init_weights=False)]

    g = torch.Generator().manual_seed(1)
    cap_lens = torch.sort(torch.randint(5, T + 1, (B,), generator=g), descending=True).values
    captions = torch.randint(1, n_words, (B, T), generator=g)
    captions[torch.arange(T)[None, :] >= cap_lens[:, None]] = 0
    imgs = [torch.rand(B, 3, 64 * 2 ** i, 64 * 2 ** i, generator=g) * 2 - 1 for i in range(3)]
    class_ids = torch.arange(B)
    noise = torch.empty(B, cfg.GAN.Z_DIM)
    labels = dict(real_labels=torch.ones(B), fake_labels=torch.zeros(B), match_labels=torch.arange(B))
    dev = torch.device(args.device)
    mf = torch.channels_last if args.channels_last else torch.contiguous_format
    for m in [text_encoder, image_encoder, netG] + netsD:
        m.to(dev)
    for m in [image_encoder, netG] + netsD:
        m.to(memory_format=mf)
    imgs = [i.to(dev).contiguous(memory_format=mf) for i in imgs]
    captions, class_ids, noise = captions.to(dev), class_ids.to(dev), noise.to(dev)
    labels = {k: v.to(dev) for k, v in labels.items()}
    adam = dict(lr=cfg.TRAIN.GENERATOR_LR, betas=(0.5, 0.999))
    if args.fused_adam:
        adam['fused'] = True
    optimizerG = torch.optim.Adam(netG.parameters(), **adam)
    optimizersD = [torch.optim.Adam(d.parameters(), **dict(adam, lr=cfg.TRAIN.DISCRIMINATOR_LR)) for d in netsD]
    avg = copy_G_params(netG)
    sm = cfg.TRAIN.SMOOTH

    def sync():
        if dev.type == 'cuda':
            torch.cuda.synchronize()

    gammas = dict(gamma1=sm.GAMMA1, gamma2=sm.GAMMA2, gamma3=sm.GAMMA3, lambda_=sm.LAMBDA)
    gan_step = GANStep(text_encoder, image_encoder, netG, netsD, optimizerG, optimizersD, avg,
                       batch_size=captions.size(0), z_dim=cfg.GAN.Z_DIM, device=dev, **gammas)

    def step():
        if args.baseline:
            return baseline_step(text_encoder, image_encoder, netG, netsD, optimizerG, optimizersD, avg, imgs,
                                 captions, cap_lens, class_ids, noise, **labels, **gammas)
        return gan_step(imgs, captions, cap_lens, class_ids)[0]

    for _ in range(args.warmup):
        step()
    times, cpu_times = [], []
    for _ in range(args.iters):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    assert all(torch.isfinite(v).all() for k, v in out.items() if torch.is_tensor(v))
    print('iterations (s): ' + ' '.join(f'{t:.3f}' for t in times))
    # process CPU time (user + system, all threads): with --threads 1 a measure of the work done that
    # other processes on the machine barely disturb (wall time does not have that property)
    print(f'process CPU time: median {statistics.median(cpu_times):.3f} s per iteration')
    print(f'median: {statistics.median(times):.3f} s per iteration (min {min(times):.3f}; '
          f'{"BASELINE (original computation), " if args.baseline else ""}device {dev}, '
          f'threads {torch.get_num_threads()}, batch {B}, Adam {"fused" if args.fused_adam else "default"}, '
          f'{"channels_last" if args.channels_last else "NCHW"}, malloc {"tuned" if tuned else "default"})')


if __name__ == '__main__':
    main()
