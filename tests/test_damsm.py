"""DAMSM pretraining through the real entry point: snapshots, pictures, metrics, exact resume, NET_E resume."""
import json

import pytest
import torch

from attngan.build import build_image_encoder, build_text_encoder, build_trained_text_encoder
from attngan.cli import pretrain_damsm
from attngan.config import ConfigError, get_default_config, load_config
from attngan.damsm import encoder_epoch, image_encoder_path, retrieval_accuracy
from attngan.engine.checkpoint import load_train_state
from attngan.models import RNN_ENCODER
from conftest import TINY_DAMSM


def _run(toy, out, *extra):
    args = ['--cfg', 'cfg/DAMSM/toy.yml', '--gpu', '-1', '--data_dir', str(toy), '--manualSeed', '3',
            '--output_dir', str(out)]
    for kv in TINY_DAMSM + list(extra):
        args += ['--set', kv]
    return pretrain_damsm(args)


@pytest.fixture(scope='module')
def straight_run(tiny_toy, tmp_path_factory):
    out = tmp_path_factory.mktemp('damsm') / 'run'
    assert _run(tiny_toy, out) == 0  # builds the image cache (toy config: DATA.CACHE true)
    return out


def test_outputs_in_original_layout(straight_run):
    model = straight_run / 'Model'
    for e in (0, 1):
        assert (model / f'text_encoder{e}.pth').is_file() and (model / f'image_encoder{e}.pth').is_file()
    sd = torch.load(model / 'text_encoder1.pth', weights_only=True)
    assert 'encoder.weight' in sd and 'rnn.weight_ih_l0' in sd
    image_sd = torch.load(model / 'image_encoder1.pth', weights_only=True)  # the toy config's SmallCNNEncoder
    assert 'block4.0.weight' in image_sd and 'emb_cnn_code.weight' in image_sd
    image = straight_run / 'Image'
    # SNAPSHOT_INTERVAL 1: every epoch keeps its pictures; the *_latest* ones hold the last epoch's
    assert {'attention_maps_e0_s0.png', 'attention_maps_e1_s0.png', 'val_attention_e0.png',
            'val_attention_e1.png'} <= {p.name for p in image.iterdir()}
    assert (image / 'val_attention_latest.png').read_bytes() == (image / 'val_attention_e1.png').read_bytes()
    assert (image / 'attention_maps_latest_s0.png').read_bytes() == (image / 'attention_maps_e1_s0.png').read_bytes()
    assert not list(image.glob('.*.tmp'))  # atomic writes leave no temporary file
    records = [json.loads(l) for l in (straight_run / 'metrics.jsonl').read_text().splitlines()]
    epochs = [r for r in records if r['kind'] == 'damsm_epoch']
    assert [r['epoch'] for r in epochs] == [0, 1]
    for r in epochs:
        assert r['val_w_loss'] > 0 and r['val_s_loss'] > 0  # shuffled test batches mix classes
        assert 0.0 <= r['r_precision_i2t'] <= 1.0 and r['r_precision_candidates'] >= 2
    assert epochs[1]['lr'] == pytest.approx(0.005 * 0.98)  # cfg/DAMSM/toy.yml's ENCODER_LR, decayed once
    assert (straight_run / 'config.yaml').is_file()


def test_resume_mid_epoch_equals_straight_run(straight_run, tiny_toy, tmp_path):
    out = tmp_path / 'run'
    # 36 train images / batch 6 = 6 batches per epoch: stop in the middle of epoch 1
    assert _run(tiny_toy, out, 'TRAIN.MAX_STEPS=9') == 0  # reuses the cache: the same random stream
    state = load_train_state(out / 'Model' / 'train_state.pt')
    assert (state['epoch'], state['step']) == (1, 3)
    args_resume = ['TRAIN.RESUME=' + str(out / 'Model' / 'train_state.pt')]
    assert _run(tiny_toy, out, *args_resume) == 0
    a = torch.load(straight_run / 'Model' / 'text_encoder1.pth', weights_only=True)
    b = torch.load(out / 'Model' / 'text_encoder1.pth', weights_only=True)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    a = torch.load(straight_run / 'Model' / 'image_encoder1.pth', weights_only=True)
    b = torch.load(out / 'Model' / 'image_encoder1.pth', weights_only=True)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


def test_net_e_resume_continues_at_next_epoch(straight_run, tiny_toy, tmp_path):
    net_e = straight_run / 'Model' / 'text_encoder0.pth'
    assert encoder_epoch(net_e) == 0 and image_encoder_path(net_e).name == 'image_encoder0.pth'
    out = tmp_path / 'run'
    assert _run(tiny_toy, out, f'TRAIN.NET_E={net_e}') == 0
    assert not (out / 'Model' / 'text_encoder0.pth').exists()
    assert (out / 'Model' / 'text_encoder1.pth').is_file()


def test_bad_net_e_name_is_one_clear_error(tiny_toy, tmp_path, capsys):
    bad = tmp_path / 'encoder.pth'
    bad.write_bytes(b'')
    assert _run(tiny_toy, tmp_path / 'run', f'TRAIN.NET_E={bad}') == 2
    assert 'text_encoder<epoch>.pth' in capsys.readouterr().err


def test_batch_larger_than_split_is_one_clear_error(tiny_toy, tmp_path, capsys):
    assert _run(tiny_toy, tmp_path / 'run', 'TRAIN.BATCH_SIZE=500') == 2
    err = capsys.readouterr().err
    assert 'fewer than TRAIN.BATCH_SIZE=500: nothing to train on' in err and str(tiny_toy) in err


def test_retrieval_accuracy_known_cases():
    torch.manual_seed(0)
    n, d = 60, 8
    classes = torch.arange(n) % 6
    img = torch.randn(n, d)
    perfect = retrieval_accuracy(img, img.clone(), classes, n_candidates=20)
    assert perfect['r_precision_i2t'] == 1.0 and perfect['r_precision_t2i'] == 1.0
    chance = retrieval_accuracy(img, torch.randn(n, d), classes, n_candidates=20)
    assert chance['r_precision_i2t'] < 0.5


def test_retrieval_accuracy_on_fewer_pairs_than_folds():
    classes = torch.tensor([0, 0, 1, 1, 2, 2])
    feats = torch.randn(6, 4)
    r = retrieval_accuracy(feats, feats.clone(), classes)
    assert r['r_precision_i2t'] == 1.0 and r['r_precision_candidates'] == 5


def test_inception_image_encoder_trains_through_the_same_loop(tiny_toy, tmp_path):
    """The original's image encoder (CNN_ENCODER, random trunk) in the trainer the toy config runs with the
    small one: frozen trunk, only emb_features / emb_cnn_code change."""
    out = tmp_path / 'run'
    assert _run(tiny_toy, out, 'DAMSM.IMAGE_ENCODER=inception_v3', 'DAMSM.INCEPTION_WEIGHTS=random',
                'TRAIN.MAX_EPOCH=1') == 0
    first = torch.load(out / 'Model' / 'image_encoder0.pth', weights_only=True)
    assert 'Mixed_7c.branch_pool.conv.weight' in first and first['emb_cnn_code.weight'].shape == (16, 2048)


def test_small_cnn_encoder_shapes_and_unknown_kind():
    cfg = load_config('cfg/DAMSM/toy.yml', ['TEXT.EMBEDDING_DIM=24', 'DAMSM.IMAGE_SIZE=64'])
    net = build_image_encoder(cfg)
    assert type(net).__name__ == 'SmallCNNEncoder'
    assert all(p.requires_grad for p in net.parameters())  # trained whole: no frozen trunk
    features, code = net(torch.rand(3, 3, 128, 128) * 2 - 1)  # the GAN's 128-px images are resized to 64
    assert features.shape == (3, 24, 8, 8) and code.shape == (3, 24)
    features, code = net(torch.rand(2, 3, 80, 80) * 2 - 1)
    assert features.shape == (2, 24, 8, 8)
    cfg.DAMSM.IMAGE_ENCODER = 'resnet'
    with pytest.raises(ConfigError, match="DAMSM.IMAGE_ENCODER.*'resnet'"):
        build_image_encoder(cfg)


def test_sentence_max_pooling_over_each_captions_words():
    """TEXT.SENT_POOL 'max': sent_emb is the maximum of words_emb over the caption's own words (padding
    excluded, unsorted lengths); same weights, keys and word features as the original's 'last'."""
    torch.manual_seed(0)
    last = RNN_ENCODER(30, nhidden=16, drop_prob=0.0).eval()
    pooled = RNN_ENCODER(30, nhidden=16, drop_prob=0.0, sent_pool='max').eval()
    pooled.load_state_dict(last.state_dict())
    assert list(pooled.state_dict()) == list(last.state_dict())
    lens = torch.tensor([3, 7, 1, 5])
    captions = torch.randint(1, 30, (4, 7)) * (torch.arange(7)[None, :] < lens[:, None])
    with torch.no_grad():
        words_last, sent_last = last(captions, lens, last.init_hidden(4))
        words, sent = pooled(captions, lens, pooled.init_hidden(4))
    assert torch.equal(words, words_last)
    expected = torch.stack([words[i, :, :n].amax(1) for i, n in enumerate(lens.tolist())])
    assert torch.equal(sent, expected) and not torch.allclose(sent, sent_last)
    assert (expected < 0).any()  # the zero padding would have won these channels
    with pytest.raises(ValueError, match="sent_pool.*'mean'"):
        RNN_ENCODER(30, sent_pool='mean')


def test_sent_pool_key_is_checked_against_the_encoders_run(straight_run, tiny_toy, tmp_path, capsys):
    """An unknown TEXT.SENT_POOL is a config error; a text encoder from a run folder loads only with the
    pooling that run trained with (its config.yaml), since the weights cannot tell."""
    cfg = get_default_config()
    cfg.TEXT.SENT_POOL = 'mean'
    with pytest.raises(ConfigError, match="TEXT.SENT_POOL.*'mean'"):
        build_text_encoder(cfg, 30)
    cfg = load_config('cfg/DAMSM/toy.yml', TINY_DAMSM)
    net_e = straight_run / 'Model' / 'text_encoder1.pth'
    n_words = torch.load(net_e, weights_only=True)['encoder.weight'].shape[0]
    assert cfg.TEXT.SENT_POOL == 'max' and build_trained_text_encoder(cfg, n_words, net_e).sent_pool == 'max'
    cfg.TEXT.SENT_POOL = 'last'
    with pytest.raises(ConfigError, match=r"trained with TEXT.SENT_POOL='max'.*set TEXT.SENT_POOL: max"):
        build_trained_text_encoder(cfg, n_words, net_e)
    # the DAMSM trainer's NET_E resume checks it too
    assert _run(tiny_toy, tmp_path / 'again', 'TEXT.SENT_POOL=last', f'TRAIN.NET_E={net_e}') == 2
    assert "trained with TEXT.SENT_POOL='max'" in capsys.readouterr().err


def test_one_adam_for_the_run_resumes_at_an_epoch_boundary(tiny_toy, tmp_path):
    """DAMSM.ADAM_PER_EPOCH false keeps Adam's moments across epochs, and a resume restores them."""
    keep = ['DAMSM.ADAM_PER_EPOCH=false', 'DAMSM.LR_DECAY=0.9']
    assert _run(tiny_toy, tmp_path / 'straight', *keep) == 0
    assert _run(tiny_toy, tmp_path / 'faithful', 'DAMSM.ADAM_PER_EPOCH=true', 'DAMSM.LR_DECAY=0.9') == 0
    assert _run(tiny_toy, tmp_path / 'split', *keep, 'TRAIN.MAX_EPOCH=1') == 0
    state = tmp_path / 'split' / 'Model' / 'train_state.pt'
    assert (load_train_state(state)['step']) == 0  # stopped between epochs 0 and 1
    assert _run(tiny_toy, tmp_path / 'split', *keep, f'TRAIN.RESUME={state}') == 0

    def weights(run):
        return torch.load(tmp_path / run / 'Model' / 'text_encoder1.pth', weights_only=True)
    straight, split, faithful = weights('straight'), weights('split'), weights('faithful')
    for k in straight:
        torch.testing.assert_close(split[k], straight[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(straight[k], faithful[k]) for k in straight)  # the moments carried over
    records = [json.loads(l) for l in (tmp_path / 'straight' / 'metrics.jsonl').read_text().splitlines()]
    assert [r['lr'] for r in records if r['kind'] == 'damsm_epoch'] == pytest.approx([0.005, 0.005 * 0.9])
