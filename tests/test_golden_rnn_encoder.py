"""RNN_ENCODER (DAMSM text encoder) against rnn_encoder.pt."""
import pytest
import torch

from attngan.models import RNN_ENCODER
from golden_utils import assert_close, load


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'rnn_encoder.pt')


def _net(fix):
    net = RNN_ENCODER(fix['vocab'], nhidden=fix['cfg']['TEXT.EMBEDDING_DIM'], rnn_type='LSTM')
    net.load_state_dict(fix['state_dict'])
    return net


def test_default_init_matches_original(fix):
    torch.manual_seed(fix['seed_init'])
    net = RNN_ENCODER(fix['vocab'], nhidden=fix['cfg']['TEXT.EMBEDDING_DIM'])
    sd = net.state_dict()
    assert list(sd) == list(fix['state_dict'])
    for k, v in sd.items():
        assert torch.equal(v, fix['state_dict'][k]), k


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_rnn_encoder(fix, mode):
    net = _net(fix).train(mode == 'train')
    hidden = net.init_hidden(fix['captions'].size(0))
    assert torch.equal(hidden[0], fix['hidden_h0']) and torch.equal(hidden[1], fix['hidden_c0'])
    if mode == 'train':
        torch.manual_seed(fix['train']['seed'])  # embedding dropout
    with torch.no_grad():
        words_emb, sent_emb = net(fix['captions'], fix['cap_lens'], hidden)
    assert words_emb.shape == (3, 32, int(fix['cap_lens'].max()))
    assert_close(words_emb, fix[mode]['words_emb'], f'{mode}.words_emb')
    assert_close(sent_emb, fix[mode]['sent_emb'], f'{mode}.sent_emb')
    for b, n in enumerate(fix['cap_lens'].tolist()):
        assert torch.all(words_emb[b, :, n:] == 0)
    # sent_emb = [last forward state, last backward state]
    half = net.nhidden
    assert torch.allclose(sent_emb[0, half:], words_emb[0, half:, 0])
    n0 = int(fix['cap_lens'][0])
    assert torch.allclose(sent_emb[0, :half], words_emb[0, :half, n0 - 1])
    # the trainer's mask: token 0, cut to the longest caption
    mask = (fix['captions'] == 0)[:, :words_emb.size(2)]
    assert torch.equal(mask, fix['mask'])


def test_gru_and_unsorted_lengths(fix):
    torch.manual_seed(0)
    net = RNN_ENCODER(40, nhidden=32, rnn_type='GRU').eval()
    h = net.init_hidden(3)
    assert h.shape == (2, 3, 16)
    caps, lens = fix['captions'], fix['cap_lens']
    w, s = net(caps, lens, h)
    perm = torch.tensor([2, 0, 1])
    w2, s2 = net(caps[perm], lens[perm].tolist(), net.init_hidden(3))
    assert torch.allclose(w2[:, :, :w.size(2)], w[perm], atol=1e-6) and torch.allclose(s2, s[perm], atol=1e-6)
    with pytest.raises(ValueError, match='RNN_TYPE'):
        RNN_ENCODER(40, nhidden=32, rnn_type='RNN')
