"""The text-image data pipeline of AttnGAN: captions and vocabulary, the CUB/COCO dataset, safe metadata
loading, the pre-cropped cache, converters and the validation report.

Trainers call :func:`build_dataloader` (config -> DataLoader) and :func:`prepare_data` (sorted batch on
the device). See :mod:`attngan.data.text` for the DATA_DIR layout.
"""
from .cub import TextDataset, image_root, load_bbox, prepare_data, resolve_use_bbox
from .loader import build_dataloader, build_dataset, data_dir_from_cfg
from .safe_pickle import UnsafePickleError, safe_load
from .text import (END_TOKEN, CaptionError, DatasetError, ImageError, LayoutError, OutputExistsError, SplitError,
                   TextData, build_vocab, encode_caption, load_examples, load_text_data, tokenize)

__all__ = ['TextDataset', 'prepare_data', 'build_dataset', 'build_dataloader', 'data_dir_from_cfg',
           'load_text_data', 'TextData', 'load_examples', 'encode_caption', 'tokenize', 'build_vocab',
           'load_bbox', 'image_root', 'resolve_use_bbox', 'safe_load', 'END_TOKEN', 'DatasetError',
           'LayoutError', 'CaptionError', 'ImageError', 'SplitError', 'OutputExistsError', 'UnsafePickleError']
