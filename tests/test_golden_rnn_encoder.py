"""RNN_ENCODER (DAMSM text encoder) against rnn_encoder.pt."""
import pytest
import torch

from attngan.models import RNN_ENCODER
from golden_utils import assert_golden, load, module64, seeded_state_dict


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'rnn_encoder.pt')


def _nhidden(fix):
    return fix['cfg']['TEXT.EMBEDDING_DIM']


def _net(fix):
    net = RNN_ENCODER(fix['vocab'], nhidden=_nhidden(fix), rnn_type=fix['cfg'].get('RNN_TYPE', 'LSTM'))
    net.load_state_dict(fix['state_dict'])
    return net


class _Scale(torch.nn.Module):
    """Replays a dropout draw: x * (0 or 1/(1-p)), as nn.Dropout computes it."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor.to(x.dtype)


def test_default_init_matches_original(fix):
    sd = seeded_state_dict(fix['seed_init'], RNN_ENCODER, ntoken=fix['vocab'], nhidden=_nhidden(fix))
    assert list(sd) == list(fix['state_dict'])
    for k, v in sd.items():
        assert torch.equal(v, fix['state_dict'][k]), k


def run_rnn(fix, mode):
    """(words_emb, sent_emb) in float32 and in float64 (train mode: the same dropout draw)."""
    net = _net(fix).train(mode == 'train')
    net64 = module64(net)
    B = fix['captions'].size(0)
    hidden = net.init_hidden(B)
    assert torch.equal(hidden[0], fix['hidden_h0']) and torch.equal(hidden[1], fix['hidden_c0'])
    caught = {}
    hook = net.drop.register_forward_hook(lambda _m, i, o: caught.update(inp=i[0], out=o))
    if mode == 'train':
        torch.manual_seed(fix['train']['seed'])  # embedding dropout
    with torch.no_grad():
        words_emb, sent_emb = net(fix['captions'], fix['cap_lens'], hidden)
    hook.remove()
    if mode == 'train':
        torch.manual_seed(fix['train']['seed'])
        factor = torch.nn.functional.dropout(torch.ones_like(caught['inp']), net.drop_prob, training=True)
        assert torch.equal(caught['out'], caught['inp'] * factor)  # that is the draw the float32 run made
        net64.drop = _Scale(factor)
    with torch.no_grad():
        words64, sent64 = net64(fix['captions'], fix['cap_lens'], net64.init_hidden(B))
    return net, (words_emb, sent_emb), (words64, sent64)


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_rnn_encoder(fix, mode):
    net, (words_emb, sent_emb), (words64, sent64) = run_rnn(fix, mode)
    B = fix['captions'].size(0)
    assert words_emb.shape == (B, _nhidden(fix), int(fix['cap_lens'].max()))
    assert_golden(words_emb, words64, fix[mode]['words_emb'], f'{mode}.words_emb')
    assert_golden(sent_emb, sent64, fix[mode]['sent_emb'], f'{mode}.sent_emb')
    for b, n in enumerate(fix['cap_lens'].tolist()):
        assert torch.all(words_emb[b, :, n:] == 0)
    # sent_emb = [last forward state, last backward state], for every sample
    half = net.nhidden
    for b, n in enumerate(fix['cap_lens'].tolist()):
        assert torch.allclose(sent_emb[b, half:], words_emb[b, half:, 0])
        assert torch.allclose(sent_emb[b, :half], words_emb[b, :half, n - 1])
    # the trainer's mask: token 0, cut to the longest caption
    mask = (fix['captions'] == 0)[:, :words_emb.size(2)]
    assert torch.equal(mask, fix['mask'])
    assert torch.equal(fix['captions'] == 0, fix['mask_full'])


def test_gru_and_unsorted_lengths(fix):
    torch.manual_seed(0)
    nhidden = _nhidden(fix)
    net = RNN_ENCODER(fix['vocab'], nhidden=nhidden, rnn_type='GRU').eval()
    caps, lens = fix['captions'], fix['cap_lens']
    B = caps.size(0)
    h = net.init_hidden(B)
    assert h.shape == (net.nlayers * net.num_directions, B, nhidden // net.num_directions)
    w, s = net(caps, lens, h)
    perm = torch.roll(torch.arange(B), 1)  # lengths no longer sorted
    w2, s2 = net(caps[perm], lens[perm].tolist(), net.init_hidden(B))
    assert torch.allclose(w2[:, :, :w.size(2)], w[perm], atol=1e-6) and torch.allclose(s2, s[perm], atol=1e-6)
    with pytest.raises(ValueError, match='RNN_TYPE'):
        RNN_ENCODER(fix['vocab'], nhidden=nhidden, rnn_type='RNN')
