#!/usr/bin/env python
"""Dataset tools (see attngan.data): validate a DATA_DIR, convert COCO annotations or a custom image folder,
build the pre-cropped image cache.

  python prepare_data.py check-data --cfg cfg/bird_attn2.yml [--data_dir D] [--decode-images]
  python prepare_data.py coco --annotations DIR --out data/coco [--min-captions 5] [--filenames-from D]
  python prepare_data.py custom --images DIR --captions FILE --out data/mine [--bboxes FILE] [...]
  python prepare_data.py build-cache --cfg cfg/bird_attn2.yml [--data_dir D] [--cache-dir D]
"""
import argparse
import sys
import warnings
from pathlib import Path

from attngan.config import load_config
from attngan.errors import AttnGANError


def cmd_check(args) -> int:
    from attngan.data import data_dir_from_cfg
    from attngan.data.check import check_data
    cfg = load_config(args.cfg, args.set or ())
    data_dir = data_dir_from_cfg(cfg, args.data_dir)
    rep = check_data(data_dir, cfg.TEXT.CAPTIONS_PER_IMAGE, use_bbox=cfg.DATA.USE_BBOX,
                     decode_images=args.decode_images)
    print(rep.format())
    return 0 if rep.ok else 1


def cmd_coco(args) -> int:
    from attngan.data.convert import coco_annotation_files, convert_coco
    train_json, val_json = coco_annotation_files(args.annotations)
    if args.val_json:
        val_json = Path(args.val_json)
    print(f'train captions: {train_json}\ntest captions:  {val_json or "(none)"}')
    s = convert_coco(args.out, train_json, val_json, min_captions=args.min_captions,
                     filenames_from=args.filenames_from, overwrite=args.overwrite)
    print(f'wrote {args.out}: {s["train"]} train and {s["test"]} test images with captions')
    print(f'put the images at {Path(args.out) / "images"}/<stem>.jpg (e.g. COCO_train2014_000000057870.jpg), '
          f'then run: python prepare_data.py check-data --cfg cfg/coco_attn2.yml --data_dir {args.out}')
    return 0


def cmd_custom(args) -> int:
    from attngan.data.convert import convert_custom
    s = convert_custom(args.images, args.captions, args.out, captions_per_image=args.captions_per_image,
                       classes=args.classes, split_by=args.split_by, test_fraction=args.test_fraction,
                       seed=args.seed, bboxes=args.bboxes, link=args.link, overwrite=args.overwrite)
    print(f'wrote {s["out_dir"]} ({s["layout"]} layout): {s["train"]} train / {s["test"]} test images, '
          f'{s["classes"]} classes, vocabulary {s["vocabulary"]} words')
    print(f'in your config: DATA_DIR: {s["out_dir"]}, TEXT.CAPTIONS_PER_IMAGE: {s["captions_per_image"]}')
    return 0


def cmd_cache(args) -> int:
    from attngan.data import build_dataset
    cfg = load_config(args.cfg, args.set or ())
    for split in ('train', 'test'):
        kw = {'cache': True}
        if args.cache_dir:
            kw['cache_dir'] = args.cache_dir
        ds = build_dataset(cfg, split, data_dir=args.data_dir, **kw)
        print(f'{split}: {len(ds)} images cached in {ds.cache.data_path} ({ds.cache.nbytes / 2**20:.1f} MiB)')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)

    c = sub.add_parser('check-data', help='validate DATA_DIR (non-zero exit on problems)')
    c.add_argument('--cfg', required=True)
    c.add_argument('--data_dir', default='')
    c.add_argument('--set', action='append', metavar='KEY=VALUE', help='config override (repeatable)')
    c.add_argument('--decode-images', action='store_true', help='also decode every image (slow)')
    c.set_defaults(func=cmd_check)

    c = sub.add_parser('coco', help='official COCO captions JSON -> text/ and split lists')
    c.add_argument('--annotations', required=True,
                   help='folder with captions_train2014.json and captions_val2014.json (or one JSON file)')
    c.add_argument('--val-json', default=None, help='the test-split JSON when --annotations is a file')
    c.add_argument('--out', required=True)
    c.add_argument('--min-captions', type=int, default=5, help='leave out images with fewer (default 5)')
    c.add_argument('--filenames-from', default=None,
                   help='a DATA_DIR whose train/ and test/filenames.pickle give the split lists')
    c.add_argument('--overwrite', action='store_true')
    c.set_defaults(func=cmd_coco)

    c = sub.add_parser('custom', help='folder of images + captions file -> CUB-like DATA_DIR')
    c.add_argument('--images', required=True)
    c.add_argument('--captions', required=True,
                   help='.csv (header image,caption[,class][,split]), .json, or tab-separated image<TAB>caption')
    c.add_argument('--out', required=True)
    c.add_argument('--captions-per-image', type=int, default=None)
    c.add_argument('--classes', choices=['auto', 'column', 'folders', 'none'], default='auto')
    c.add_argument('--split-by', choices=['image', 'class'], default='image')
    c.add_argument('--test-fraction', type=float, default=0.1)
    c.add_argument('--seed', type=int, default=0)
    c.add_argument('--bboxes', default=None, help='file of "<image> x y w h" lines (CUB layout is written)')
    c.add_argument('--link', action='store_true', help='symlink JPEGs instead of copying')
    c.add_argument('--overwrite', action='store_true')
    c.set_defaults(func=cmd_custom)

    c = sub.add_parser('build-cache', help='build the pre-cropped image cache (DATA.CACHE) for both splits')
    c.add_argument('--cfg', required=True)
    c.add_argument('--data_dir', default='')
    c.add_argument('--cache-dir', default='')
    c.add_argument('--set', action='append', metavar='KEY=VALUE')
    c.set_defaults(func=cmd_cache)
    return p


def main(argv=None) -> int:
    """Run one command; an error caused by the input (:class:`attngan.errors.AttnGANError`: a config key, a
    file, a dataset) is one line on stderr and exit status 2; anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AttnGANError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    warnings.simplefilter('default')  # show the converters' warnings (left-out images) once each
    sys.exit(main())
