"""Configuration: the original AttnGAN defaults, strict YAML merging and ``--set`` overrides.

The defaults below reproduce every key and value of the original ``code/miscc/config.py``
(taoxugit/AttnGAN) plus the fork's ``GAN.DUAL_ATTN``. Keys this port adds are grouped at the end of
each section, each with a one-line comment. A config is a nested :class:`Config` (a ``dict`` with
attribute access, like the original ``EasyDict``) and is passed explicitly; no module reads a global.

Merging is as strict as the original: a key that is not in the defaults is an error naming its dotted
path and the file; a value of the wrong type is an error naming the expected and the given type
(an ``int`` where a ``float`` is expected is accepted and converted).

YAML files and ``--set`` values are read with :func:`load_yaml`: PyYAML's safe loader with two changes.
Floats are also recognised in the YAML 1.2 forms without a dot or without an exponent sign (``2e-4``,
``5e-3``, ``1e3``, ``1E+3``), which YAML 1.1 reads as strings; and a key given twice in one mapping (at any
depth) is an error naming the key, the file and both lines, instead of the later value silently winning.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ConfigError

def _project_root() -> Path:
    """Where relative paths in configs point: $ATTNGAN_ROOT; else the checkout this package lives in
    (``code/attngan/config.py`` two folders below it, installed with ``pip install -e .``); else the
    working directory (a package installed into site-packages)."""
    if os.environ.get('ATTNGAN_ROOT'):
        return Path(os.environ['ATTNGAN_ROOT']).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / 'cfg').is_dir() and (checkout / 'code').is_dir() else Path.cwd()


#: The project root: relative paths in configs (DATA_DIR, TRAIN.NET_E, ...) are relative to it.
REPO_ROOT = _project_root()


class Config(dict):
    """A ``dict`` whose keys are also attributes (``cfg.TRAIN.SMOOTH.GAMMA1``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __deepcopy__(self, memo):
        return Config({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in self.items()}


def _c(**kwargs) -> Config:
    return Config(kwargs)


def get_default_config() -> Config:
    """A fresh copy of the defaults: the original's keys and values, then this port's additions."""
    return _c(
        # ---- original keys (code/miscc/config.py) ----
        DATASET_NAME='birds',
        CONFIG_NAME='',
        DATA_DIR='',
        GPU_ID=0,
        CUDA=True,
        WORKERS=6,
        RNN_TYPE='LSTM',  # 'LSTM' or 'GRU'
        B_VALIDATION=False,
        # ---- added by this port ----
        OUTPUT_DIR='output',  # runs go to OUTPUT_DIR/<DATASET_NAME>_<CONFIG_NAME>_<timestamp>/
        TREE=_c(
            BRANCH_NUM=3,
            BASE_SIZE=64,
        ),
        TRAIN=_c(
            BATCH_SIZE=64,
            MAX_EPOCH=600,
            SNAPSHOT_INTERVAL=2000,
            DISCRIMINATOR_LR=2e-4,
            GENERATOR_LR=2e-4,
            ENCODER_LR=2e-4,
            RNN_GRAD_CLIP=0.25,
            FLAG=True,
            NET_E='',
            NET_G='',
            B_NET_D=True,
            SMOOTH=_c(
                GAMMA1=5.0,
                GAMMA3=10.0,
                GAMMA2=5.0,
                LAMBDA=1.0,
            ),
            # ---- added by this port ----
            MAX_STEPS=0,  # stop after this many iterations in total (0 = run all MAX_EPOCH epochs)
            LOG_INTERVAL=100,  # log losses every N generator iterations (original: 100)
            SAMPLE_INTERVAL=1000,  # sample grid + attention pictures every N iterations (original: 1000)
            DAMSM_UPDATE_INTERVAL=200,  # DAMSM: log + attention picture at steps 0, N, 2N.. of each epoch (original)
            EMA_DECAY=0.999,  # generator weight averaging: avg = decay * avg + (1 - decay) * p
            CHECKPOINT_INTERVAL=1,  # full resumable checkpoint every N epochs (and on Ctrl-C)
            FAST=False,  # GAN fast path: bf16 autocast; CUDA: channels_last, fused Adam, compile (engine/fast.py)
            COMPILE=True,  # with FAST on CUDA: torch.compile the generator and discriminators
            SYNC_BN=False,  # torchrun multi-GPU: SyncBatchNorm in the trained nets (CUDA only; per-rank BN if False)
            TENSORBOARD=False,  # also write TensorBoard scalars (needs the tensorboard package)
            RESUME='',  # '' (no), 'latest' or a path to a full checkpoint (train_state.pt)
            TASK='',  # what the trainer trains: '' (main.py: 'gan', pretrain_DAMSM.py: 'damsm') or 'package.module:Class'
        ),
        GAN=_c(
            DF_DIM=64,
            GF_DIM=128,
            Z_DIM=100,
            CONDITION_DIM=100,
            R_NUM=2,
            B_ATTENTION=True,
            B_DCGAN=False,
            DUAL_ATTN=False,  # the fork's (mattrent/AttnGAN) switch for DualAttnGAN generators
            # ---- added by this port ----
            DUAL_ATTN_VARIANT='fork',  # 'fork' (faithful to mattrent/AttnGAN) or 'paper' (Cai et al. 2019)
            PAPER_CAM_REDUCTION=8,  # paper variant: CBAM channel MLP C -> C/r -> C, this r (assumed; CBAM used 16)
            PAPER_SAM_POOL=1,  # paper variant: SAGAN keys/values max-pooled by this factor (assumed: 1 = none)
            PAPER_IR_EXPANSION=6,  # paper variant: inverted-residual expansion factor t (assumed: MobileNetV2's 6)
            PAPER_IR_CHECKPOINT=True,  # paper variant: recompute inverted residuals in backward (less memory; a port choice)
            PAPER_SN_G=True,  # paper variant: spectral norm on the generator's convs and linears (assumed: on)
            PAPER_SN_D=True,  # paper variant: spectral norm on the discriminators' convs (assumed: on)
            PAPER_INIT_RELU='both',  # paper variant: ReLU, not GLU, in stage 1's 'fc'|'upsample'|'both'|'none' (assumed)
            PAPER_AEM_CONV=False,  # paper variant: 1x1 conv + BN + ReLU after the embedding's concat (assumed: none)
            FIX_ATTN_MASK=False,  # True: each sample uses its own word mask (original mixes masks, see GlobalAttention)
        ),
        TEXT=_c(
            CAPTIONS_PER_IMAGE=10,
            EMBEDDING_DIM=256,
            WORDS_NUM=18,
            # ---- added by this port ----
            RNN_DROPOUT=0.5,  # RNN_ENCODER's dropout on the word embeddings (original: 0.5, fixed)
            SENT_POOL='last',  # sentence embedding: 'last' forward + backward states (original) or 'max' over words
        ),
        # ---- sections added by this port ----
        DAMSM=_c(
            IMAGE_ENCODER='inception_v3',  # 'inception_v3' (CNN_ENCODER, the original) or 'small_cnn' (CPU toy runs:
                                           # SmallCNNEncoder, trained whole; it ignores INCEPTION_WEIGHTS,
                                           # ALIGN_CORNERS, TRAIN_TRUNK and TRUNK_BN_EVAL)
            SMALL_CNN_WIDTH=32,  # 'small_cnn': channels of its first block
            INCEPTION_WEIGHTS='imagenet',  # 'imagenet' (torchvision weights), 'random' (tests/toy), or a .pth path
            ALIGN_CORNERS=False,  # upsampling to 299; True matches PyTorch 0.3, under which released encoders trained
            IMAGE_SIZE=299,  # the image encoder resizes its input to this (original: 299; the CPU toy demo: 128)
            TRAIN_TRUNK=False,  # also train the Inception trunk (a deviation; sensible only with random weights)
            TRUNK_BN_EVAL=False,  # keep the frozen trunk's BatchNorm in eval mode (original: train mode, stats drift)
            RPREC_CANDIDATES=100,  # retrieval accuracy: true caption + (N-1) captions of other classes
            ADAM_PER_EPOCH=True,  # a new Adam each epoch, its moments restarting (original); False: one for the run
            LR_DECAY=0.98,  # lr factor after each epoch while lr > ENCODER_LR / 10 (original: 0.98)
        ),
        DATA=_c(
            USE_BBOX='auto',  # 'auto' (crop when the dataset has bounding_boxes.txt), True or False
            CACHE=False,  # use the pre-cropped image cache (box crop + first resize done once)
            SKIP_BAD_IMAGES=False,  # skip undecodable images with a warning instead of stopping
            SKIP_MISSING_IMAGES=False,  # leave out the stems whose image is missing (one warning) instead of stopping
        ),
        SAMPLE=_c(
            NUM_PER_IMAGE=1,  # B_VALIDATION: images per test image (captions cycled); papers use ~30,000 in all
            SEED=100,  # seed of the noise used for sampling (original: manualSeed 100 when TRAIN.FLAG is False)
        ),
    )


# ---- YAML reading ---------------------------------------------------------------------------------------

_FLOAT_TAG = 'tag:yaml.org,2002:float'
_MERGE_TAG = 'tag:yaml.org,2002:merge'

#: YAML 1.1's float forms (PyYAML's resolver) plus YAML 1.2's: an exponent without a dot (``2e-4``) or
#: without a sign (``1.5e3``), and a sign before ``.5``. A bare word (``e5``, ``1e``) stays a string.
_FLOAT_RE = re.compile(r'''^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$''', re.X)


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with YAML 1.2 floats (see :data:`_FLOAT_RE`); PyYAML's own loaders are unchanged."""


# the same resolvers in the same order, the float one replaced (a class attribute of its own, so that
# yaml.SafeLoader is not modified)
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT_RE if tag == _FLOAT_TAG else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _key_text(node: yaml.Node) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else f'<{node.id} key>'


def _check_duplicates(node: yaml.Node | None, source: str, prefix: str = '', inline: bool = False) -> None:
    """Raise :class:`ConfigError` at the first key that appears twice in one mapping of ``node``."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # '<<: *anchor' merges are YAML's own overriding mechanism
                _check_duplicates(value_node, source, prefix, inline)
                continue
            ident = (key_node.tag, _key_text(key_node))
            path = f'{prefix}{_key_text(key_node)}'
            if ident in seen:
                a, b = seen[ident].start_mark, key_node.start_mark
                if inline:
                    where = f'columns {a.column + 1} and {b.column + 1} of the value'
                elif a.line == b.line:
                    where = f'line {a.line + 1}, columns {a.column + 1} and {b.column + 1}'
                else:
                    where = f'lines {a.line + 1} and {b.line + 1}'
                raise ConfigError(f'{source}: duplicate config key {path!r} at {where} '
                                  f'(a later value would silently replace the earlier one)')
            seen[ident] = key_node
            _check_duplicates(value_node, source, path + '.', inline)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, source, f'{prefix[:-1]}[{i}].' if prefix else f'[{i}].', inline)


def load_yaml(text: str, source: str, prefix: str = '', inline: bool = False) -> Any:
    """Parse ``text`` (a config file's content or a ``--set`` value) with :class:`ConfigLoader`.

    A duplicate key is a :class:`ConfigError` naming ``source``, its dotted path (after ``prefix``) and the
    lines of both occurrences (``inline``: the columns, for one-line ``--set`` values); invalid YAML is a
    :class:`ConfigError` too."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        _check_duplicates(node, source, prefix, inline)
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        what = 'value is not valid YAML' if inline else 'not valid YAML'
        mark = getattr(e, 'problem_mark', None)
        if mark is not None:
            at = f'column {mark.column + 1}' if inline else f'line {mark.line + 1}, column {mark.column + 1}'
            words = ', '.join(p for p in (getattr(e, 'context', None), getattr(e, 'problem', None)) if p)
            detail = f'{words} (at {at})'
        else:
            detail = ' '.join(str(e).split())
        raise ConfigError(f'{source}: {what}: {detail}') from None
    finally:
        loader.dispose()


def _type_name(value: Any) -> str:
    return type(value).__name__


def _coerce(key_path: str, default: Any, value: Any, source: str) -> Any:
    """Return ``value`` converted to the type of ``default`` or raise :class:`ConfigError`."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif isinstance(default, str):
        # 'auto'-style keys also take booleans (DATA.USE_BBOX)
        ok = isinstance(value, str) or (key_path == 'DATA.USE_BBOX' and isinstance(value, bool))
        if ok and key_path == 'DATA.USE_BBOX' and isinstance(value, str) and value.lower() != 'auto':
            raise ConfigError(f"{source}: config key DATA.USE_BBOX must be 'auto', True or False, "
                              f"got {value!r}")
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = type(value) is type(default)
    if not ok:
        raise ConfigError(f"{source}: type mismatch for config key {key_path}: "
                          f"expected {_type_name(default)}, got {_type_name(value)} ({value!r})")
    return value


def merge(cfg: Config, new: Mapping, source: str, prefix: str = '') -> None:
    """Merge ``new`` into ``cfg`` in place, with the original's strictness."""
    if not isinstance(new, Mapping):
        raise ConfigError(f"{source}: expected a mapping at {prefix or 'the top level'}, "
                          f"got {_type_name(new)}")
    for key, value in new.items():
        path = f"{prefix}{key}"
        if key not in cfg:
            raise ConfigError(f"{source}: unknown config key {path!r} "
                              f"(not in the defaults of attngan.config)")
        default = cfg[key]
        if isinstance(default, Config):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: config key {path} is a section; "
                                  f"expected a mapping, got {_type_name(value)}")
            merge(default, value, source, prefix=path + '.')
        else:
            cfg[key] = _coerce(path, default, value, source)


def apply_override(cfg: Config, assignment: str) -> None:
    """Apply one ``KEY.SUB=VALUE`` override (value parsed as YAML)."""
    if '=' not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. TRAIN.BATCH_SIZE=8")
    key, raw = assignment.split('=', 1)
    key = key.strip()
    value = load_yaml(raw, f'--set {assignment}', prefix=key + '.', inline=True) if raw.strip() else ''
    nested: Any = value
    for part in reversed(key.split('.')):
        nested = {part: nested}
    merge(cfg, nested, source=f"--set {assignment}")


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the YAML file at ``path`` (if given), then each ``--set`` override in order.

    A relative ``path`` missing from the working directory is looked up in the project root, so that
    ``attngan-train --cfg cfg/toy_attn2.yml`` works from any folder."""
    cfg = get_default_config()
    if path is not None:
        path = Path(path)
        if not path.is_file() and not path.is_absolute() and (REPO_ROOT / path).is_file():
            path = REPO_ROOT / path
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = path.read_text(encoding='utf-8')
        except UnicodeDecodeError as e:
            raise ConfigError(f'{path}: not UTF-8 text ({e})') from None
        except OSError as e:
            raise ConfigError(f'{path}: cannot read the config file ({e.strerror or e})') from None
        data = load_yaml(text, str(path))
        merge(cfg, data or {}, source=str(path))
    for assignment in overrides:
        apply_override(cfg, assignment)
    return cfg


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)


def resolve_path(path: str | os.PathLike) -> Path:
    """A path from a config: absolute as given, else relative to the repository root."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else REPO_ROOT / p
