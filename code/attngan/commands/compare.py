"""Compare training runs (e.g. AttnGAN vs DualAttnGAN) over epochs: IS, FID and R-precision.

    python eval/compare.py --runs attngan=output/birds_attn2_X dualattn=output/birds_dualattn_Y \\
        --epochs 100 150 200 [--n 30000] [--out comparison]

Each RUN_DIR is a training run folder: ``config.yaml`` and ``Model/netG_epoch_<N>.pth``. For each
run and epoch the test-split sample set is generated into ``Model/netG_epoch_<N>/valid/single``
(main.py's sampling layout and images, seed SAMPLE.SEED; a folder already holding the first
``--n`` samples is reused), then scored:

* IS: Inception Score of the sample set (eval/inception_score.py's protocol; ``--is-classifier``).
* FID: against the real images (``--real DIR|NPZ``; default the test split's images of the first
  run's dataset, cropped to the bird box like the training images when the dataset has bounding
  boxes, else resized to 256); eval/fid.py's protocol (``--fid-mode``, ``--fid-weights``).
* R-precision: eval/r_precision.py's protocol with the run's training DAMSM encoders (optimistic)
  or ``--net_e``; computed on the generated tensors in the same pass as the samples (a reused
  folder's images are regenerated in memory: same captions, seed and batch size).

Writes ``comparison.csv`` (one row per run and epoch), ``comparison.md`` (protocols and a table)
and one PNG per metric against epoch with a line per run (matplotlib; mean +- std bars).

A metric that cannot be computed (missing Inception weights, a split too small for R, a missing
checkpoint) leaves NaN in its cells and a note; the others go on. ``--random-weights`` replaces
the Inception networks by deterministic rule-filled weights so that toy runs (CI) exercise the
whole pipeline without downloads: such IS/FID numbers are only a smoke test, and every output
says so. Exit status: 0 when the comparison was written, 1 on bad arguments or run folders.
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from attngan.config import ConfigError, load_config
from attngan.errors import AttnGANError, InputError
from attngan.data import build_dataset
from attngan.metrics import fid as F
from attngan.metrics import inception as I
from attngan.metrics import inception_score as IS
from attngan.metrics import r_precision_gen as RG

METRICS = ('is', 'fid', 'rprec')
COLUMNS = ['model', 'epoch', 'n_images', 'is_mean', 'is_std', 'fid', 'r_precision_mean', 'r_precision_std',
           'inception_weights', 'samples', 'sample_dir', 'note']
PLOTS = {  # file stem: (title, mean column, std column, direction)
    'is': ('Inception Score', 'is_mean', 'is_std', 'higher is better'),
    'fid': ('FID', 'fid', None, 'lower is better'),
    'r_precision': ('R-precision', 'r_precision_mean', 'r_precision_std', 'higher is better'),
}
PLOT_METRIC = {'is': 'is', 'fid': 'fid', 'r_precision': 'rprec'}
SMOKE = 'rule-filled random Inception weights (--random-weights): IS and FID are a smoke test only'


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--runs', nargs='+', required=True, metavar='NAME=RUN_DIR')
    p.add_argument('--epochs', nargs='+', type=int, default=None,
                   help='epochs to compare (default: those with a netG_epoch_<N>.pth in every run)')
    p.add_argument('--n', type=int, default=30000, help='images per run and epoch (default: %(default)s)')
    p.add_argument('--metrics', default='is,fid,rprec', help='comma-separated subset of is,fid,rprec')
    p.add_argument('--out', default='comparison', help='output folder (default: %(default)s)')
    p.add_argument('--random-weights', action='store_true',
                   help='rule-filled Inception weights for IS and FID (CI / toy runs; numbers are a smoke test)')
    p.add_argument('--is-classifier', default='imagenet', help="'imagenet' or a checkpoint of eval/finetune_inception.py")
    p.add_argument('--is-weights', default=None, help='ImageNet Inception-v3 weight file (default: torch hub cache)')
    p.add_argument('--is-splits', type=int, default=10)
    p.add_argument('--fid-mode', choices=F.MODES, default='standard')
    p.add_argument('--fid-weights', default=None, help='FID Inception weight file (default: torch hub cache)')
    p.add_argument('--real', default=None, help='real images: folder or .npz statistics (default: test split)')
    p.add_argument('--real-prep', choices=('auto',) + F.REAL_PREPS, default='auto',
                   help='real-image preparation (auto: bird-box crop for the default set when the dataset has '
                        'boxes, else resize256; none for --real)')
    p.add_argument('--net_e', default=None, help='DAMSM text encoder for R-precision (default: each run\'s TRAIN.NET_E)')
    p.add_argument('--r-candidates', type=int, default=100, help='R of R-precision (default: %(default)s)')
    p.add_argument('--r-folds', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=None, help='generation batch (default: TRAIN.BATCH_SIZE)')
    p.add_argument('--eval-batch-size', type=int, default=50, help='Inception batch size')
    p.add_argument('--workers', type=int, default=None, help='image-decoding processes (default: min(8, CPUs))')
    p.add_argument('--gpu', type=int, default=None, help='GPU index; -1 for the CPU (default: GPU 0 if any)')
    p.add_argument('--seed', type=int, default=None, help='default: SAMPLE.SEED of each run')
    p.add_argument('--data_dir', default='', help="overrides every run's DATA_DIR")
    p.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                   help="override a key of every run's config (repeatable)")
    return p


# ----------------------------------------------------------------------------- inputs

def parse_runs(items: list[str]) -> dict[str, Path]:
    runs = {}
    for item in items:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            raise ConfigError(f'--runs {item!r}: expected NAME=RUN_DIR')
        if name in runs:
            raise ConfigError(f'--runs: the name {name!r} is given twice')
        root = Path(path).expanduser().resolve()
        if not (root / 'config.yaml').is_file() and (root.parent / 'config.yaml').is_file():
            root = root.parent  # the run's Model folder was given
        if not (root / 'config.yaml').is_file():
            raise ConfigError(f'--runs {name}={path}: no config.yaml in {root} (expected a training run '
                              f'folder holding config.yaml and Model/netG_epoch_<N>.pth)')
        runs[name] = root
    return runs


def checkpoint(run: Path, epoch: int) -> Path:
    return run / 'Model' / f'netG_epoch_{epoch}.pth'


def available_epochs(run: Path) -> set[int]:
    out = set()
    for p in (run / 'Model').glob('netG_epoch_*.pth'):
        try:
            out.add(int(p.stem.rsplit('_', 1)[1]))
        except ValueError:
            pass
    return out


def run_config(run: Path, args, device: torch.device):
    cfg = load_config(run / 'config.yaml', args.overrides)
    cfg.TRAIN.FLAG = False
    cfg.B_VALIDATION = True
    cfg.CUDA = device.type == 'cuda'
    if args.data_dir:
        cfg.DATA_DIR = str(Path(args.data_dir).resolve())
    return cfg


def choose_device(gpu: int | None) -> torch.device:
    if gpu is not None and gpu < 0 or not torch.cuda.is_available():
        return torch.device('cpu')
    return torch.device('cuda', gpu or 0)


# ----------------------------------------------------------------------------- metric networks

class Scorers:
    """The IS classifier, FID extractor and real statistics (each None when unavailable, with why)."""

    def __init__(self, args, device: torch.device, metrics: set[str]):
        self.args, self.device, self.metrics = args, device, metrics
        self.classifier = self.extractor = self.real = None
        self.errors: dict[str, str] = {}
        self.lines: list[str] = []
        kw = dict(batch_size=args.eval_batch_size, device=device, workers=args.workers)
        self.kw = kw
        if 'is' in metrics:
            try:
                if args.random_weights:
                    self.classifier = I.rule_fill_(I.InceptionClassifier(1000, description=SMOKE))
                else:
                    self.classifier = IS.get_classifier(args.is_classifier, args.is_weights)
                self.lines.append(f'IS: {self.classifier.description}; PIL bilinear resize to 299x299, '
                                  f'[-1, 1]; {args.is_splits} consecutive splits; mean +- std')
            except AttnGANError as e:
                self._fail('is', e)
        if 'fid' in metrics:
            try:
                net = None
                if args.random_weights:
                    net = I.FIDInceptionV3() if args.fid_mode == 'standard' else I.LegacyInceptionFeatures()
                    I.rule_fill_(net)
                    net.weights_path = SMOKE
                self.extractor = F.FeatureExtractor(args.fid_mode, args.fid_weights, net=net, **kw)
                self.lines.append(f'FID: {self.extractor.describe()}')
            except AttnGANError as e:
                self._fail('fid', e)

    def _fail(self, metric: str, e: Exception) -> None:
        self.errors[metric] = str(e).splitlines()[0]
        self.lines.append(f'{metric.upper()}: not computed: {e}')
        print(f'warning: {metric.upper()} will not be computed: {e}', file=sys.stderr)

    def real_statistics(self, dataset) -> None:
        """Statistics of the real set, once (``dataset``: the first run's test split)."""
        if self.extractor is None or self.real is not None or 'fid' in self.errors:
            return
        args = self.args
        try:
            if args.real:
                prep_name = 'none' if args.real_prep == 'auto' else args.real_prep
                prep = F.make_real_prep(prep_name, args.real)
                self.real = self.extractor.statistics(args.real, prep)
                what = f'{args.real}' + (f'; {prep.describe()}' if prep is not None and self.real.sizes else '')
            else:
                files = [dataset.image_path(k) for k in dataset.filenames]
                files = [f for f in files if f.is_file()]
                if not files:
                    raise InputError(f'no test-split image of {dataset.data_dir} exists (give --real DIR|NPZ)')
                prep = self._default_prep(dataset)
                feats = self.extractor.features(files, prep)
                self.real = F.statistics_from_features(feats, f'{args.fid_mode}+{prep.name}', str(dataset.image_dir))
                what = f'the {len(files)} test-split images under {dataset.image_dir}; {prep.describe()}'
            self.lines.append(f'FID real set: {what} ({self.real.n if self.real.n is not None else "?"} images)')
        except AttnGANError as e:
            self._fail('fid', e)
            self.extractor = None

    def _default_prep(self, dataset):
        name = self.args.real_prep
        if name == 'auto':
            name = 'cub-bbox' if dataset.bbox else 'resize256'
        if name == 'cub-bbox':
            if not dataset.bbox:
                raise InputError(f'--real-prep cub-bbox: {dataset.data_dir} has no bounding boxes')
            boxes = {Path(k).name: tuple(v) for k, v in dataset.bbox.items()}
            return F.CubBBoxPrep(boxes, 256, str(dataset.data_dir / 'CUB_200_2011'))
        return F.make_real_prep(name)

    def inception_score(self, files) -> tuple[float, float]:
        logits = IS.classifier_logits(files, self.classifier, **self.kw)
        return IS.inception_score_from_logits(logits, self.args.is_splits)

    def fid(self, files, source: str) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', F.FIDWarning)  # small-n warning: said once in the notes
            stats = F.statistics_from_features(self.extractor.features(files), self.args.fid_mode, source)
        return F.frechet_distance(stats.mu, stats.sigma, self.real.mu, self.real.sigma)


# ----------------------------------------------------------------------------- evaluation

def inception_weights(args, metrics: set[str]) -> str:
    """The CSV's inception_weights cell: which Inception weights IS/FID used ('' when neither ran)."""
    if not metrics & {'is', 'fid'}:
        return ''
    return 'random (smoke test)' if args.random_weights else 'pretrained'


def evaluate(name: str, run: Path, cfg, dataset, epoch: int, args, scorers: Scorers, device
             ) -> tuple[dict, str | None]:
    """One row of the comparison, and the R-precision protocol text (if computed)."""
    row = {c: '' for c in COLUMNS}
    row.update(model=name, epoch=epoch, n_images=args.n,
               inception_weights=inception_weights(args, scorers.metrics))
    for c in ('is_mean', 'is_std', 'fid', 'r_precision_mean', 'r_precision_std'):
        row[c] = math.nan
    notes = []
    ckpt = checkpoint(run, epoch)
    if not ckpt.is_file():
        row.update(samples='-', note=f'missing checkpoint {ckpt}')
        print(f'warning: {name} epoch {epoch}: {ckpt} does not exist', file=sys.stderr)
        return row, None
    cfg = copy.deepcopy(cfg)
    cfg.TRAIN.NET_G = str(ckpt)
    folder = ckpt.with_suffix('') / 'valid' / 'single'
    files = RG.sample_paths(folder, dataset.filenames, args.n)
    reuse = all(f.is_file() for f in files)
    row['sample_dir'] = str(folder)
    row['samples'] = 'reused' if reuse else 'generated'
    gen_kw = dict(batch_size=args.batch_size, seed=args.seed, dataset=dataset)
    rp, protocol = None, None
    t0 = time.time()
    if 'rprec' in scorers.metrics:
        try:
            rp = RG.r_precision_of_generator(cfg, device, args.n, net_e=args.net_e, n_candidates=args.r_candidates,
                                             n_folds=args.r_folds, save_dir=None if reuse else folder, **gen_kw)
            row.update(r_precision_mean=rp.mean, r_precision_std=rp.std)
            protocol = rp.describe(with_generator=False)
        except AttnGANError as e:
            notes.append(f'R-precision not computed: {e}')
            print(f'warning: {name} epoch {epoch}: R-precision not computed: {e}', file=sys.stderr)
    if rp is None and not reuse and (scorers.metrics & {'is', 'fid'}):
        try:
            RG.write_samples(cfg, device, args.n, folder, **gen_kw)
        except AttnGANError as e:
            row['note'] = f'generation failed: {e}'
            print(f'warning: {name} epoch {epoch}: generation failed: {e}', file=sys.stderr)
            return row, protocol
    if scorers.classifier is not None:
        try:
            row['is_mean'], row['is_std'] = scorers.inception_score(files)
        except AttnGANError as e:
            notes.append(f'IS not computed: {e}')
    if scorers.extractor is not None and scorers.real is not None:
        try:
            row['fid'] = scorers.fid(files, str(folder))
        except AttnGANError as e:
            notes.append(f'FID not computed: {e}')
    row['note'] = '; '.join(notes)
    print(f'{name} epoch {epoch}: IS {_pm(row["is_mean"], row["is_std"])}, FID {_fmt(row["fid"])}, '
          f'R-precision {_pm(row["r_precision_mean"], row["r_precision_std"], 4)} '
          f'({row["samples"]} {args.n} samples in {folder}; {time.time() - t0:.1f} s)')
    return row, protocol


def _fmt(x, digits: int = 2) -> str:
    return 'n/a' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'


def _pm(mean, std, digits: int = 2) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return 'n/a'
    return f'{mean:.{digits}f} ± {std:.{digits}f}'


# ----------------------------------------------------------------------------- outputs

def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f'{v:.6g}' if isinstance(v, float) and not math.isnan(v) else
                            ('nan' if isinstance(v, float) else v)) for k, v in r.items()})


def write_markdown(path: Path, rows: list[dict], protocol_lines: list[str], args, metrics: set[str]) -> str:
    lines = ['# Comparison over epochs', '']
    if args.random_weights:
        lines += [f'> **Warning: {SMOKE}** (not comparable with any published or real score).', '']
    lines += ['Protocols:', ''] + [f'- {line}' for line in protocol_lines] + ['']
    head = ['model', 'epoch']
    if 'is' in metrics:
        head.append('IS ↑')
    if 'fid' in metrics:
        head.append('FID ↓')
    if 'rprec' in metrics:
        head.append('R-precision ↑')
    lines += ['| ' + ' | '.join(head) + ' |', '|' + '|'.join(['---'] + ['---:'] * (len(head) - 1)) + '|']
    for r in rows:
        cells = [r['model'], str(r['epoch'])]
        if 'is' in metrics:
            cells.append(_pm(r['is_mean'], r['is_std']))
        if 'fid' in metrics:
            cells.append(_fmt(r['fid']))
        if 'rprec' in metrics:
            cells.append(_pm(r['r_precision_mean'], r['r_precision_std'], 4))
        lines.append('| ' + ' | '.join(cells) + ' |')
    notes = [f'- {r["model"]} epoch {r["epoch"]}: {r["note"]}' for r in rows if r['note']]
    if notes:
        lines += ['', 'Notes:', ''] + notes
    text = '\n'.join(lines) + '\n'
    path.write_text(text, encoding='utf-8')
    return text


#: Each metric's possible range: the plots never show values outside it (an R-precision axis below 0).
PLOT_RANGE = {'is': (1.0, None), 'fid': (0.0, None), 'r_precision': (0.0, 1.0)}
MARKERS, LINESTYLES = 'osD^v<>', ('-', '--', '-.', ':')


@dataclass
class Plot:
    """What :func:`plot_metric` drew: per series the plotted (x, y) (x dodged, NaN = a gap), the y limits."""
    lines: dict[str, tuple[list[float], list[float]]]
    ylim: tuple[float, float]


def plot_metric(path: Path, title: str, series: dict[str, list[tuple[float, float, float | None]]],
                subtitle: str = '', warning: str = '', value_range: tuple[float | None, float | None] = (None, None),
                size: tuple[float, float] = (9.0, 5.6), dpi: int = 100) -> Plot:
    """A line plot (matplotlib): ``series`` maps a label to (x, y, error or None) points; NaN y are gaps.

    Series that coincide stay visible: each has its own marker and line style and is shifted sideways by
    a small fraction of the x range. ``value_range``: (lowest, highest) possible value, the axis limits
    never pass (e.g. (0, 1) for R-precision)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    try:
        xs = sorted({x for pts in series.values() for x, _, _ in pts})
        span = (xs[-1] - xs[0]) if len(xs) > 1 else 1.0
        drawn = {}
        for k, (label, pts) in enumerate(series.items()):
            pts = sorted(pts, key=lambda t: t[0])
            dodge = (k - (len(series) - 1) / 2) * 0.008 * span
            x = [p[0] + dodge for p in pts]
            y = [p[1] for p in pts]
            err = [p[2] if p[2] is not None else 0.0 for p in pts]
            style = dict(marker=MARKERS[k % len(MARKERS)], linestyle=LINESTYLES[k % len(LINESTYLES)],
                         linewidth=2, markersize=7, label=label, capsize=4)
            ax.errorbar(x, y, yerr=err if any(err) else None, **style)
            drawn[label] = (x, y)
        values = [p[1] + sgn * (p[2] or 0.0) for pts in series.values() for p in pts if not math.isnan(p[1])
                  for sgn in (-1, 1)]
        if values:
            lo, hi = min(values), max(values)
            pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.05)
            lo, hi = lo - pad, hi + pad
            if value_range[0] is not None:
                lo = max(lo, value_range[0])
            if value_range[1] is not None:
                hi = min(hi, value_range[1])
            ax.set_ylim(lo, hi)
            ax.legend(loc='best')
        else:
            ax.text(0.5, 0.5, 'no values', transform=ax.transAxes, ha='center', va='center', color='gray',
                    fontsize=16)
        ax.set_xticks(xs)
        ax.set_xlabel('epoch')
        ax.grid(True, alpha=0.3)
        ax.set_title(title + (f'\n{subtitle}' if subtitle else ''))
        if warning:
            fig.text(0.5, 0.01, warning, ha='center', va='bottom', color='#c80000')
        fig.tight_layout(rect=(0, 0.04 if warning else 0, 1, 1))
        fig.savefig(path)
        return Plot(drawn, tuple(float(v) for v in ax.get_ylim()))
    finally:
        plt.close(fig)


def write_plots(out: Path, rows: list[dict], metrics: set[str], random_weights: bool) -> list[Path]:
    written = []
    for stem, (title, mean_col, std_col, direction) in PLOTS.items():
        if PLOT_METRIC[stem] not in metrics:
            continue
        series: dict[str, list] = {}
        for r in rows:
            e = r[std_col] if std_col else None
            series.setdefault(r['model'], []).append(
                (float(r['epoch']), float(r[mean_col]), None if e is None or math.isnan(e) else float(e)))
        warning = 'random Inception weights: smoke test only' if random_weights and stem != 'r_precision' else ''
        path = out / f'{stem}.png'
        plot_metric(path, f'{title} vs epoch', series, f'{direction}; n = {rows[0]["n_images"]} images'
                    + ('; bars: ± std' if std_col else ''), warning, value_range=PLOT_RANGE[stem])
        written.append(path)
    return written


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    metrics = {m.strip() for m in args.metrics.split(',') if m.strip()}
    bad = metrics - set(METRICS)
    if bad or not metrics:
        print(f'error: --metrics {args.metrics!r}: choose a comma-separated subset of {",".join(METRICS)}',
              file=sys.stderr)
        return 1
    try:
        runs = parse_runs(args.runs)
    except ConfigError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    epochs = args.epochs
    if epochs is None:
        common = set.intersection(*(available_epochs(r) for r in runs.values()))
        if not common:
            print('error: no netG_epoch_<N>.pth common to every run; give --epochs', file=sys.stderr)
            return 1
        epochs = sorted(common)
    if args.n < 1:
        print(f'error: --n must be positive, got {args.n}', file=sys.stderr)
        return 1
    device = choose_device(args.gpu)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f'Comparing {", ".join(f"{k} ({v})" for k, v in runs.items())} at epochs {epochs}; '
          f'{args.n} images each; metrics {",".join(m for m in METRICS if m in metrics)}; device {device}')
    if args.random_weights:
        print(f'WARNING: {SMOKE}')
    scorers = Scorers(args, device, metrics)
    rows, rp_protocols = [], {}
    for name, run in runs.items():
        try:
            cfg = run_config(run, args, device)
            dataset = build_dataset(cfg, 'test', require_images=False, transform=None, cache=False)
        except AttnGANError as e:
            print(f'warning: {name}: cannot load the run ({e}); its rows are empty', file=sys.stderr)
            for epoch in epochs:
                row = {c: math.nan for c in COLUMNS}
                row.update(model=name, epoch=epoch, n_images=args.n, inception_weights='', samples='-',
                           sample_dir='', note=f'run not loaded: {e}')
                rows.append(row)
            continue
        scorers.real_statistics(dataset)
        for epoch in epochs:
            row, protocol = evaluate(name, run, cfg, dataset, epoch, args, scorers, device)
            rows.append(row)
            if protocol and name not in rp_protocols:
                rp_protocols[name] = protocol
    lines = list(scorers.lines)
    if 'rprec' in metrics:
        by_text: dict[str, list[str]] = {}  # runs scored with the same encoders share one line
        for name, text in rp_protocols.items():
            by_text.setdefault(text, []).append(name)
        for text, names in by_text.items():
            lines.append(f'R-precision ({", ".join(names)}): '
                         + '; '.join(part.strip() for part in text.split('\n')))
        if not rp_protocols:
            lines.append('R-precision: not computed (see the notes)')
    lines.append(f'samples: the first {args.n} test-split samples of each checkpoint (captions cycled over the '
                 f'test images, seed {args.seed if args.seed is not None else "SAMPLE.SEED"}), in '
                 f'Model/netG_epoch_<N>/valid/single of each run')
    write_csv(out / 'comparison.csv', rows)
    md = write_markdown(out / 'comparison.md', rows, lines, args, metrics)
    plots = write_plots(out, rows, metrics, args.random_weights)
    print()
    print(md)
    print(f'wrote {out / "comparison.csv"}, {out / "comparison.md"} and {", ".join(p.name for p in plots)} in {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
