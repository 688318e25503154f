"""Writers of tiny datasets in the AttnGAN layouts, for the data tests (everything generated here).

``make_cub(root)``: CUB layout with boxes, 3 classes x 2 images (one grayscale JPEG), train = classes 1-2,
test = class 3, class_info with numpy.int64 (train) and int (test) like the real files.
``make_coco(root)``: COCO layout (images/, no boxes, no class_info), 3 train + 2 test images.
``make_coco_json(path, ...)``: an official-format captions JSON.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

# three captions per image: word lists chosen so the tests know lengths and vocabulary
CUB_CLASSES = ['001.Red_Bird', '002.Blue_Bird', '003.Green_Bird']
COLOURS = {'001.Red_Bird': 'red', '002.Blue_Bird': 'blue', '003.Green_Bird': 'green'}


def write_jpeg(path: Path, size: tuple[int, int], seed: int, mode: str = 'RGB') -> None:
    """A smooth random image (w, h) saved as JPEG (quality 95)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 255, 3)
    arr = np.stack([(base[c] + xx * (c + 1) * 3 + yy * (3 - c) * 2) % 256 for c in range(3)], -1)
    img = Image.fromarray(arr.astype(np.uint8), 'RGB')
    if mode != 'RGB':
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, 'JPEG', quality=95)


def cub_captions(cls: str, i: int) -> list[str]:
    c = COLOURS[cls]
    return [
        f'this {c} bird has a short beak',
        '',  # empty lines are skipped
        f'A small bird\ufffd\ufffdwith {c} wings and a long tail, it is perching on a branch of a tree!',
        '!!! ...',  # no token: skipped
        f'the bird number {i} is {c}',
        'an extra caption beyond CAPTIONS_PER_IMAGE',
    ]


def _dump(obj, path: Path, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cub(root: Path, grayscale: bool = True) -> dict:
    """Write the CUB-layout fixture into ``root``; return {'stems', 'train', 'test', 'bbox', 'sizes', 'gray'}."""
    root = Path(root)
    cub = root / 'CUB_200_2011'
    sizes = [(40, 30), (30, 44), (50, 36), (36, 36), (44, 52), (60, 40)]
    boxes = [(5.0, 4.0, 20.0, 12.0), (0.0, 0.0, 30.0, 44.0), (31.0, 20.0, 15.0, 13.0),
             (10.0, 10.0, 7.0, 9.0), (2.0, 30.0, 40.0, 20.0), (20.0, 5.0, 21.0, 20.0)]
    stems, bbox, size_of = [], {}, {}
    for k, cls in enumerate(CUB_CLASSES):
        for j in range(2):
            n = 2 * k + j
            stem = f'{cls}/{cls.split(".")[1]}_{n:04d}'
            stems.append(stem)
            mode = 'L' if (grayscale and n == 1) else 'RGB'
            write_jpeg(cub / 'images' / f'{stem}.jpg', sizes[n], seed=n, mode=mode)
            bbox[stem] = [int(v) for v in boxes[n]]
            size_of[stem] = sizes[n]
            t = root / 'text' / f'{stem}.txt'
            t.parent.mkdir(parents=True, exist_ok=True)
            t.write_bytes('\n'.join(cub_captions(cls, n)).encode('utf-8'))
    (cub / 'images.txt').write_text(''.join(f'{i + 1} {s}.jpg\n' for i, s in enumerate(stems)))
    (cub / 'bounding_boxes.txt').write_text(
        ''.join(f'{i + 1} ' + ' '.join(f'{v:.1f}' for v in boxes[i]) + '\n' for i in range(len(stems))))
    train, test = stems[:4], stems[4:]
    _dump(train, root / 'train' / 'filenames.pickle', protocol=0)
    _dump(test, root / 'test' / 'filenames.pickle', protocol=0)
    _dump([np.int64(1), np.int64(1), np.int64(2), np.int64(2)], root / 'train' / 'class_info.pickle')
    _dump([3, 3], root / 'test' / 'class_info.pickle')
    (root / 'example_filenames.txt').write_text('example_captions\n\n')
    (root / 'example_captions.txt').write_text('a red bird\nthe blue bird has a short beak and long wings\n')
    return {'stems': stems, 'train': train, 'test': test, 'bbox': bbox, 'sizes': size_of,
            'gray': stems[1] if grayscale else None}


COCO_CAPTIONS = [
    ['A man riding a horse on a beach.', 'A person on a horse near the sea.', 'Horse and rider at the shore.',
     'A man on a brown horse.', 'Someone rides a horse by the ocean.'],
    ['A plate of food with broccoli.', 'Broccoli and rice on a white plate.', 'A healthy meal on a plate.',
     'Food served on a dish.', 'A dinner plate with vegetables and rice and some chicken.'],
    ['A cat sleeping on a couch.', 'A grey cat on a sofa.', 'The cat is asleep.', 'A cat lying down.',
     'A cat resting on the couch cushions.'],
    ['Two dogs playing in the park.', 'Dogs running on grass.', 'A pair of dogs at play.',
     'Two puppies in a field.', 'Dogs chasing a ball.'],
    ['A red bus on the street.', 'A double decker bus.', 'A bus driving in the city.',
     'A red bus parked by the road.', 'Public transport bus in town.'],
]


def make_coco(root: Path) -> dict:
    """Write the COCO-layout fixture into ``root``; return {'train', 'test'}."""
    root = Path(root)
    train = [f'COCO_train2014_{i:012d}' for i in (9, 25, 30)]
    test = [f'COCO_val2014_{i:012d}' for i in (42, 73)]
    for n, stem in enumerate(train + test):
        write_jpeg(root / 'images' / f'{stem}.jpg', (48 + 4 * n, 36 + 2 * n), seed=100 + n,
                   mode='L' if n == 2 else 'RGB')
        t = root / 'text' / f'{stem}.txt'
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text('\n'.join(COCO_CAPTIONS[n]) + '\n')
    _dump(train, root / 'train' / 'filenames.pickle')
    _dump(test, root / 'test' / 'filenames.pickle')
    return {'train': train, 'test': test}


def make_coco_json(path: Path, images: dict[int, list[str]], prefix: str = 'COCO_train2014_') -> Path:
    """An official-format captions JSON: ``images`` maps image id -> captions."""
    data = {'info': {'description': 'fixture'}, 'licenses': [],
            'images': [{'id': i, 'file_name': f'{prefix}{i:012d}.jpg', 'width': 64, 'height': 48}
                       for i in images],
            'annotations': []}
    ann_id = 1
    for i, caps in images.items():
        for c in caps:
            data['annotations'].append({'image_id': i, 'id': ann_id, 'caption': c})
            ann_id += 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
