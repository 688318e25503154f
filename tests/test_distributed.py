"""Multi-process training (torchrun + DistributedDataParallel) on the CPU: gloo backend, 2 processes."""
import json
import os
import socket
import subprocess
import sys

import torch
import torch.multiprocessing as mp

from attngan.build import build_discriminators, build_generator, build_image_encoder, build_text_encoder
from attngan.cli import main
from attngan.config import ConfigError, load_config
from attngan.engine import distributed as dist
from attngan.engine.checkpoint import load_train_state
from attngan.engine.distributed import EpochShardSampler
from attngan.gan import GANStep, copy_G_params
from attngan.losses import KL_loss, discriminator_loss, generator_loss
from conftest import REPO_ROOT, TINY_DAMSM, TINY_GAN

N_WORDS, HALF = 30, 3  # vocabulary of the synthetic captions; samples per rank (the fixed batch holds 2 x HALF)


# ---------------------------------------------------------------------------------------------- sharding
def test_epoch_shards_are_disjoint_slices_of_one_seeded_permutation():
    g = torch.Generator()
    shards = []
    for r in range(3):
        g.manual_seed(11)  # what epoch_batches does on every rank before iterating
        shards.append(list(EpochShardSampler(20, 3, r, g)))
    g.manual_seed(11)
    perm = torch.randperm(20, generator=g).tolist()
    assert shards == [perm[r:18:3] for r in range(3)]
    assert all(len(s) == 6 for s in shards) and len(set(sum(shards, []))) == 18
    g.manual_seed(12)
    assert list(EpochShardSampler(20, 3, 0, g)) != shards[0]  # another epoch, another order
    # one replica: exactly the DataLoader's own shuffle (a 1-process run keeps its order)
    g.manual_seed(11)
    own = [int(i) for i in torch.utils.data.DataLoader(range(20), shuffle=True, generator=g)]
    g.manual_seed(11)
    loader = torch.utils.data.DataLoader(range(20), sampler=EpochShardSampler(20, 1, 0, g), generator=g)
    assert [int(i) for i in loader] == own
    # outside a process group the helpers are no-ops
    assert dist.shard_sampler(20, g) is None and dist.world_size() == 1 and dist.is_main()
    net = torch.nn.Linear(2, 2)
    assert dist.wrap_ddp(net, torch.device('cpu')) is net
    assert dist.rescale_step(3, 2) == 6 and dist.rescale_step(3, 1) == 3


# ---------------------------------------------------------------------------------------------- gradients
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _tiny_cfg():
    return load_config(str(REPO_ROOT / 'cfg' / 'toy_attn2.yml'), TINY_GAN)


def _models(cfg, setup):
    """Text/image encoders (frozen, eval), G and the Ds (train) with the weights in ``setup``."""
    text_encoder = build_text_encoder(cfg, N_WORDS)
    image_encoder = build_image_encoder(cfg, weights='none')
    netG, netsD = build_generator(cfg), build_discriminators(cfg)
    for net, sd in zip([text_encoder, image_encoder, netG, *netsD], setup['state_dicts']):
        net.load_state_dict(sd)
    for net in (text_encoder, image_encoder):
        net.requires_grad_(False).eval()
    return text_encoder, image_encoder, netG.train(), [d.train() for d in netsD]


def _half(setup, h):
    """Samples [h * HALF, (h + 1) * HALF) of the fixed batch (captions already sorted by length per half)."""
    sl = slice(h * HALF, (h + 1) * HALF)
    return ([im[sl] for im in setup['imgs']], setup['captions'][sl], setup['cap_lens'][sl],
            setup['class_ids'][sl].numpy())


def _adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def _grad_worker(rank, port, tmp):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE='2', RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert dist.init(use_cuda=False) and dist.world_size() == 2 and dist.rank() == rank
    # the agreement helpers
    assert dist.broadcast_object(f'folder of rank {rank}') == 'folder of rank 0'
    assert dist.any_rank(rank == 1) and not dist.any_rank(False)
    assert dist.mean_over_ranks({'x': torch.tensor(2.0 * rank), 'y': 1}) == {'x': 1.0, 'y': 1.0}
    assert len(dist.gather_rng_states()) == 2 and dist.rank_seed(5) == 5 + 100003 * rank
    try:
        dist.wrap_ddp(torch.nn.Sequential(torch.nn.BatchNorm1d(2)), torch.device('cpu'), sync_bn=True)
        raise AssertionError('TRAIN.SYNC_BN on the CPU must be refused')
    except ConfigError as e:
        assert 'TRAIN.SYNC_BN' in str(e)
    cfg, setup = _tiny_cfg(), torch.load(os.path.join(tmp, 'setup.pt'))
    text_encoder, image_encoder, netG, netsD = _models(cfg, setup)
    cpu = torch.device('cpu')
    ddpG = dist.wrap_ddp(netG, cpu)
    ddpsD = [dist.wrap_ddp(d, cpu) for d in netsD]
    avg = copy_G_params(netG)
    optG, optsD = _adam(netG.parameters()), [_adam(d.parameters()) for d in netsD]
    imgs, captions, cap_lens, class_ids = _half(setup, rank)
    s = cfg.TRAIN.SMOOTH
    torch.manual_seed(1000 + rank)
    step = GANStep(text_encoder, image_encoder, ddpG, ddpsD, optG, optsD, avg, batch_size=HALF, z_dim=cfg.GAN.Z_DIM,
                   gamma1=s.GAMMA1, gamma2=s.GAMMA2, gamma3=s.GAMMA3, lambda_=s.LAMBDA)
    out, _ = step(imgs, captions, cap_lens, class_ids)
    torch.save({'gD': [[p.grad.clone() for p in d.parameters()] for d in netsD],
                'gG': [p.grad.clone() for p in netG.parameters()],
                'params': [p.detach().clone() for net in (netG, *netsD) for p in net.parameters()],
                'avg': [a.clone() for a in avg], 'errD0': out['errD0']}, os.path.join(tmp, f'rank{rank}.pt'))
    dist.destroy()


def test_ddp_gradients_are_the_mean_of_per_half_gradients(tmp_path):
    """One train_step with DDP on 2 ranks, each holding half of a fixed batch of 2 x HALF samples.

    DDP averages the ranks' gradients, and each rank's losses see its own half only: the AttnGAN losses
    couple a batch (the D's mismatched pairs real[i] / caption[i+1], the DAMSM word and sentence terms
    contrast each caption with the other images), and BatchNorm uses per-rank batch statistics. So the
    reference is NOT the gradient of the combined batch: it is the mean of the gradients one process
    computes on each half separately, with that rank's noise (seed 1000 + rank). The G gradients are
    taken against the Ds after their (averaged) Adam step, as in train_step.
    """
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    nets = [build_text_encoder(cfg, N_WORDS), build_image_encoder(cfg, weights='random'),
            build_generator(cfg), *build_discriminators(cfg)]
    B, W = 2 * HALF, cfg.TEXT.WORDS_NUM
    cap_lens = torch.tensor([12, 9, 5, 14, 8, 6])  # sorted descending within each half, as prepare_data does
    captions = torch.randint(1, N_WORDS, (B, W)) * (torch.arange(W) < cap_lens[:, None])
    setup = {'state_dicts': [n.state_dict() for n in nets], 'captions': captions, 'cap_lens': cap_lens,
             'imgs': [torch.rand(B, 3, 64 * 2 ** i, 64 * 2 ** i) * 2 - 1 for i in range(cfg.TREE.BRANCH_NUM)],
             'class_ids': torch.arange(1, B + 1)}
    torch.save(setup, tmp_path / 'setup.pt')
    mp.spawn(_grad_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: same summation order inside the kernels
    try:
        text_encoder, image_encoder, netG, netsD = _models(cfg, setup)
        s = cfg.TRAIN.SMOOTH
        halves, gD = [], []
        for h in range(2):
            imgs, caps, lens, cls = _half(setup, h)
            torch.manual_seed(1000 + h)
            with torch.no_grad():
                words, sent = text_encoder(caps, lens, text_encoder.init_hidden(HALF))
            mask = (caps == 0)[:, :words.size(2)]
            noise = torch.empty(HALF, cfg.GAN.Z_DIM).normal_(0, 1)
            fakes, _, mu, logvar = netG(noise, sent, words, mask)
            gD.append([torch.autograd.grad(discriminator_loss(d, imgs[i], fakes[i], sent, torch.ones(HALF),
                                                              torch.zeros(HALF)), list(d.parameters()))
                       for i, d in enumerate(netsD)])
            halves.append((fakes, mu, logvar, words, sent, lens, cls))
        ref_gD = [[(a + b) / 2 for a, b in zip(g0, g1)] for g0, g1 in zip(*gD)]
        for d, grads in zip(netsD, ref_gD):
            opt = _adam(d.parameters())
            for p, g in zip(d.parameters(), grads):
                p.grad = g
            opt.step()
        gG = []
        for fakes, mu, logvar, words, sent, lens, cls in halves:
            errG, _, _ = generator_loss(netsD, image_encoder, fakes, torch.ones(HALF), words, sent,
                                        torch.arange(HALF), lens, cls, gamma1=s.GAMMA1, gamma2=s.GAMMA2,
                                        gamma3=s.GAMMA3, lambda_=s.LAMBDA, with_logs=False)
            gG.append(torch.autograd.grad(errG + KL_loss(mu, logvar), list(netG.parameters())))
        ref_gG = [(a + b) / 2 for a, b in zip(*gG)]
    finally:
        torch.set_num_threads(threads)

    def close(got, want, what):
        for k, (a, b) in enumerate(zip(got, want)):
            scale = float(b.abs().max()) + 1e-12
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale, msg=f'{what} tensor {k}')

    for r, out in enumerate(ranks):
        for i, (got, want) in enumerate(zip(out['gD'], ref_gD)):
            close(got, want, f'rank {r}: D{i} grad')
        close(out['gG'], ref_gG, f'rank {r}: G grad')
    # the halves really differ, so the average is a real test (and rank 0 alone is not the answer)
    assert not torch.allclose(gD[0][0][0], ref_gD[0][0], rtol=1e-3)
    assert not torch.allclose(ranks[0]['errD0'], ranks[1]['errD0'])
    # identical weights and EMA on both ranks after the optimizer steps
    for a, b in zip(ranks[0]['params'] + ranks[0]['avg'], ranks[1]['params'] + ranks[1]['avg']):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- torchrun
def _torchrun(script, args, log):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO_ROOT / 'code'))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(REPO_ROOT / script), *args]
    with open(log, 'w') as f:
        rc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=300).returncode
    assert rc == 0, f'{script} under torchrun failed:\n' + open(log).read()[-4000:]


def _main_one_thread(args):
    """main.py in this process with 1 thread, as each torchrun process (2 threads crawl when the cores are busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)


def _sets(pairs):
    return [a for kv in pairs for a in ('--set', kv)]


def test_torchrun_damsm_and_gan_checkpoints_move_between_1_and_2_processes(tiny_toy, tmp_path):
    """pretrain_DAMSM.py and main.py under torchrun with 2 processes; GAN checkpoints go 1 -> 2 -> 1 processes.

    36 train images: DAMSM batch 6 -> 18 per rank, 3 steps per epoch. GAN batch 4, one epoch: 9 steps in
    1 process, 4 per rank in 2. A resumed epoch continues after the same number of samples: 1 process
    stops at batch 2 -> 2 processes skip 1 batch each and stop at iteration 4 (batch 3) -> 1 process
    skips 6 batches and ends the epoch at iteration 4 + 3 = 7.
    """
    damsm = tmp_path / 'damsm'
    _torchrun('pretrain_DAMSM.py', ['--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1', '--data_dir', str(tiny_toy),
                                    '--manualSeed', '1', '--output_dir', str(damsm),
                                    *_sets(TINY_DAMSM + ['TRAIN.MAX_EPOCH=1'])], tmp_path / 'damsm.log')
    state = load_train_state(damsm / 'Model' / 'train_state.pt')
    assert state['world_size'] == 2 and len(state['rng_ranks']) == 2 and (state['epoch'], state['step']) == (1, 0)
    records = [json.loads(line) for line in (damsm / 'metrics.jsonl').read_text().splitlines()]
    epochs = [r for r in records if r['kind'] == 'damsm_epoch']
    assert len(epochs) == 1 and 'val_w_loss' in epochs[0]  # rank 0 validated; one line per epoch
    assert [r['step'] for r in records if r['kind'] == 'damsm_step'] == [1]  # 3 steps per rank, interval 4
    text_sd = torch.load(damsm / 'Model' / 'text_encoder0.pth', weights_only=True)
    assert not any(k.startswith('module.') for k in text_sd)

    gan = tmp_path / 'gan'
    ckpt = gan / 'Model' / 'train_state.pt'
    gan_args = ['--cfg', 'cfg/toy_attn2.yml', '--gpu', '-1', '--data_dir', str(tiny_toy), '--manualSeed', '5',
                '--output_dir', str(gan),
                *_sets(TINY_GAN + ['TRAIN.MAX_EPOCH=1', f'TRAIN.NET_E={damsm / "Model" / "text_encoder0.pth"}'])]
    assert _main_one_thread(gan_args + _sets(['TRAIN.MAX_STEPS=2'])) == 0
    _torchrun('main.py', gan_args + _sets(['TRAIN.MAX_STEPS=4']) + ['--resume', str(ckpt)], tmp_path / 'gan.log')
    state = load_train_state(ckpt)
    assert (state['epoch'], state['step'], state['gen_iterations'], state['world_size']) == (0, 3, 4, 2)
    assert len(state['rng_ranks']) == 2
    cfg = load_config(str(REPO_ROOT / 'cfg' / 'toy_attn2.yml'), TINY_GAN)
    build_generator(cfg).load_state_dict(state['netG'], strict=True)  # plain keys, no 'module.'
    for d, sd in zip(build_discriminators(cfg), state['netsD']):
        d.load_state_dict(sd, strict=True)
    steps = [r for r in map(json.loads, (gan / 'metrics.jsonl').read_text().splitlines())
             if r['kind'] == 'gan_step']
    assert [r['iteration'] for r in steps] == [2, 4]  # LOG_INTERVAL 2: iteration 4 written once, by rank 0
    assert 'torchrun: 2 processes' in (gan / 'log.txt').read_text()

    assert _main_one_thread(gan_args + ['--resume', str(ckpt)]) == 0
    final = load_train_state(ckpt)
    assert (final['epoch'], final['step'], final['gen_iterations'], final['world_size']) == (1, 0, 7, 1)
    assert final['rng_ranks'] is None
    assert (gan / 'Model' / 'netG_epoch_1.pth').is_file()
