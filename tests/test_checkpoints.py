"""Loading checkpoints in the released format (netG_epoch_N.pth, text_encoder200.pth,
image_encoder200.pth), including files written by old PyTorch, and the mismatch error."""
import pickle
from collections import OrderedDict

import pytest
import torch

from attngan.models import CNN_ENCODER, D_NET128, G_NET, RNN_ENCODER
from attngan.weights import CheckpointError, CheckpointMismatchError, load_state_dict_file, read_state_dict


def _g(ngf=8, branch_num=3):
    return G_NET(ngf=ngf, nef=32, ncf=16, z_dim=16, r_num=2, branch_num=branch_num)


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
    return module


def _old_style(module, keep_metadata=False):
    """state_dict as torch <= 0.4.0 wrote it: no num_batches_tracked entries (and no _metadata)."""
    sd = module.state_dict()
    old = OrderedDict((k, v.clone()) for k, v in sd.items() if not k.endswith('num_batches_tracked'))
    if keep_metadata:
        old._metadata = sd._metadata
    return old


def _save_legacy(obj, path):
    torch.save(obj, path, _use_new_zipfile_serialization=False)  # pre-1.6 (non-zip) format
    with open(path, 'rb') as f:
        assert f.read(2) != b'PK'  # really not a zip file
    return path


def _assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize('keep_metadata', [False, True])
def test_released_generator_format(tmp_path, keep_metadata):
    src = _randomise(_g())
    path = _save_legacy(_old_style(src, keep_metadata), tmp_path / 'netG_epoch_600.pth')
    dst = load_state_dict_file(path, _g(), 'NET_G')
    sd = dst.state_dict()
    assert all(sd[k].item() == 0 for k in sd if k.endswith('num_batches_tracked'))
    for k, v in src.state_dict().items():
        if not k.endswith('num_batches_tracked'):
            assert torch.equal(sd[k], v), k


def test_released_encoders_format(tmp_path):
    text = _randomise(RNN_ENCODER(40, nhidden=32))
    path = _save_legacy(_old_style(text), tmp_path / 'text_encoder200.pth')
    _assert_same(load_state_dict_file(path, RNN_ENCODER(40, nhidden=32), 'text encoder'), text)
    image = CNN_ENCODER(8, weights='random')
    _randomise(image, 1)
    path = _save_legacy(_old_style(image), tmp_path / 'image_encoder200.pth')
    loaded = load_state_dict_file(path, CNN_ENCODER(8, weights='random'), 'image encoder')
    for k, v in image.state_dict().items():
        if not k.endswith('num_batches_tracked'):
            assert torch.equal(loaded.state_dict()[k], v), k


def test_new_format_and_data_parallel_prefix(tmp_path):
    src = _randomise(D_NET128(4, 32))
    sd = OrderedDict(('module.' + k, v) for k, v in src.state_dict().items())
    torch.save(sd, tmp_path / 'netD1.pth')
    _assert_same(load_state_dict_file(tmp_path / 'netD1.pth', D_NET128(4, 32), 'netD1'), src)
    torch.save({'netD': src.state_dict(), 'epoch': 3}, tmp_path / 'full.pth')
    _assert_same(load_state_dict_file(tmp_path / 'full.pth', D_NET128(4, 32), 'netD1', key='netD'), src)


@pytest.mark.parametrize('other', ['wider', 'fewer_stages'])
def test_mismatching_config_gives_one_clear_error(tmp_path, other):
    path = _save_legacy(_old_style(_g()), tmp_path / 'netG_epoch_10.pth')
    target = _g(ngf=16) if other == 'wider' else _g(branch_num=2)
    with pytest.raises(CheckpointMismatchError) as e:
        load_state_dict_file(path, target, 'TRAIN.NET_G')
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert 'TRAIN.NET_G' in msg and 'netG_epoch_10.pth' in msg and 'G_NET' in msg
    if other == 'wider':
        assert 'shape mismatch' in msg and 'ca_net.fc.weight' not in msg  # ngf does not change CA_NET
        assert 'h_net1.fc.0.weight: file [4096, 32] vs model [8192, 32]' in msg
    else:
        assert 'unexpected in the file' in msg and 'h_net3.att.conv_context.weight' in msg
    assert msg.count('\n') <= 4  # a short report, not a dump of every key
    assert e.value.__cause__ is None and e.value.__context__ is None


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='NET_E'):
        read_state_dict(tmp_path / 'missing.pth', 'NET_E')
    (tmp_path / 'junk.pth').write_bytes(b'not a torch file')
    with pytest.raises(CheckpointError, match='junk.pth'):
        read_state_dict(tmp_path / 'junk.pth')
    torch.save({'a': torch.zeros(1), 'opt': {'lr': 1}}, tmp_path / 'mixed.pth')
    with pytest.raises(CheckpointError, match='does not hold a state_dict'):
        read_state_dict(tmp_path / 'mixed.pth')


class _Arbitrary:
    pass


def test_pickled_objects_are_refused(tmp_path):
    with open(tmp_path / 'obj.pth', 'wb') as f:
        pickle.dump({'x': _Arbitrary()}, f, protocol=2)
    with pytest.raises(CheckpointError, match='weights_only'):
        read_state_dict(tmp_path / 'obj.pth', 'NET_G')


def test_atomic_open_keeps_old_file_on_error_and_plain_permissions(tmp_path):
    import os
    from attngan.atomic import atomic_open
    from attngan.engine.checkpoint import atomic_save
    target = tmp_path / 'sub' / 'state.pt'
    atomic_save({'a': torch.ones(2)}, target)
    assert torch.load(target)['a'].tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_open(target) as f:
            f.write(b'half a file')
            raise RuntimeError('disk full')
    assert torch.load(target)['a'].tolist() == [1.0, 1.0]  # the old file, untouched
    assert [p.name for p in target.parent.iterdir()] == ['state.pt']  # no temporary left behind
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would create it, not mkstemp's 0600
