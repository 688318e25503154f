"""AttnGAN losses: DAMSM word/sentence matching, GAN losses and the KL term.

Port of the original ``code/miscc/losses.py`` (taoxugit/AttnGAN) with explicit arguments (gammas,
lambda) instead of a global config; devices are taken from the input tensors. ``words_loss`` is
vectorised over captions (the original loops over the batch); it gives the same numbers within
float32 rounding. ``class_ids`` may be a tensor, a numpy array or a list (or None: no masking).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['cosine_similarity', 'class_mask', 'sent_logits', 'sent_loss', 'words_logits', 'words_loss',
           'discriminator_loss', 'generator_loss', 'format_g_logs', 'KL_loss']


def cosine_similarity(x1: torch.Tensor, x2: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity along ``dim``, squeezed. Unlike ``F.cosine_similarity`` it clamps the
    PRODUCT of the norms at eps (as the original); the two differ only for tiny norms."""
    w12 = torch.sum(x1 * x2, dim)
    w1 = torch.norm(x1, 2, dim)
    w2 = torch.norm(x2, 2, dim)
    return (w12 / (w1 * w2).clamp(min=eps)).squeeze()


def class_mask(class_ids, batch_size: int, device) -> Optional[torch.Tensor]:
    """B x B bool: True where sample j has the class of sample i and j != i (masked mismatches)."""
    if class_ids is None:
        return None
    if torch.is_tensor(class_ids):
        ids = class_ids.to(device)
    else:
        ids = torch.as_tensor(np.asarray(class_ids), device=device)
    ids = ids[:batch_size]
    masks = ids[:, None] == ids[None, :]
    masks.fill_diagonal_(False)
    return masks


# ------------------------------------------------------------------ DAMSM
def sent_logits(cnn_code: torch.Tensor, rnn_code: torch.Tensor, class_ids, batch_size: int, *,
                gamma3: float, eps: float = 1e-8) -> torch.Tensor:
    """B x B logits of sent_loss: [i, j] = gamma3 * cos(image i, sentence j), same-class pairs -inf."""
    if cnn_code.dim() == 2:
        cnn_code = cnn_code.unsqueeze(0)
        rnn_code = rnn_code.unsqueeze(0)
    cnn_code_norm = torch.norm(cnn_code, 2, dim=2, keepdim=True)
    rnn_code_norm = torch.norm(rnn_code, 2, dim=2, keepdim=True)
    scores0 = torch.bmm(cnn_code, rnn_code.transpose(1, 2))
    norm0 = torch.bmm(cnn_code_norm, rnn_code_norm.transpose(1, 2))
    scores0 = scores0 / norm0.clamp(min=eps) * gamma3
    scores0 = scores0.squeeze(0) if scores0.size(0) == 1 else scores0
    masks = class_mask(class_ids, batch_size, scores0.device)
    if masks is not None:
        scores0 = scores0.masked_fill(masks, -float('inf'))
    return scores0


def sent_loss(cnn_code: torch.Tensor, rnn_code: torch.Tensor, labels: Optional[torch.Tensor], class_ids,
              batch_size: int, *, gamma3: float, eps: float = 1e-8):
    """Sentence-level DAMSM loss. cnn_code, rnn_code: B x nef; labels: arange(B) (or None).

    Returns (loss0, loss1): cross-entropy image->sentence and sentence->image (None without labels).
    """
    scores0 = sent_logits(cnn_code, rnn_code, class_ids, batch_size, gamma3=gamma3, eps=eps)
    if labels is None:
        return None, None
    scores0 = scores0.float()  # fp32 log-softmax on the fast path (a no-op otherwise)
    return F.cross_entropy(scores0, labels), F.cross_entropy(scores0.transpose(0, 1), labels)


def _word_valid(cap_lens, n_words: int, device) -> torch.Tensor:
    lens = cap_lens.to(device) if torch.is_tensor(cap_lens) else torch.as_tensor(cap_lens, device=device)
    return torch.arange(n_words, device=device)[None, :] < lens[:, None]


def words_logits(img_features: torch.Tensor, words_emb: torch.Tensor, cap_lens, class_ids, batch_size: int,
                 *, gamma1: float, gamma2: float, gamma3: float, eps: float = 1e-8
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """B x B logits of words_loss and the word-region attention of every (image, caption) pair.

    img_features: B x nef x ih x iw (regions); words_emb: B x nef x T (zero past each length);
    cap_lens: B caption lengths. Entry [j, i] of the logits is gamma3 * R(image j, caption i), with
    R = log(sum_t exp(gamma2 * cos(word t, its region context))) (AttnGAN Eq. 10), same-class pairs -inf.
    attn: B(images) x ih*iw x B(captions) x T, func_attention's second softmax (over regions).
    All captions are processed at once; padded words are masked out of both sums.
    """
    B, nef, ih, iw = img_features.shape
    T = words_emb.size(2)
    sourceL = ih * iw
    context = img_features.reshape(B, nef, sourceL)
    query = words_emb.transpose(0, 1)                                   # nef x B x T
    valid = _word_valid(cap_lens, T, words_emb.device)                  # B(captions) x T
    # logits[j, r, i, t] = region r of image j . word t of caption i  (Eq. 7)
    attn = torch.matmul(context.transpose(1, 2), query.reshape(nef, -1)).view(B, sourceL, -1, T)
    attn = attn.masked_fill(~valid, -float('inf')).softmax(dim=-1)      # over words (Eq. 8)
    attn = (attn * gamma1).softmax(dim=1)                               # over regions (Eq. 9)
    weighted = torch.bmm(context, attn.reshape(B, sourceL, -1)).view(B, nef, -1, T)
    # cosine of each word with its attended context, as the original's cosine_similarity
    w12 = (weighted * query).sum(1)
    norms = torch.norm(query, 2, 0) * torch.norm(weighted, 2, 1)
    row_sim = w12 / norms.clamp(min=eps)                                 # B x B x T
    row_sim = (row_sim * gamma2).exp().masked_fill(~valid, 0.0).sum(-1).log()  # Eq. 10
    similarities = row_sim * gamma3
    masks = class_mask(class_ids, batch_size, similarities.device)
    if masks is not None:
        similarities = similarities.masked_fill(masks, -float('inf'))
    return similarities, attn


def words_loss(img_features: torch.Tensor, words_emb: torch.Tensor, labels: Optional[torch.Tensor], cap_lens,
               class_ids, batch_size: int, *, gamma1: float, gamma2: float, gamma3: float):
    """Word-level DAMSM loss.

    Returns (loss0, loss1, att_maps): cross-entropy image->caption and caption->image (None without
    labels) and, per caption i, its attention on image i (1 x cap_lens[i] x ih x iw).
    """
    similarities, attn = words_logits(img_features, words_emb, cap_lens, class_ids, batch_size,
                                      gamma1=gamma1, gamma2=gamma2, gamma3=gamma3)
    ih, iw = img_features.shape[2:]
    lens = cap_lens.tolist() if torch.is_tensor(cap_lens) else list(cap_lens)
    att_maps = [attn[i, :, i, :n].t().reshape(1, n, ih, iw) for i, n in enumerate(lens[:batch_size])]
    if labels is None:
        return None, None, att_maps
    similarities = similarities.float()  # fp32 log-softmax on the fast path (a no-op otherwise)
    loss0 = F.cross_entropy(similarities, labels)
    loss1 = F.cross_entropy(similarities.transpose(0, 1), labels)
    return loss0, loss1, att_maps


# ------------------------------------------------------------------ GAN
def _bce(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """binary_cross_entropy in float32 with autocast off (CUDA autocast refuses it; the fast path's
    bf16 probabilities would lose the loss near 1). Identical to F.binary_cross_entropy on fp32 inputs.

    A NaN probability (a diverged D) would trip binary_cross_entropy's range check: a RuntimeError on the
    CPU, a device-side assert that ends the process on CUDA. So NaNs are kept out of the kernel and put back
    into the loss value (``+ 0 * sum``: exactly 0 and a zero gradient for finite inputs, NaN otherwise),
    where the trainer's NaN guard names the loss and the step. No host sync.
    """
    with torch.autocast(probs.device.type, enabled=False):
        probs = probs.float()
        safe = torch.where(torch.isnan(probs), torch.zeros((), device=probs.device), probs)
        return F.binary_cross_entropy(safe, targets.float()) + 0.0 * probs.sum()


def discriminator_loss(netD, real_imgs: torch.Tensor, fake_imgs: torch.Tensor, conditions: torch.Tensor,
                       real_labels: torch.Tensor, fake_labels: torch.Tensor) -> torch.Tensor:
    """Loss of one discriminator: real/fake (conditional and, with UNCOND_DNET, unconditional) and
    mismatched pairs (real codes [0:B-1] with conditions [1:B]). fake_imgs are detached here."""
    # real and fake go through D separately, so BN uses separate batch statistics (as the original)
    real_features = netD(real_imgs)
    fake_features = netD(fake_imgs.detach())
    cond_real_errD = _bce(netD.COND_DNET(real_features, conditions), real_labels)
    cond_fake_errD = _bce(netD.COND_DNET(fake_features, conditions), fake_labels)
    batch_size = real_features.size(0)
    cond_wrong_logits = netD.COND_DNET(real_features[:(batch_size - 1)], conditions[1:batch_size])
    cond_wrong_errD = _bce(cond_wrong_logits, fake_labels[1:batch_size])
    if netD.UNCOND_DNET is not None:
        real_errD = _bce(netD.UNCOND_DNET(real_features), real_labels)
        fake_errD = _bce(netD.UNCOND_DNET(fake_features), fake_labels)
        return ((real_errD + cond_real_errD) / 2. +
                (fake_errD + cond_fake_errD + cond_wrong_errD) / 3.)
    return cond_real_errD + (cond_fake_errD + cond_wrong_errD) / 2.


def format_g_logs(terms: Dict[str, torch.Tensor], n_discriminators: int) -> str:
    """The original's generator log line from generator_loss's ``terms`` (calls .item())."""
    logs = ''.join('g_loss%d: %.2f ' % (i, terms[f'g_loss{i}'].item()) for i in range(n_discriminators))
    if 'w_loss' in terms:
        logs += 'w_loss: %.2f s_loss: %.2f ' % (terms['w_loss'].item(), terms['s_loss'].item())
    return logs


def generator_loss(netsD: Sequence, image_encoder, fake_imgs: Sequence[torch.Tensor], real_labels: torch.Tensor,
                   words_embs: torch.Tensor, sent_emb: torch.Tensor, match_labels: torch.Tensor, cap_lens,
                   class_ids, *, gamma1: float, gamma2: float, gamma3: float, lambda_: float,
                   with_logs: bool = True):
    """Generator loss: adversarial terms of every D plus the DAMSM terms on the LAST stage only.

    netsD[i] judges fake_imgs[i]; image_encoder (frozen CNN_ENCODER) encodes fake_imgs[-1]
    (upsampled to 299); lambda_ weights the DAMSM terms (TRAIN.SMOOTH.LAMBDA).

    Returns (errG_total, logs, terms):
      errG_total: scalar tensor with the graph; logs: the original's log string
      ('g_loss0: .. w_loss: .. s_loss: .. '), or None when with_logs=False (no .item() sync);
      terms: detached scalar tensors 'g_loss{i}', 'w_loss', 's_loss', 'w_loss0', 'w_loss1',
      's_loss0', 's_loss1' (format_g_logs(terms, len(netsD)) rebuilds ``logs``).
    """
    numDs = len(netsD)
    batch_size = real_labels.size(0)
    terms: Dict[str, torch.Tensor] = {}
    errG_total = 0
    for i in range(numDs):
        features = netsD[i](fake_imgs[i])
        cond_errG = _bce(netsD[i].COND_DNET(features, sent_emb), real_labels)
        if netsD[i].UNCOND_DNET is not None:
            errG = _bce(netsD[i].UNCOND_DNET(features), real_labels)
            g_loss = errG + cond_errG
        else:
            g_loss = cond_errG
        errG_total = errG_total + g_loss
        terms[f'g_loss{i}'] = g_loss.detach()
        if i == numDs - 1:
            region_features, cnn_code = image_encoder(fake_imgs[i])
            sims, _ = words_logits(region_features, words_embs, cap_lens, class_ids, batch_size,
                                   gamma1=gamma1, gamma2=gamma2, gamma3=gamma3)
            sims = sims.float()  # fp32 log-softmax on the fast path (a no-op otherwise)
            w_loss0 = F.cross_entropy(sims, match_labels)
            w_loss1 = F.cross_entropy(sims.transpose(0, 1), match_labels)
            w_loss = (w_loss0 + w_loss1) * lambda_
            s_loss0, s_loss1 = sent_loss(cnn_code, sent_emb, match_labels, class_ids, batch_size,
                                         gamma3=gamma3)
            s_loss = (s_loss0 + s_loss1) * lambda_
            errG_total = errG_total + (w_loss + s_loss)
            terms.update(w_loss=w_loss.detach(), s_loss=s_loss.detach(), w_loss0=w_loss0.detach(),
                         w_loss1=w_loss1.detach(), s_loss0=s_loss0.detach(), s_loss1=s_loss1.detach())
    logs = format_g_logs(terms, numDs) if with_logs else None
    return errG_total, logs, terms


def KL_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), averaged over all elements: -0.5 * mean(1 + logvar - mu^2 - e^logvar)."""
    mu, logvar = mu.float(), logvar.float()  # fp32 on the fast path (a no-op otherwise)
    KLD_element = -(mu.pow(2) + logvar.exp()) + 1 + logvar
    return torch.mean(KLD_element) * -0.5
