"""CNN_ENCODER (DAMSM image encoder) against cnn_encoder.pt (weights filled by the README's rule)."""
import copy
import logging

import pytest
import torch

from attngan import models
from attngan.models import CNN_ENCODER, InceptionWeightsError
from golden_utils import (assert_golden, check_fill, decode_u8, elementwise_tolerance, fill_by_rule, load, module64,
                          to64)

CASES = ['eval_299', 'eval_64', 'train_299']


@pytest.fixture(scope='module')
def fix(golden_dir):
    return load(golden_dir, 'cnn_encoder.pt')


@pytest.fixture(scope='module')
def encoder(fix):
    net = CNN_ENCODER(fix['nef'], weights='random', align_corners=False)
    fill_by_rule(net, fix['fill_base'])
    return net


def case_input(fix, case):
    return decode_u8(fix['img_u8_64'] if case == 'eval_64' else fix['img_u8_299'])


def run_case(encoder, x, train):
    """(features, cnn_code) of the encoder in float32 and of its float64 copy, on the same input."""
    out = []
    for net, inp in ((encoder, x), (module64(encoder), to64(x))):
        net = copy.deepcopy(net) if train else net  # train mode moves the BN running stats
        net.train(train)
        with torch.no_grad():
            out.append(net(inp))
    return out


@pytest.fixture(scope='module')
def runs(fix, encoder):
    """float32 and float64 outputs per case, computed once per module."""
    return {case: run_case(encoder, case_input(fix, case), case.startswith('train')) for case in CASES}


def check_case(fix, case, got):
    (features, cnn_code), (features64, cnn_code64) = got
    n = fix[f'img_u8_{case.split("_")[1]}'].size(0)
    assert features.shape == (n, fix['nef'], *fix[case]['features'].shape[2:])
    assert cnn_code.shape == (n, fix['nef'])
    assert_golden(features, features64, fix[case]['features'], f'{case}.features')
    assert_golden(cnn_code, cnn_code64, fix[case]['cnn_code'], f'{case}.cnn_code')


def test_keys_order_and_fill(fix, encoder):
    check_fill(encoder, fix)  # every state_dict entry in the original's order, fill reproduced exactly


@pytest.mark.parametrize('case', CASES)
def test_cnn_encoder(fix, runs, case):
    check_case(fix, case, runs[case])


def test_align_corners_option(fix, encoder, runs):
    """align_corners=True (PyTorch 0.3 upsampling) changes the 64 px path only."""
    net = CNN_ENCODER(fix['nef'], weights='random', align_corners=True)
    net.load_state_dict(encoder.state_dict())
    net.eval()
    with torch.no_grad():
        f299, _ = net(case_input(fix, 'eval_299'))
    assert_golden(f299, runs['eval_299'][1][0], fix['eval_299']['features'], 'align_corners=True at 299')
    with torch.no_grad():
        f64, _ = net(case_input(fix, 'eval_64'))
    # at 64 px the interpolation differs: far outside the tolerance of the align_corners=False run
    (features, _), (features64, _) = runs['eval_64']
    tol = elementwise_tolerance(features, features64)
    assert (f64 - fix['eval_64']['features']).abs().max().item() > tol


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
    sd['fc.weight'] = torch.zeros(1000, 2048)  # torchvision's ImageNet heads (1000 classes), dropped on load
    sd['AuxLogits.fc.weight'] = torch.zeros(1000, 768)
    (tmp_path / 'checkpoints').mkdir()
    torch.save(sd, tmp_path / 'checkpoints' / models.INCEPTION_FILE)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    for weights in ('imagenet', str(tmp_path / 'checkpoints' / models.INCEPTION_FILE)):
        net = CNN_ENCODER(4, weights=weights)
        assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, encoder.Mixed_7c.branch_pool.conv.weight)
    with pytest.raises(InceptionWeightsError, match='not found'):
        CNN_ENCODER(4, weights=str(tmp_path / 'nope.pth'))


def test_smaller_image_size(fix):
    """image_size=128 (not in the original): the fixture's nef and batch, 64 px inputs -> 6 x 6 regions."""
    B, nef = fix['img_u8_64'].shape[0], fix['nef']
    net = CNN_ENCODER(nef, weights='random', image_size=128).eval()
    with torch.no_grad():
        features, code = net(decode_u8(fix['img_u8_64']))
    assert features.shape == (B, nef, 6, 6) and code.shape == (B, nef)
    assert torch.isfinite(features).all() and torch.isfinite(code).all()
    with pytest.raises(ValueError, match='image_size'):
        CNN_ENCODER(nef, weights='random', image_size=64)
