"""CNN_ENCODER (DAMSM image encoder) against cnn_encoder.pt (weights filled by the README's rule)."""
import copy
import logging

import pytest
import torch

from attngan import models
from attngan.models import CNN_ENCODER, InceptionWeightsError
from golden_utils import ACT_TOL, assert_close, check_fill, decode_u8, fill_by_rule, load


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'cnn_encoder.pt')


@pytest.fixture(scope='module')
def encoder(fix):
    net = CNN_ENCODER(fix['nef'], weights='random', align_corners=False)
    fill_by_rule(net, fix['fill_base'])
    return net


def test_keys_order_and_fill(fix, encoder):
    check_fill(encoder, fix)  # 567 entries in the original's order, fill reproduced exactly


@pytest.mark.parametrize('case', ['eval_299', 'eval_64', 'train_299'])
def test_cnn_encoder(fix, encoder, case):
    img = fix['img_u8_64'] if case == 'eval_64' else fix['img_u8_299']
    net = copy.deepcopy(encoder) if case.startswith('train') else encoder  # train mode moves BN stats
    net.train(case.startswith('train'))
    with torch.no_grad():
        features, cnn_code = net(decode_u8(img))
    assert features.shape == (2, fix['nef'], 17, 17) and cnn_code.shape == (2, fix['nef'])
    assert_close(features, fix[case]['features'], f'{case}.features')
    assert_close(cnn_code, fix[case]['cnn_code'], f'{case}.cnn_code')


def test_align_corners_option(fix, encoder):
    """align_corners=True (PyTorch 0.3 upsampling) changes the 64 px path only."""
    net = CNN_ENCODER(fix['nef'], weights='random', align_corners=True)
    net.load_state_dict(encoder.state_dict())
    net.eval()
    with torch.no_grad():
        f299, _ = net(decode_u8(fix['img_u8_299']))
        f64, _ = net(decode_u8(fix['img_u8_64']))
    assert_close(f299, fix['eval_299']['features'], 'align_corners=True at 299')
    assert not torch.allclose(f64, fix['eval_64']['features'], **ACT_TOL)


def test_trunk_frozen_and_bn_eval_option():
    net = CNN_ENCODER(8, weights='random')
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {'emb_features.weight', 'emb_cnn_code.weight', 'emb_cnn_code.bias'}
    net = CNN_ENCODER(8, weights='random', trunk_bn_eval=True).train()
    assert not net.Mixed_6e.branch1x1.bn.training and net.emb_features.training


def test_random_weights_log_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        CNN_ENCODER(8, weights='random')
    assert 'RANDOMLY' in caplog.text


def test_missing_imagenet_weights_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))

    def offline(*a, **k):
        raise OSError('network is unreachable')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    with pytest.raises(InceptionWeightsError) as e:
        CNN_ENCODER(8, weights='imagenet')
    msg = str(e.value)
    assert 'inception_v3_google-0cc3c7bd.pth' in msg and models.INCEPTION_URL in msg
    assert str(tmp_path / 'checkpoints') in msg and 'DAMSM.INCEPTION_WEIGHTS' in msg


def test_weights_from_cache_and_path(monkeypatch, tmp_path, encoder):
    """A torchvision-format file (with AuxLogits/fc keys) loads from the hub cache or a path."""
    sd = {k: v for k, v in encoder.state_dict().items() if not k.startswith('emb_')}
    sd['fc.weight'] = torch.zeros(1000, 2048)
    sd['AuxLogits.fc.weight'] = torch.zeros(1000, 768)
    (tmp_path / 'checkpoints').mkdir()
    torch.save(sd, tmp_path / 'checkpoints' / models.INCEPTION_FILE)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    for weights in ('imagenet', str(tmp_path / 'checkpoints' / models.INCEPTION_FILE)):
        net = CNN_ENCODER(4, weights=weights)
        assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, encoder.Mixed_7c.branch_pool.conv.weight)
    with pytest.raises(InceptionWeightsError, match='not found'):
        CNN_ENCODER(4, weights=str(tmp_path / 'nope.pth'))


def test_smaller_image_size():
    net = CNN_ENCODER(8, weights='random', image_size=128).eval()
    with torch.no_grad():
        features, code = net(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert features.shape == (2, 8, 6, 6) and code.shape == (2, 8)
    assert torch.isfinite(features).all() and torch.isfinite(code).all()
    with pytest.raises(ValueError, match='image_size'):
        CNN_ENCODER(8, weights='random', image_size=64)
