"""FID: agreement with pytorch-fid (same rule-filled weights), the Fréchet distance against
closed forms, .npz statistics, bad input, and the eval/fid.py command line."""
import inspect
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from attngan.metrics import fid as F
from attngan.metrics.inception import (FID_WEIGHTS_FILE, FIDInceptionV3, LegacyInceptionFeatures,
                                       WeightsNotFoundError, fid_inception_v3, fold_batchnorm, rule_fill_,
                                       rule_filled_state_dict)

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 6  # 299 x 299 inference is fixed, so few images keep this file fast


def _write_images(folder: Path, n: int, seed: int, size=(40, 40), bright=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 190, (size[1] // 4, size[0] // 4, 3)).astype(np.uint8) + bright
        Image.fromarray(arr).resize(size, Image.NEAREST).save(folder / f'img_{i:03d}.png')


@pytest.fixture(scope='module')
def state_dict():
    return rule_filled_state_dict(FIDInceptionV3())


@pytest.fixture(scope='module')
def ours(state_dict):
    net = FIDInceptionV3()
    net.load_state_dict(state_dict)
    return net


@pytest.fixture(scope='module')
def pfid(state_dict):
    """pytorch-fid's own InceptionV3 holding the same weights (its download patched out)."""
    pytest.importorskip('pytorch_fid')
    import pytorch_fid.inception as pfi
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pfi, 'load_state_dict_from_url',
                   lambda *a, **k: {k_: v.clone() for k_, v in state_dict.items()})
        net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return net.eval()


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp('fid')
    _write_images(root / 'a', N_IMAGES, seed=1)
    _write_images(root / 'b', N_IMAGES, seed=2, bright=60)
    return root / 'a', root / 'b'


@pytest.fixture(scope='module')
def pfid_features(pfid, folders):
    from pytorch_fid.fid_score import get_activations
    return [get_activations(sorted(d.glob('*.png')), pfid, batch_size=4, dims=2048,
                            device='cpu', num_workers=0) for d in folders]


def test_state_dict_keys_are_pytorch_fids(state_dict, pfid):
    import pytorch_fid.inception as pfi
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pfi, 'load_state_dict_from_url', lambda *a, **k: dict(state_dict))
        theirs = pfi.fid_inception_v3().state_dict()
    assert list(theirs) == list(state_dict)
    assert all(theirs[k].shape == v.shape for k, v in state_dict.items())


def test_features_equal_pytorch_fid(ours, folders, pfid_features):
    files = sorted(folders[0].glob('*.png'))
    exact = F.run_batches(ours, files, 2048, batch_size=4, device='cpu', workers=0,
                          channels_last=False)
    fast = F.run_batches(ours, files, 2048, batch_size=3, device='cpu', workers=1)
    ref = pfid_features[0]
    assert ref.std(axis=0).mean() > 1e-4  # the images do give different features
    np.testing.assert_allclose(exact, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-5)


def test_fold_batchnorm_equals_conv_bn_and_leaves_the_original():
    from torchvision.models.inception import BasicConv2d as TVBasicConv2d

    from attngan.metrics.inception import BasicConv2d
    torch.manual_seed(0)
    net = torch.nn.Sequential(BasicConv2d(3, 8, 3, padding=1), TVBasicConv2d(8, 5, kernel_size=3, stride=2)).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics and affine parameters
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        ref, out = net(x), folded(x)
    assert ref.abs().mean() > 0.1
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the original is untouched


@pytest.mark.slow  # two 2048 x 2048 matrix square roots (~8 s each on 2 cores)
@pytest.mark.filterwarnings('ignore:The `disp` argument is deprecated')  # pytorch-fid's call
@pytest.mark.filterwarnings('ignore::scipy.linalg.LinAlgWarning')
def test_fid_equals_pytorch_fid(ours, folders, pfid_features, monkeypatch):
    import pytorch_fid.fid_score as pfs
    ra, rb = pfid_features
    if 'disp' not in inspect.signature(linalg.sqrtm).parameters:
        # SciPy >= 1.18 dropped sqrtm(disp=False), which pytorch-fid 0.3 still passes
        def sqrtm(a, disp=True):
            root = linalg.sqrtm(a)
            return root if disp else (root, None)
        monkeypatch.setattr(pfs, 'linalg', types.SimpleNamespace(sqrtm=sqrtm))
    ref = pfs.calculate_frechet_distance(ra.mean(0), np.cov(ra, rowvar=False),
                                     rb.mean(0), np.cov(rb, rowvar=False))
    ex = F.FeatureExtractor(net=ours, device='cpu', batch_size=5, workers=0)
    with pytest.warns(F.FIDWarning, match='singular'):
        sa, sb = ex.statistics(folders[0]), ex.statistics(folders[1])
    ours_fid = F.frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    assert ref > 1e-3
    assert abs(ours_fid - ref) < 1e-3
    assert abs(ours_fid - ref) < 1e-4 * ref


def test_legacy_features_are_torchvision_transform_input_on_unit_images(tmp_path):
    """DM-GAN/DF-GAN: PIL resize to 299, then torchvision's transform_input applied to [0, 1]
    images; here the reference is torchvision's own Inception3 with transform_input=True."""
    from torchvision.models import inception_v3
    legacy = rule_fill_(LegacyInceptionFeatures())
    tv = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True)
    tv.load_state_dict(legacy.net.state_dict())
    tv.fc = torch.nn.Identity()
    _write_images(tmp_path / 'l', 2, seed=9, size=(64, 48))
    files = sorted((tmp_path / 'l').glob('*.png'))
    ex = F.FeatureExtractor('legacy', net=legacy, device='cpu', workers=0, channels_last=False)
    got = ex.features(files)
    pil = [Image.open(f).convert('RGB').resize((299, 299), Image.BILINEAR) for f in files]
    x = torch.stack([torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1) for im in pil]).float() / 255
    with torch.inference_mode():
        want = tv.eval()(x).double().numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert 'legacy (DM-GAN / DF-GAN' in ex.describe()
    with pytest.raises(TypeError, match='LegacyInceptionFeatures'):
        F.FeatureExtractor('standard', net=legacy)


def _closed_form(mu1, s1, mu2, s2):
    """|mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr((s1^1/2 s2 s1^1/2)^1/2), via eigendecompositions."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                 - 2 * np.sqrt(np.clip(m, 0, None)).sum())


def test_frechet_distance_of_known_gaussians():
    # 1-d: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s
    assert F.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1, abs=1e-10)
    # identical Gaussians: 0
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    s1 = a @ a.T + 0.1 * np.eye(6)
    mu = rng.standard_normal(6)
    assert F.frechet_distance(mu, s1, mu, s1) == pytest.approx(0, abs=1e-8)
    # general SPD pair against the symmetric closed form
    b = rng.standard_normal((6, 6))
    s2 = b @ b.T + 0.1 * np.eye(6)
    mu2 = rng.standard_normal(6)
    assert F.frechet_distance(mu, s1, mu2, s2) == pytest.approx(_closed_form(mu, s1, mu2, s2), rel=1e-9)
    with pytest.raises(ValueError, match='mean vectors differ'):
        F.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_eps_retry_and_imaginary_check(monkeypatch):
    s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 0.5])
    real_sqrtm = linalg.sqrtm
    calls = []

    def flaky(a, *args, **kw):
        calls.append(a.copy())
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(F.linalg, 'sqrtm', flaky)
    with pytest.warns(F.FIDWarning, match='adding 1e-06'):
        d = F.frechet_distance(np.zeros(2), s1, np.ones(2), s2)
    np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2)))
    assert d == pytest.approx(_closed_form(np.zeros(2), s1 + 1e-6 * np.eye(2), np.ones(2),
                                           s2 + 1e-6 * np.eye(2)) - 4e-6, rel=1e-9)
    monkeypatch.setattr(F.linalg, 'sqrtm', lambda a, *x, **k: real_sqrtm(a) + 0.01j * np.eye(2))
    with pytest.raises(ValueError, match='imaginary component'):
        F.frechet_distance(np.zeros(2), s1, np.ones(2), s2)
    monkeypatch.setattr(F.linalg, 'sqrtm', lambda a, *x, **k: real_sqrtm(a) + 1e-5j * np.eye(2))
    assert F.frechet_distance(np.zeros(2), s1, np.ones(2), s2) == pytest.approx(
        _closed_form(np.zeros(2), s1, np.ones(2), s2), rel=1e-9)


def test_npz_round_trip_and_formats(tmp_path):
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((30, 5))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # 30 >= 5 features: no singular-covariance warning
        stats = F.statistics_from_features(feats, 'standard')
    with pytest.warns(F.FIDWarning, match='only 4 images for 5-d'):
        F.statistics_from_features(feats[:4])
    np.testing.assert_allclose(stats.mu, feats.mean(0))
    np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False))
    F.save_statistics(tmp_path / 's.npz', stats)
    back = F.load_statistics(tmp_path / 's.npz')
    np.testing.assert_array_equal(back.mu, stats.mu)
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    assert (back.n, back.protocol) == (30, 'standard')
    # pytorch-fid's layout: only mu and sigma
    np.savez(tmp_path / 'pf.npz', mu=stats.mu, sigma=stats.sigma)
    pf = F.load_statistics(tmp_path / 'pf.npz')
    assert pf.n is None and pf.protocol is None
    np.savez(tmp_path / 'bad.npz', mu=stats.mu)
    with pytest.raises(ValueError, match='no sigma'):
        F.load_statistics(tmp_path / 'bad.npz')
    np.savez(tmp_path / 'bad2.npz', mean=stats.mu)
    with pytest.raises(ValueError, match='no mu and no sigma'):
        F.load_statistics(tmp_path / 'bad2.npz')
    (tmp_path / 'junk.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='cannot be read'):
        F.load_statistics(tmp_path / 'junk.npz')
    with pytest.raises(ValueError, match='at least 2'):
        F.statistics_from_features(feats[:1])


def test_npz_protocol_mismatch_is_refused(tmp_path, ours):
    legacy = F.FIDStatistics(np.zeros(2048), np.eye(2048), 10, 'legacy')
    F.save_statistics(tmp_path / 'legacy.npz', legacy)
    ex = F.FeatureExtractor(net=ours, device='cpu', workers=0)
    with pytest.raises(ValueError, match="'legacy' protocol"):
        ex.statistics(tmp_path / 'legacy.npz')


def test_folder_errors(tmp_path, ours):
    with pytest.raises(FileNotFoundError):
        F.list_images(tmp_path / 'absent')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no images found'):
        F.list_images(tmp_path / 'empty')
    (tmp_path / 'text').mkdir()
    (tmp_path / 'text' / 'captions.txt').write_text('a bird')
    with pytest.raises(ValueError, match='1 other files'):
        F.list_images(tmp_path / 'text')
    # recursive search; non-images skipped and reported; hidden files ignored
    _write_images(tmp_path / 'mixed' / 'sub', 2, seed=5)
    (tmp_path / 'mixed' / 'notes.txt').write_text('x')
    (tmp_path / 'mixed' / '.hidden.png').write_bytes(b'')
    (tmp_path / 'mixed' / 'UPPER.PNG').write_bytes((tmp_path / 'mixed' / 'sub' / 'img_000.png').read_bytes())
    found = F.list_images(tmp_path / 'mixed')
    assert [p.name for p in found.files] == ['UPPER.PNG', 'img_000.png', 'img_001.png']
    assert [p.name for p in found.skipped] == ['notes.txt']
    # an undecodable file with an image extension is an error naming it
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'bad.jpg').write_bytes(b'\xff\xd8garbage')
    with pytest.raises(ValueError, match='bad.jpg: cannot be read as an image') as info:
        F.run_batches(ours, [tmp_path / 'broken' / 'bad.jpg'], 2048, device='cpu', workers=1)
    assert 'worker' not in str(info.value)


@pytest.mark.filterwarnings('ignore:Palette images with Transparency')
@pytest.mark.parametrize('mode', ['RGB', 'L', 'RGBA', 'P', 'LA'])
def test_png_fast_decoding_equals_pil(tmp_path, mode):
    arr = np.random.default_rng(4).integers(0, 256, (9, 11, 4)).astype(np.uint8)
    img = Image.fromarray(arr, 'RGBA')
    img = img.convert('P', palette=Image.ADAPTIVE) if mode == 'P' else img.convert(mode)
    img.save(tmp_path / 'x.png')
    got = F.ImageFiles([tmp_path / 'x.png'])[0]
    want = np.asarray(Image.open(tmp_path / 'x.png').convert('RGB'))
    assert got.dtype == torch.uint8
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), want)


def test_mixed_sizes_are_resized_each(tmp_path, ours):
    _write_images(tmp_path / 'm', 1, seed=7, size=(40, 40))
    _write_images(tmp_path / 'n', 1, seed=8, size=(64, 48))
    files = [tmp_path / 'm' / 'img_000.png', tmp_path / 'n' / 'img_000.png']
    sizes = {}
    both = F.run_batches(ours, files, 2048, batch_size=2, device='cpu', workers=0,
                         channels_last=False, sizes=sizes)
    one = np.concatenate([F.run_batches(ours, [f], 2048, device='cpu', workers=0,
                                        channels_last=False) for f in files])
    assert sizes == {(40, 40): 1, (48, 64): 1}
    np.testing.assert_allclose(both, one, atol=1e-6)


def test_real_prep_cub_bbox(tmp_path):
    cub = tmp_path / 'data' / 'CUB_200_2011'
    (cub / 'images' / '001.A').mkdir(parents=True)
    Image.new('RGB', (200, 100), (10, 20, 30)).save(cub / 'images' / '001.A' / 'A_0001_1.jpg')
    (cub / 'images.txt').write_text('1 001.A/A_0001_1.jpg\n')
    (cub / 'bounding_boxes.txt').write_text('1 50.7 20.0 40.0 30.9\n')
    prep = F.make_real_prep('cub-bbox', cub / 'images')
    assert prep.bboxes == {'A_0001_1': (50, 20, 40, 30)}  # truncated as AttnGAN's astype(int)
    img = Image.open(cub / 'images' / '001.A' / 'A_0001_1.jpg').convert('RGB')
    crop = F.crop_like_training(img, (50, 20, 40, 30))
    assert crop.size == (60, 60)  # r = 30 about (70, 35): x 40..100, y 5..65
    assert prep(img, cub / 'images' / '001.A' / 'A_0001_1.jpg').size == (256, 256)
    with pytest.raises(ValueError, match='no bounding box'):
        prep(img, tmp_path / 'other.jpg')
    with pytest.raises(FileNotFoundError, match='--cub-dir'):
        F.make_real_prep('cub-bbox', tmp_path / 'elsewhere')


def _cli():
    from attngan.commands import fid
    return fid


def test_cli_missing_weights_names_file_and_url(tmp_path, folders, monkeypatch, capsys):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    with pytest.raises(WeightsNotFoundError, match=FID_WEIGHTS_FILE):
        fid_inception_v3()
    rc = _cli().main([str(folders[0]), str(folders[1]), '--device', 'cpu'])
    err = capsys.readouterr().err
    assert rc == 1
    assert FID_WEIGHTS_FILE in err and 'https://github.com/mseitzer' in err
    assert str(tmp_path / 'torch' / 'hub' / 'checkpoints') in err


def test_cli_save_stats_and_bad_npz(tmp_path, folders, state_dict, capsys):
    weights = tmp_path / 'w.pth'
    torch.save(state_dict, weights)
    out = tmp_path / 'a.npz'
    cli = _cli()
    rc = cli.main([str(folders[0]), '--save-stats', str(out), '--weights', str(weights),
                   '--device', 'cpu', '--workers', '0', '--batch-size', '4'])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert 'standard (TTUR / pytorch-fid)' in text and str(weights) in text
    assert f'{N_IMAGES} images, all 40x40' in text
    s = F.load_statistics(out)
    assert s.n == N_IMAGES and s.protocol == 'standard'
    np.savez(tmp_path / 'nomu.npz', sigma=np.eye(3))
    rc = cli.main([str(out), str(tmp_path / 'nomu.npz'), '--weights', str(weights)])
    assert rc == 1 and 'no mu' in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    rc = cli.main([str(out), str(tmp_path / 'empty'), '--weights', str(weights)])
    assert rc == 1 and 'no images found' in capsys.readouterr().err
