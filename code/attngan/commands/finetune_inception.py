"""Fine-tune torchvision's Inception-v3 on CUB-200-2011 for the Inception Score.

    python eval/finetune_inception.py --data-dir data/birds --out models/inception_cub.pth \\
        [--classes all|test50] [--init imagenet|random] [--epochs 10]

Reads ``DATA_DIR/CUB_200_2011/`` (images.txt, image_class_labels.txt, classes.txt,
train_test_split.txt, bounding_boxes.txt, images/). ``--classes all``: the 200 classes;
``test50``: the 50 classes of AttnGAN's test split (``DATA_DIR/test/filenames.pickle``), as
StackGAN's IS model. Trains on CUB's official training images of those classes and reports
accuracy on its official test images (``--train-on all`` uses every image, no validation).
Images are cropped to AttnGAN's training box (as the generated birds are framed; ``--no-bbox``
keeps whole images), resized to 299x299 (PIL bilinear) and scaled to [-1, 1], the input
eval/inception_score.py gives. The checkpoint is what ``inception_score.py --classifier PATH``
reads.

``--init imagenet`` (default) starts from torchvision's ImageNet weights (torch hub cache or
``--weights``); they are required for a useful classifier. ``--init random`` trains from
scratch: only for tests (``--max-steps 1``).
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from attngan.data.safe_pickle import safe_load
from attngan.errors import AttnGANError, InputError, MissingFileError
from attngan.metrics.fid import crop_like_training, default_workers, load_cub_bboxes, open_rgb
from attngan.metrics.inception import (INPUT_SIZE, TORCHVISION_WEIGHTS_FILES,
                                       TORCHVISION_WEIGHTS_URL, WeightsNotFoundError,
                                       find_weights, save_classifier)
from attngan.weights import read_torch_file


def _read_table(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise MissingFileError(f'{path}: missing (expected the CUB-200-2011 layout under --data-dir)')
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test50_classes(data_dir: Path) -> set[str]:
    """Class folder names of AttnGAN's test split (``test/filenames.pickle``)."""
    path = data_dir / 'test' / 'filenames.pickle'
    if not path.is_file():
        raise MissingFileError(f'{path}: missing (needed for --classes test50)')
    stems = safe_load(path)
    return {str(s).split('/')[0] for s in stems}


def cub_items(data_dir: Path, classes: str):
    """-> (train items, val items, class names); items are (image path, label, image stem)."""
    cub = data_dir / 'CUB_200_2011'
    images = {i: rel for i, rel in _read_table(cub / 'images.txt')}
    labels = {i: int(c) for i, c in _read_table(cub / 'image_class_labels.txt')}
    names = {int(c): n for c, n in _read_table(cub / 'classes.txt')}
    is_train = {i: t == '1' for i, t in _read_table(cub / 'train_test_split.txt')}
    chosen = sorted(names.values()) if classes == 'all' else sorted(test50_classes(data_dir))
    unknown = set(chosen) - set(names.values())
    if unknown:
        raise InputError(f'classes {sorted(unknown)[:3]} of {classes} are not in {cub}/classes.txt')
    label_of = {n: k for k, n in enumerate(chosen)}
    train, val, missing = [], [], 0
    for i, rel in images.items():
        name = names[labels[i]]
        if name not in label_of:
            continue
        path = cub / 'images' / rel
        if not path.is_file():
            missing += 1
            continue
        (train if is_train[i] else val).append((path, label_of[name], Path(rel).stem))
    if missing:
        print(f'note: {missing} listed images of the chosen classes are absent under {cub}/images '
              f'(skipped)')
    return train, val, chosen


class CubImages(Dataset):
    def __init__(self, items, bboxes: dict | None, train: bool):
        self.items, self.bboxes, self.train = items, bboxes, train

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label, stem = self.items[i]
        img = open_rgb(path)
        if self.bboxes is not None:
            img = crop_like_training(img, self.bboxes[stem])
        if self.train:  # light augmentation: 8% larger then a random 299 crop, random flip
            big = int(INPUT_SIZE * 1.08)
            img = img.resize((big, big), Image.BILINEAR)
            x0, y0 = random.randint(0, big - INPUT_SIZE), random.randint(0, big - INPUT_SIZE)
            img = img.crop((x0, y0, x0 + INPUT_SIZE, y0 + INPUT_SIZE))
            if random.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            img = img.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1
        return x, label


def build_model(init: str, weights, num_classes: int) -> nn.Module:
    from torchvision.models import inception_v3
    net = inception_v3(weights=None, aux_logits=False, transform_input=False,
                       init_weights=init == 'random', num_classes=1000)
    if init == 'imagenet':
        try:
            path = find_weights(TORCHVISION_WEIGHTS_FILES, TORCHVISION_WEIGHTS_URL, weights,
                                what='torchvision ImageNet Inception-v3 weights')
        except WeightsNotFoundError as e:
            raise WeightsNotFoundError(
                f'{e}\nFine-tuning needs these ImageNet weights; without them the classifier '
                f'is not useful for the Inception Score. (--init random trains from scratch, '
                f'for tests only.)') from None
        sd = read_torch_file(path, 'ImageNet Inception-v3 weights')
        net.load_state_dict({k: v for k, v in sd.items() if not k.startswith('AuxLogits.')})
        print(f'init: ImageNet weights {path}')
    else:
        print('init: random (NOT ImageNet): for tests only; such a classifier is not meaningful')
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


@torch.inference_mode()
def accuracy(net, loader, device) -> float:
    net.eval()
    correct = total = 0
    for x, y in loader:
        pred = net(x.to(device)).argmax(1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--data-dir', required=True, help='folder holding CUB_200_2011/ (e.g. data/birds)')
    p.add_argument('--out', required=True, help='checkpoint to write (.pth)')
    p.add_argument('--classes', choices=('all', 'test50'), default='all')
    p.add_argument('--init', choices=('imagenet', 'random'), default='imagenet')
    p.add_argument('--weights', default=None, help='ImageNet Inception-v3 weight file')
    p.add_argument('--train-on', choices=('official', 'all'), default='official',
                   help="'official': CUB's training images (validate on its test images); 'all'")
    p.add_argument('--no-bbox', action='store_true', help='whole images instead of the AttnGAN crop')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--max-steps', type=int, default=None, help='stop after this many steps')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=0.01, help='head learning rate (backbone: lr / 10)')
    p.add_argument('--device', default=None)
    p.add_argument('--workers', type=int, default=None)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    workers = default_workers() if args.workers is None else args.workers
    data_dir = Path(args.data_dir).expanduser()
    try:
        train, val, class_names = cub_items(data_dir, args.classes)
        if args.train_on == 'all':
            train, val = train + val, []
        if not train:
            raise InputError(f'no training images of the chosen classes under {data_dir}/CUB_200_2011/images')
        bboxes = None if args.no_bbox else load_cub_bboxes(data_dir / 'CUB_200_2011')
        net = build_model(args.init, args.weights, len(class_names)).to(device)
    except AttnGANError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'CUB classes: {args.classes} ({len(class_names)}); train {len(train)} images, '
          f'validation {len(val)}; {"whole images" if args.no_bbox else "AttnGAN bbox crop"}')

    train_loader = DataLoader(CubImages(train, bboxes, True), batch_size=args.batch_size,
                              shuffle=True, num_workers=workers, drop_last=len(train) > args.batch_size,
                              pin_memory=device.type == 'cuda')
    val_loader = DataLoader(CubImages(val, bboxes, False), batch_size=args.batch_size,
                            num_workers=workers)
    head = list(net.fc.parameters())
    head_ids = {id(q) for q in head}
    body = [q for q in net.parameters() if id(q) not in head_ids]
    opt = torch.optim.SGD([{'params': body, 'lr': args.lr / 10}, {'params': head, 'lr': args.lr}],
                          momentum=0.9, weight_decay=1e-4)
    total = args.epochs * len(train_loader)
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(total, 1))))
    loss_fn = nn.CrossEntropyLoss()
    step, t0, val_acc = 0, time.time(), None
    meta = {'dataset': 'CUB-200-2011',
            'classes': 'all CUB classes' if args.classes == 'all' else "AttnGAN's test-split classes",
            'init': args.init, 'bbox_crop': not args.no_bbox, 'train_on': args.train_on}
    for epoch in range(args.epochs):
        net.train()
        for x, y in train_loader:
            loss = loss_fn(net(x.to(device, non_blocking=True)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0 or step == total:
                print(f'epoch {epoch + 1} step {step}/{total} loss {loss.item():.4f} '
                      f'[{time.time() - t0:.0f} s]')
            if step >= total:
                break
        if val:
            val_acc = accuracy(net, val_loader, device)
            print(f'epoch {epoch + 1}: validation accuracy {val_acc:.4f}')
        save_classifier(args.out, net, class_names, {**meta, 'epochs': epoch + 1, 'steps': step,
                                                     'val_acc': val_acc})
        if step >= total:
            break
    print(f'wrote {args.out} ({len(class_names)} classes, {step} steps, validation accuracy '
          f'{"n/a" if val_acc is None else f"{val_acc:.4f}"})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
