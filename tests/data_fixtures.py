"""Writers of tiny datasets in the AttnGAN layouts for the data tests, and readers of the real ones.

``make_cub(root)``: CUB layout with boxes, 3 classes x 2 images (one grayscale JPEG), train = classes 1-2,
test = class 3, class_info with numpy.int64 (train) and int (test) like the real files.
``make_coco(root)``: COCO layout (images/, no boxes, no class_info), 3 train + 2 test images.
``make_coco_json(path, ...)``: an official-format captions JSON.
``RealBirds.read(root)``: what a real CUB DATA_DIR holds (split lists, labels, boxes, JPEGs present), read
from its files without attngan.data, for the tests on ../shared/data; ``oracle_captions``: the original's
caption reading, written out again.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass
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


# --------------------------------------------------------------------------------------------- real data
# What a real dataset folder holds, read straight from its files (not through attngan.data), so that the
# tests on ../shared/data derive every count, stem and class id from whatever that folder contains.

def read_plain_pickle(path: Path):
    """A trusted shared metadata pickle, read with the standard unpickler (Python 2 files: latin1)."""
    with open(path, 'rb') as f:
        return pickle.load(f, encoding='latin1')


def _table(path: Path) -> dict[int, list[str]]:
    return {int(parts[0]): parts[1:] for parts in (line.split() for line in
                                                   path.read_text('utf-8').splitlines()) if parts}


def jpeg_stems(image_dir: Path) -> set[str]:
    """Stems (relative path without '.jpg') of every JPEG under ``image_dir``, following symlinks."""
    out = set()
    for dirpath, _, files in os.walk(image_dir, followlinks=True):
        rel = Path(dirpath).relative_to(image_dir)
        out.update((rel / f[:-4]).as_posix() for f in files if f.endswith('.jpg'))
    return out


def oracle_tokens(line: str) -> list[str]:
    """The original AttnGAN tokenisation, written out again: '\\ufffd\\ufffd' -> ' ', lower, \\w+, ASCII."""
    toks = (t.encode('ascii', 'ignore').decode('ascii')
            for t in re.findall(r'\w+', line.replace('\ufffd\ufffd', ' ').lower()))
    return [t for t in toks if t]


def oracle_captions(path: Path, k: int) -> list[list[str]]:
    """The first ``k`` captions of a caption file that have a token (the original's reading)."""
    caps = [t for t in (oracle_tokens(l) for l in path.read_bytes().decode('utf-8').split('\n')) if t]
    return caps[:k]


@dataclass
class RealBirds:
    """The facts of a CUB DATA_DIR: split lists, class_info, images.txt, labels, boxes, JPEGs present."""
    root: Path
    stems: dict[str, list[str]]          # split -> filenames.pickle
    class_info: dict[str, list]          # split -> class_info.pickle
    image_id: dict[str, int]             # stem -> id in images.txt
    label: dict[str, int]                # stem -> class number (image_class_labels.txt)
    class_name: dict[int, str]           # class number -> folder name (classes.txt)
    box: dict[str, list[float]]          # stem -> x y w h (bounding_boxes.txt)
    jpegs: set[str]                      # stems with a JPEG under CUB_200_2011/images/

    @classmethod
    def read(cls, root: Path) -> 'RealBirds':
        root = Path(root)
        cub = root / 'CUB_200_2011'
        rel = {i: v[0][:-4] for i, v in _table(cub / 'images.txt').items()}
        labels = _table(cub / 'image_class_labels.txt')
        boxes = _table(cub / 'bounding_boxes.txt')
        stems, info = {}, {}
        for split in ('train', 'test'):
            stems[split] = read_plain_pickle(root / split / 'filenames.pickle')
            info[split] = read_plain_pickle(root / split / 'class_info.pickle')
        return cls(root, stems, info, {s: i for i, s in rel.items()},
                   {s: int(labels[i][0]) for i, s in rel.items()},
                   {int(i): v[0] for i, v in _table(cub / 'classes.txt').items()},
                   {s: [float(v) for v in boxes[i]] for i, s in rel.items()},
                   jpeg_stems(cub / 'images'))

    def image_path(self, stem: str) -> Path:
        return self.root / 'CUB_200_2011' / 'images' / f'{stem}.jpg'

    def present(self, split: str) -> list[str]:
        """The split's stems whose JPEG exists, in the order of filenames.pickle."""
        return [s for s in self.stems[split] if s in self.jpegs]

    def missing(self, split: str) -> list[str]:
        return [s for s in self.stems[split] if s not in self.jpegs]

    def one_per_class(self, split: str, n: int) -> list[str]:
        """Up to ``n`` present stems of ``split``: the first of each class in turn, then the next ones."""
        by_class: dict[int, list[str]] = {}
        for s in self.present(split):
            by_class.setdefault(self.label[s], []).append(s)
        out, rank = [], 0
        while len(out) < n and any(rank < len(v) for v in by_class.values()):
            out += [v[rank] for _, v in sorted(by_class.items()) if rank < len(v)][:n - len(out)]
            rank += 1
        return out
