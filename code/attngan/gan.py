"""AttnGAN training: one faithful iteration of the original ``condGANTrainer.train`` loop body.

:func:`train_step` does exactly what one pass of the original ``while step < num_batches`` loop
does, in the same order (so the same global-RNG draws):

1. text encoder (frozen) -> words_embs, sent_emb (detached); mask = captions == 0, cut to the longest caption
2. ``noise.normal_(0, 1)``, then G forward (CA_NET draws its noise from the global generator)
3. for each D: zero_grad, discriminator_loss on the detached fakes, backward, optimizer step
4. G: zero_grad, generator_loss with the UPDATED Ds + KL_loss, backward, optimizer step
5. EMA of the G parameters: avg = decay * avg + (1 - decay) * p (decay 0.999 in the original)

It returns detached loss tensors and never calls ``.item()`` (no device sync); :func:`format_logs`
makes the original's log lines from them when needed.

One difference that changes no number: the G backward accumulates gradients into G's parameters
only (``backward(inputs=...)``); the original also accumulated them into the Ds' ``.grad``, which
its next D step zeroes before use. This skips the D weight gradients in the G step.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn as nn

from .losses import KL_loss, discriminator_loss, format_g_logs, generator_loss

__all__ = ['train_step', 'format_logs', 'copy_G_params', 'load_params', 'ema_update']


# ------------------------------------------------------------------ EMA of the generator weights
def copy_G_params(model: nn.Module) -> List[torch.Tensor]:
    """Detached copies of the model's parameters (the EMA state; original name)."""
    return [p.detach().clone() for p in model.parameters()]


@torch.no_grad()
def load_params(model: nn.Module, new_params: Sequence[torch.Tensor]) -> None:
    """Copy ``new_params`` into the model's parameters in place (e.g. to sample with the EMA weights)."""
    torch._foreach_copy_([p.data for p in model.parameters()], list(new_params))


@torch.no_grad()
def ema_update(avg_params: Sequence[torch.Tensor], model: nn.Module, decay: float = 0.999) -> None:
    """avg = decay * avg + (1 - decay) * p for every parameter, in place (original: 0.999 / 0.001)."""
    avg = list(avg_params)
    torch._foreach_mul_(avg, decay)
    torch._foreach_add_(avg, [p.detach() for p in model.parameters()], alpha=1.0 - decay)


# ------------------------------------------------------------------ one iteration
def train_step(text_encoder: nn.Module, image_encoder: nn.Module, netG: nn.Module, netsD: Sequence[nn.Module],
               optimizerG: torch.optim.Optimizer, optimizersD: Sequence[torch.optim.Optimizer],
               avg_param_G: Sequence[torch.Tensor], imgs: Sequence[torch.Tensor], captions: torch.Tensor,
               cap_lens: torch.Tensor, class_ids, noise: torch.Tensor, real_labels: torch.Tensor,
               fake_labels: torch.Tensor, match_labels: torch.Tensor, *, gamma1: float, gamma2: float,
               gamma3: float, lambda_: float, ema_decay: float = 0.999) -> Dict[str, object]:
    """One faithful AttnGAN iteration (see the module docstring for the order of operations).

    text_encoder / image_encoder: frozen DAMSM encoders in eval mode; netG, netsD: in train mode;
    avg_param_G: EMA tensors from copy_G_params(netG), updated in place; imgs[i]: the real images
    netsD[i] judges (B x 3 x S x S in [-1, 1]; 64*2^i px for G_NET, the final size for G_DCGAN); captions: B x WORDS_NUM int64; cap_lens: B lengths
    (sorted descending); class_ids: B class ids (tensor / numpy / None); noise: B x Z_DIM buffer,
    refilled in place with normal_(0, 1); real_labels / fake_labels: B ones / zeros (float);
    match_labels: arange(B); gammas and lambda_: TRAIN.SMOOTH.*; ema_decay: TRAIN.EMA_DECAY.

    Returns a dict of detached tensors: 'errD0'.. 'errD{n-1}', 'errD_total', 'errG_total' (KL included),
    'kl_loss', 'g_loss{i}', 'w_loss', 's_loss', 'w_loss0', 'w_loss1', 's_loss0', 's_loss1', and
    'fake_imgs' (the list of generated images, detached), 'mu', 'logvar'.
    """
    batch_size = captions.size(0)
    # (1) text embeddings (the encoder is frozen: its outputs are used detached)
    with torch.no_grad():
        hidden = text_encoder.init_hidden(batch_size)
        words_embs, sent_emb = text_encoder(captions, cap_lens, hidden)
    words_embs, sent_emb = words_embs.detach(), sent_emb.detach()
    num_words = words_embs.size(2)
    mask = (captions == 0)[:, :num_words]  # Original: the mask comes from token id 0, not from cap_lens

    # (2) fake images
    noise.normal_(0, 1)
    fake_imgs, _, mu, logvar = netG(noise, sent_emb, words_embs, mask)

    # (3) one update per D
    out: Dict[str, object] = {}
    errD_total = 0
    for i, (netD, optD) in enumerate(zip(netsD, optimizersD)):
        netD.zero_grad()
        errD = discriminator_loss(netD, imgs[i], fake_imgs[i], sent_emb, real_labels, fake_labels)
        errD.backward()
        optD.step()
        errD_total = errD_total + errD.detach()
        out[f'errD{i}'] = errD.detach()

    # (4) G update against the updated Ds
    netG.zero_grad()
    errG_total, _, terms = generator_loss(netsD, image_encoder, fake_imgs, real_labels, words_embs, sent_emb,
                                          match_labels, cap_lens, class_ids, gamma1=gamma1, gamma2=gamma2,
                                          gamma3=gamma3, lambda_=lambda_, with_logs=False)
    kl_loss = KL_loss(mu, logvar)
    errG_total = errG_total + kl_loss
    errG_total.backward(inputs=[p for p in netG.parameters() if p.requires_grad])
    optimizerG.step()

    # (5) EMA of the G weights
    ema_update(avg_param_G, netG, ema_decay)

    out.update(terms)
    out.update(errD_total=errD_total, errG_total=errG_total.detach(), kl_loss=kl_loss.detach(),
               fake_imgs=[f.detach() for f in fake_imgs], mu=mu.detach(), logvar=logvar.detach())
    return out


def format_logs(out: Dict[str, object], n_discriminators: int):
    """(D_logs, G_logs) as the original prints them, from train_step's result (calls .item())."""
    D_logs = ''.join('errD%d: %.2f ' % (i, out[f'errD{i}'].item()) for i in range(n_discriminators))
    G_logs = format_g_logs(out, n_discriminators) + 'kl_loss: %.2f ' % out['kl_loss'].item()
    return D_logs, G_logs
