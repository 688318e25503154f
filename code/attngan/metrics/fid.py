"""Fréchet Inception Distance: image folders / .npz -> statistics -> distance.

Protocols (``mode``):

* ``'standard'``: TTUR / pytorch-fid. FID Inception (TF graph 2015-12-05), images resized
  bilinearly to 299 x 299 on the device (align_corners=False, no antialias), scaled to
  [-1, 1], 2048-d pool3 features. On the same images and weights the distance equals
  pytorch-fid's (tests check 1e-3; features agree to ~1e-6, or bit for bit with ``exact``).
* ``'legacy'``: the DM-GAN / DF-GAN evaluation code behind the AttnGAN-lineage tables.
  Torchvision's ImageNet Inception-v3, PIL bilinear resize to 299 x 299 in the loader, their
  input transform (see LegacyInceptionFeatures), 2048-d pool features. Their script also
  dropped the last partial batch of 64 images; here every image is used.

The distance follows pytorch-fid / TTUR exactly: ``scipy.linalg.sqrtm`` of sigma1 @ sigma2,
a retry with ``eps`` added to both diagonals when the root is not finite, and an error when
the root's diagonal has an imaginary part above 1e-3 (smaller ones are dropped).

Folders are searched recursively for images (extensions as pytorch-fid: bmp jpg jpeg pgm png
ppm tif tiff webp, any case); other files are skipped and reported in ``ImageList.skipped``
(sample folders often hold caption .txt files). A file with an image extension that does not
decode is an error naming it. Images of any size mix freely (each is resized to 299).
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from scipy import linalg
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError, MissingFileError
from .inception import (FEATURE_DIM, INPUT_SIZE, FIDInceptionV3, LegacyInceptionFeatures, fold_batchnorm,
                        fid_inception_v3, legacy_inception)

IMAGE_EXTENSIONS = frozenset({'bmp', 'jpg', 'jpeg', 'pgm', 'png', 'ppm', 'tif', 'tiff', 'webp'})
MODES = ('standard', 'legacy')
REAL_PREPS = ('none', 'cub-bbox', 'resize256')


class FIDWarning(UserWarning):
    """Something that makes a FID less trustworthy but still computable."""


# ----------------------------------------------------------------------------- image files

@dataclass
class ImageList:
    """Image files found under ``root`` (sorted) and the non-image files skipped."""
    root: Path
    files: list[Path]
    skipped: list[Path] = field(default_factory=list)

    def __len__(self):
        return len(self.files)


def list_images(path: str | os.PathLike) -> ImageList:
    """Recursively list the images under ``path`` (hidden files and folders are ignored).

    Raises FileNotFoundError (no such path), NotADirectoryError (a file that is not .npz
    is given) or ValueError (no image found; the message counts the other files).
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise MissingFileError(f'{root}: no such folder or .npz file')
    if not root.is_dir():
        raise NotADirectoryError(f'{root}: expected a folder of images or a .npz with mu and sigma')
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        for name in filenames:
            if name.startswith('.'):
                continue
            p = Path(dirpath) / name
            (files if p.suffix[1:].lower() in IMAGE_EXTENSIONS else skipped).append(p)
    if not files:
        extra = f'; {len(skipped)} other files (e.g. {skipped[0].name}) were skipped' if skipped else ''
        raise InputError(f'{root}: no images found (searched recursively for '
                         f"{', '.join(sorted(IMAGE_EXTENSIONS))}){extra}")
    return ImageList(root, sorted(files), sorted(skipped))


def open_rgb(path: Path) -> Image.Image:
    """PIL RGB image; ValueError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as img:
            return img.convert('RGB')
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f'{path}: cannot be read as an image ({e})') from None


# ----------------------------------------------------------------------------- real-image prep

class ResizePrep:
    """Resize every image to ``size x size`` (PIL bilinear): the student project's real set."""

    def __init__(self, size: int = 256):
        self.size = size
        self.name = f'resize{size}'

    def __call__(self, img: Image.Image, path: Path) -> Image.Image:
        return img.resize((self.size, self.size), Image.BILINEAR)

    def describe(self) -> str:
        return f'resized to {self.size}x{self.size} (PIL bilinear)'


def load_cub_bboxes(cub_dir: str | os.PathLike) -> dict[str, tuple[int, int, int, int]]:
    """``CUB_200_2011/{images,bounding_boxes}.txt`` -> {image stem: (x, y, w, h)} (ints).

    Values are truncated to int as AttnGAN's loader does (pandas ``astype(int)``).
    """
    cub = Path(cub_dir)
    names = {}
    for f in ('images.txt', 'bounding_boxes.txt'):
        if not (cub / f).is_file():
            raise MissingFileError(f'{cub / f}: missing (needed for --real-prep cub-bbox; '
                                    f'give the CUB_200_2011 folder with --cub-dir)')
    for line in (cub / 'images.txt').read_text().split('\n'):
        if line.strip():
            idx, rel = line.split()
            names[idx] = Path(rel).stem
    boxes = {}
    for line in (cub / 'bounding_boxes.txt').read_text().split('\n'):
        if line.strip():
            idx, *xywh = line.split()
            boxes[names[idx]] = tuple(int(float(v)) for v in xywh)
    return boxes


def find_cub_dir(start: str | os.PathLike) -> Path | None:
    """The CUB_200_2011 folder at or above ``start`` (or a ``CUB_200_2011`` child of one)."""
    p = Path(start).resolve()
    for d in (p, *p.parents):
        for cand in (d, d / 'CUB_200_2011'):
            if (cand / 'bounding_boxes.txt').is_file() and (cand / 'images.txt').is_file():
                return cand
    return None


def crop_like_training(img: Image.Image, bbox: Sequence[int]) -> Image.Image:
    """AttnGAN's bird crop (datasets.get_imgs): a square of side 1.5 max(w, h) about the box
    centre, clipped to the image."""
    # TODO: use attngan.data's crop once that module settles; this repeats its rule.
    x, y, w, h = bbox
    width, height = img.size
    r = int(max(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return img.crop([max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)])


class CubBBoxPrep:
    """Crop real CUB images like the training images, then resize to ``size x size``."""

    def __init__(self, bboxes: dict[str, tuple[int, int, int, int]], size: int = 256,
                 cub_dir: str = ''):
        self.bboxes, self.size, self.cub_dir = bboxes, size, cub_dir
        self.name = 'cub-bbox'

    def __call__(self, img: Image.Image, path: Path) -> Image.Image:
        box = self.bboxes.get(path.stem)
        if box is None:
            raise InputError(f'{path}: no bounding box for {path.stem!r} in '
                             f'{self.cub_dir}/bounding_boxes.txt (is this a CUB image?)')
        return crop_like_training(img, box).resize((self.size, self.size), Image.BILINEAR)

    def describe(self) -> str:
        return (f'cropped to the AttnGAN training box (1.5 x max side of the CUB bounding box, '
                f'{self.cub_dir}) and resized to {self.size}x{self.size} (PIL bilinear)')


def make_real_prep(name: str, image_root: str | os.PathLike | None = None,
                   cub_dir: str | os.PathLike | None = None):
    """``'none'`` -> None, ``'resize256'`` -> ResizePrep, ``'cub-bbox'`` -> CubBBoxPrep."""
    if name == 'none':
        return None
    if name == 'resize256':
        return ResizePrep(256)
    if name == 'cub-bbox':
        found = Path(cub_dir) if cub_dir else (find_cub_dir(image_root) if image_root else None)
        if found is None:
            raise MissingFileError(f'--real-prep cub-bbox: no CUB_200_2011 folder (with images.txt '
                                    f'and bounding_boxes.txt) at or above {image_root}; '
                                    f'give it with --cub-dir')
        return CubBBoxPrep(load_cub_bboxes(found), 256, str(found))
    raise InputError(f'unknown real-image preparation {name!r}; choose from {REAL_PREPS}')


# ----------------------------------------------------------------------------- loading

class ImageFiles(Dataset):
    """Decodes images to ``uint8 3 x H x W`` tensors (in DataLoader workers).

    ``prep(img, path)`` runs first (real-set preparation); ``size`` then resizes with PIL
    bilinear to ``size x size`` (legacy protocol / IS); otherwise the native size is kept.
    """

    def __init__(self, files: Sequence[Path], prep: Callable | None = None, size: int | None = None):
        self.files, self.prep, self.size = list(files), prep, size

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int):
        path = Path(self.files[i])
        if self.prep is None and self.size is None and path.suffix.lower() == '.png':
            t = _decode_png(path)
            if t is not None:
                return t
        try:
            img = open_rgb(path)
            if self.prep is not None:
                img = self.prep(img, path)
        except (ValueError, OSError) as e:  # re-raised by the main process, without worker noise
            return LoadError(str(e))
        if self.size is not None and img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def _decode_png(path: Path) -> torch.Tensor | None:
    """libpng through torchvision.io (~1.5x faster than PIL; PNG is lossless, so the pixels equal
    PIL's ``convert('RGB')``); None for anything unusual (16-bit, errors) to fall back to PIL."""
    try:
        with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its decoders
            warnings.simplefilter('ignore', DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_png, read_file
            t = decode_png(read_file(str(path)), mode=ImageReadMode.RGB)
    except Exception:  # noqa: BLE001 - PIL then decodes it or reports the error
        return None
    return t if t.dtype == torch.uint8 and t.dim() == 3 and t.shape[0] == 3 else None


@dataclass
class LoadError:
    """An image that could not be loaded or prepared (message names the file)."""
    message: str


def collate_images(batch: list):
    """Stack equal-sized images (``B x 3 x H x W`` uint8); a list when sizes differ; the first
    LoadError if any image failed."""
    for t in batch:
        if isinstance(t, LoadError):
            return t
    if all(t.shape == batch[0].shape for t in batch):
        return torch.stack(batch)
    return batch


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return min(8, n)


@contextmanager
def _fp32_convolutions(device: torch.device):
    """True fp32 cuDNN convolutions (no TF32: it moves features by ~1e-3 relative), restored
    afterwards."""
    if device.type != 'cuda':
        yield
        return
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def run_batches(net: torch.nn.Module, files: Sequence[Path], out_dim: int, *,
                batch_size: int = 50, device: str | torch.device | None = None,
                workers: int | None = None, prep: Callable | None = None,
                loader_size: int | None = None, channels_last: bool | None = None,
                fold_bn: bool | None = None, progress: bool = False, desc: str = 'images',
                sizes: dict | None = None) -> np.ndarray:
    """Run ``net.preprocess`` + ``net.forward_preprocessed`` over image files -> ``N x out_dim``
    float64 (rows in file order).

    Decoding runs in ``workers`` DataLoader processes; batches travel as uint8 and are
    converted and resized on the device; cuDNN runs in true fp32 (no TF32). ``channels_last``
    (default: on CPU only, where oneDNN runs it ~1.5x faster; slower in fp32 cuDNN) changes
    results only by float rounding (~1e-7); False gives pytorch-fid's exact CPU arithmetic.
    ``fold_bn`` (default: as ``channels_last``) runs a copy of ``net`` with its BatchNorms folded into
    the convolutions (:func:`fold_batchnorm`: ~12% less CPU time, float rounding again).
    ``sizes``, if given, is filled with {(H, W) as decoded (after ``prep``): count}.
    """
    if len(files) == 0:
        raise InputError('no images to process')
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    workers = default_workers() if workers is None else workers
    if channels_last is None:
        channels_last = device.type == 'cpu'
    if fold_bn is None:
        fold_bn = channels_last
    net = (fold_batchnorm(net) if fold_bn else net).to(device).eval()
    mf = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=mf)
    loader = DataLoader(ImageFiles(files, prep, loader_size), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=collate_images,
                        pin_memory=device.type == 'cuda',
                        prefetch_factor=4 if workers > 0 else None)
    chunks = []  # kept on the device until the end: no synchronisation per batch
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(files), desc=desc, unit='img', leave=False)
    with torch.inference_mode(), _fp32_convolutions(device):
        for batch in loader:
            if isinstance(batch, LoadError):
                raise InputError(batch.message)
            if sizes is not None:
                for t in batch:
                    hw = tuple(t.shape[-2:])
                    sizes[hw] = sizes.get(hw, 0) + 1
            if isinstance(batch, list):  # mixed sizes: resize one by one, then batch
                x = torch.cat([net.preprocess(t.unsqueeze(0).to(device)) for t in batch])
            else:
                x = net.preprocess(batch.to(device, non_blocking=True))
            y = net.forward_preprocessed(x.contiguous(memory_format=mf))
            if y.shape[1:] != (out_dim,):
                raise InputError(f'the network gave {tuple(y.shape[1:])} outputs; expected ({out_dim},)')
            chunks.append(y.float())
            if bar is not None:
                bar.update(len(y))
    if bar is not None:
        bar.close()
    return torch.cat(chunks).cpu().double().numpy()


# ----------------------------------------------------------------------------- statistics

@dataclass
class FIDStatistics:
    """Mean ``(D,)`` and covariance ``(D, D)`` of the features; ``n`` images; protocol id."""
    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    protocol: str | None = None
    source: str = ''
    skipped: list = field(default_factory=list)
    sizes: dict = field(default_factory=dict)


def statistics_from_features(features: np.ndarray, protocol: str | None = None,
                             source: str = '') -> FIDStatistics:
    """``N x D`` features -> mean and (N-1)-normalised covariance, as pytorch-fid (float64)."""
    features = np.asarray(features, dtype=np.float64)
    n, d = features.shape
    if n < 2:
        raise InputError(f'{source or "features"}: {n} image(s); FID needs at least 2 '
                         f'(and 2048 or more for a non-singular covariance)')
    if n < d:
        warnings.warn(f'{source or "features"}: only {n} images for {d}-d features: the covariance '
                      f'is singular and the FID is biased upwards (use >= {d}, ideally '
                      f'10,000+ images); computing it anyway', FIDWarning,
                      stacklevel=2)
    return FIDStatistics(features.mean(axis=0), np.cov(features, rowvar=False), n, protocol, source)


def save_statistics(path: str | os.PathLike, stats: FIDStatistics) -> None:
    """``.npz`` with ``mu`` and ``sigma`` (pytorch-fid's layout) plus ``n`` and ``protocol``."""
    extra = {}
    if stats.n is not None:
        extra['n'] = np.int64(stats.n)
    if stats.protocol is not None:
        extra['protocol'] = np.array(stats.protocol)
    np.savez_compressed(path, mu=stats.mu, sigma=stats.sigma, **extra)


def load_statistics(path: str | os.PathLike) -> FIDStatistics:
    """Read a ``.npz`` with ``mu`` ``(D,)`` and ``sigma`` ``(D, D)`` (pytorch-fid's or ours)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingFileError(f'{p}: no such .npz file')
    try:
        with np.load(p, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - any unreadable archive gets one clear message
        raise InputError(f'{p}: cannot be read as .npz ({e})') from None
    missing = [k for k in ('mu', 'sigma') if k not in data]
    if missing:
        raise InputError(f'{p}: no {" and no ".join(missing)} array (it holds '
                         f'{sorted(data) or "nothing"}); FID statistics need mu (D,) and sigma (D, D)')
    mu, sigma = np.atleast_1d(data['mu']).astype(np.float64), np.atleast_2d(data['sigma']).astype(np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise InputError(f'{p}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (D,) and (D, D)')
    n = int(data['n']) if 'n' in data else None
    protocol = str(data['protocol']) if 'protocol' in data else None
    return FIDStatistics(mu, sigma, n, protocol, str(p))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), as TTUR / pytorch-fid.

    When ``sqrtm`` of the product is not finite (singular product), ``eps * I`` is added to
    both covariances and the root retaken (with a FIDWarning). An imaginary part above 1e-3
    on the root's diagonal raises ValueError; smaller ones (numerical noise) are dropped.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape:
        raise InputError(f'mean vectors differ in length: {mu1.shape} vs {mu2.shape}')
    if sigma1.shape != sigma2.shape:
        raise InputError(f'covariances differ in shape: {sigma1.shape} vs {sigma2.shape}')
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', linalg.LinAlgWarning)
        warnings.simplefilter('ignore', RuntimeWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            warnings.warn(f'FID: the covariance product is singular; adding {eps} to the diagonal '
                          f'of both covariances', FIDWarning, stacklevel=2)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise InputError(f'FID: the matrix square root has an imaginary component of '
                             f'{np.max(np.abs(covmean.imag)):.3g} (ill-conditioned statistics)')
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# ----------------------------------------------------------------------------- extractor

PROTOCOL_TEXT = {
    'standard': ('standard (TTUR / pytorch-fid)',
                 'network: FID Inception-v3 (TensorFlow graph 2015-12-05), 2048-d pool3 features',
                 'input: bilinear resize to 299x299 on the device (align_corners=False, no '
                 'antialias), scaled to [-1, 1]',
                 'distance: scipy sqrtm, eps 1e-6 retry when singular',
                 'comparable with TTUR / pytorch-fid numbers (e.g. the DualAttnGAN student project), '
                 'not with the DM-GAN-lineage tables'),
    'legacy': ('legacy (DM-GAN / DF-GAN evaluation code)',
               'network: torchvision ImageNet Inception-v3, 2048-d pool features',
               'input: PIL bilinear resize to 299x299, their [0,1]-input transform',
               'distance: scipy sqrtm, eps 1e-6 retry when singular',
               'comparable with the AttnGAN-lineage tables (AttnGAN 23.98, DM-GAN 16.09 on CUB), '
               'not with TTUR / pytorch-fid numbers'),
}


class FeatureExtractor:
    """Images -> ``N x 2048`` features under one protocol.

    ``net`` overrides the network (tests and benchmarks pass rule-filled weights); otherwise
    the weights are looked up (``weights`` path or the torch hub cache).
    """

    def __init__(self, mode: str = 'standard', weights: str | os.PathLike | None = None, *,
                 device: str | torch.device | None = None, batch_size: int = 50,
                 workers: int | None = None, channels_last: bool | None = None,
                 net: torch.nn.Module | None = None):
        if mode not in MODES:
            raise InputError(f'unknown FID mode {mode!r}; choose from {MODES}')
        self.mode = mode
        if net is None:
            net = fid_inception_v3(weights) if mode == 'standard' else legacy_inception(weights)
        expected = FIDInceptionV3 if mode == 'standard' else LegacyInceptionFeatures
        if not isinstance(net, expected):
            raise TypeError(f'mode {mode!r} needs a {expected.__name__}, got {type(net).__name__}')
        self.net = net
        self.weights_path = getattr(net, 'weights_path', '(weights set by the caller)')
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.batch_size, self.workers, self.channels_last = batch_size, workers, channels_last

    @property
    def protocol_id(self) -> str:
        return self.mode

    def describe(self) -> str:
        """Multi-line protocol statement: name, network, weights, input, distance, comparability."""
        name, net, inp, dist, comp = PROTOCOL_TEXT[self.mode]
        return '\n  '.join([name, net, f'weights: {self.weights_path}', inp, dist, comp])

    def features(self, files: Sequence[Path], prep: Callable | None = None,
                 progress: bool = False, sizes: dict | None = None) -> np.ndarray:
        """``N x 2048`` float64 features of the image files, in order."""
        return run_batches(self.net, files, FEATURE_DIM, batch_size=self.batch_size,
                           device=self.device, workers=self.workers, prep=prep,
                           loader_size=INPUT_SIZE if self.mode == 'legacy' else None,
                           channels_last=self.channels_last, progress=progress, sizes=sizes)

    def statistics(self, path: str | os.PathLike, prep: Callable | None = None,
                   progress: bool = False) -> FIDStatistics:
        """Statistics of a folder (recursive) or a ``.npz`` (``prep`` ignored for .npz)."""
        p = Path(path).expanduser()
        if p.suffix.lower() == '.npz' and not p.is_dir():
            stats = load_statistics(p)
            if stats.protocol is not None and stats.protocol.split('+')[0] != self.mode:
                raise InputError(f'{p} was computed with the {stats.protocol!r} protocol; this run '
                                 f'uses {self.mode!r}: the two FIDs are not comparable')
            if stats.mu.shape[0] != FEATURE_DIM:
                raise InputError(f'{p}: {stats.mu.shape[0]}-d statistics; pool3 features are '
                                 f'{FEATURE_DIM}-d')
            return stats
        images = list_images(p)
        sizes: dict = {}
        feats = self.features(images.files, prep, progress, sizes)
        protocol = self.mode + (f"+{getattr(prep, 'name', type(prep).__name__)}" if prep else '')
        stats = statistics_from_features(feats, protocol, str(p))
        stats.skipped, stats.sizes = images.skipped, sizes
        return stats


def fid_from_paths(path1, path2, mode: str = 'standard', weights=None, *, prep2: Callable | None = None,
                   **extractor_kw) -> float:
    """FID between two folders / .npz files; ``prep2`` prepares the second (real) folder."""
    ex = FeatureExtractor(mode, weights, **extractor_kw)
    s1, s2 = ex.statistics(path1), ex.statistics(path2, prep2)
    return frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
