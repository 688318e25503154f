"""Inception Score of a folder of generated images.

    python eval/inception_score.py GEN_DIR [--splits 10] [--classifier imagenet|PATH]

``--classifier imagenet`` (default): torchvision's ImageNet Inception-v3 (1000 classes), its
weights looked up in the torch hub cache (``$TORCH_HOME/hub/checkpoints``) or given with
``--weights``. ``--classifier PATH``: an Inception-v3 fine-tuned on CUB by
eval/finetune_inception.py. The AttnGAN paper's 4.36 used StackGAN's TensorFlow model
fine-tuned on CUB, which PyTorch cannot load: scores from either classifier here are not
directly comparable with it. The output names the classifier used.

Images (searched recursively) are resized to 299x299 (PIL bilinear) and scaled to [-1, 1].
Score: mean +- std over ``--splits`` consecutive splits of exp(E[KL(p(y|x) || p(y))]).
Exit status: 0 with a score, 1 when it cannot answer.
"""
from __future__ import annotations

import argparse
import sys
import time

from attngan.metrics import inception_score as IS
from attngan.metrics.fid import list_images
from attngan.errors import AttnGANError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('gen_dir', metavar='GEN_DIR')
    p.add_argument('--splits', type=int, default=10)
    p.add_argument('--classifier', default='imagenet',
                   help="'imagenet' or a checkpoint of eval/finetune_inception.py")
    p.add_argument('--weights', default=None,
                   help='ImageNet weight file for --classifier imagenet (default: torch hub cache)')
    p.add_argument('--batch-size', type=int, default=50)
    p.add_argument('--device', default=None)
    p.add_argument('--workers', type=int, default=None)
    p.add_argument('--no-progress', action='store_true')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        images = list_images(args.gen_dir)
        clf = IS.get_classifier(args.classifier, args.weights)
        print(f'Classifier: {clf.description}')
        print('Input: PIL bilinear resize to 299x299, scaled to [-1, 1]; '
              f'{args.splits} consecutive splits; exp(E[KL(p(y|x) || p(y))])')
        note = f' (skipped {len(images.skipped)} non-image files)' if images.skipped else ''
        print(f'Images: {len(images)} under {images.root}{note}')
        t0 = time.time()
        logits = IS.classifier_logits(images.files, clf, batch_size=args.batch_size,
                                      device=args.device, workers=args.workers,
                                      progress=not args.no_progress and sys.stderr.isatty())
        mean, std = IS.inception_score_from_logits(logits, args.splits)
    except AttnGANError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'Inception Score: {mean:.4f} +- {std:.4f}   [{time.time() - t0:.1f} s]')
    return 0


if __name__ == '__main__':
    sys.exit(main())
