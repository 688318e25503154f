"""Entry points behind ``main.py`` (GAN training / sampling) and ``pretrain_DAMSM.py``."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from .config import ConfigError, resolve_path
from .engine.checkpoint import TRAIN_STATE_NAME, find_latest, load_train_state
from .engine.loop import NonFiniteLossError
from .engine.logger import setup_logging
from .engine.run import (build_arg_parser, choose_seed, config_from_args, run_name, seed_everything,
                         select_device, start_run)

log = logging.getLogger('attngan')


def _user_errors() -> tuple:
    """Errors caused by input (config, files, data, weights): one line on stderr, no stack trace."""
    from .data import DatasetError
    from .models import InceptionWeightsError
    return (ConfigError, FileNotFoundError, ValueError, NonFiniteLossError, DatasetError, InceptionWeightsError)


USER_ERRORS = _user_errors()


def _load(argv, description: str, default_cfg: str):
    parser = build_arg_parser(description, default_cfg)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(2)
    return args, cfg


def main(argv=None) -> int:
    """``python main.py --cfg cfg/bird_attn2.yml``: train (TRAIN.FLAG) or sample an AttnGAN/DualAttnGAN."""
    parser = build_arg_parser('Train or sample an AttnGAN / DualAttnGAN generator', 'cfg/bird_attn2.yml')
    parser.add_argument('--caption', action='append', default=[], metavar='TEXT',
                        help='sampling: generate images for this caption (repeatable) instead of '
                             'example_filenames.txt or the test split')
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.caption:
            cfg.TRAIN.FLAG = False
        from .gan import train_gan
        from .sampling import gen_example, gen_from_text, sample_split
        t0 = time.time()
        if cfg.TRAIN.FLAG:
            state, root = _resume_state(cfg, 'gan')
            seed = state['seed'] if state is not None else args.manualSeed
            run = start_run(cfg, seed, args.output_dir, root=root)
            train_gan(cfg, run, resume_state=state)
            log.info('training done in %.1f s; checkpoints in %s, pictures in %s', time.time() - t0,
                     run.model_dir, run.image_dir)
            return 0
        setup_logging()
        seed_everything(choose_seed(cfg, args.manualSeed))
        device = select_device(cfg)
        if args.caption:
            files = gen_from_text(cfg, device, args.caption)
            log.info('wrote %d files under %s', len(files), files[0].parent if files else '-')
        elif cfg.B_VALIDATION:
            sample_split(cfg, device)
        else:
            files = gen_example(cfg, device)
            log.info('wrote %d files', len(files))
        log.info('sampling done in %.1f s', time.time() - t0)
        return 0
    except USER_ERRORS as e:
        return _fail(e)


def _resume_state(cfg, kind: str):
    """The full checkpoint named by TRAIN.RESUME ('' = none, 'latest' = newest run of this config)."""
    if not cfg.TRAIN.RESUME:
        return None, None
    if cfg.TRAIN.RESUME == 'latest':
        path = find_latest(resolve_path(cfg.OUTPUT_DIR), run_name(cfg))
    else:
        path = Path(cfg.TRAIN.RESUME)
        if path.is_dir():
            path = path / 'Model' / TRAIN_STATE_NAME if (path / 'Model').is_dir() else path / TRAIN_STATE_NAME
    state = load_train_state(path)
    if state.get('kind') != kind:
        raise ConfigError(f'--resume {path}: this is a {state.get("kind")!r} checkpoint, not a {kind!r} one')
    return state, path.resolve().parent.parent


def _fail(e: Exception) -> int:
    print(f'error: {e}', file=sys.stderr)
    return 2


def pretrain_damsm(argv=None) -> int:
    """``python pretrain_DAMSM.py --cfg cfg/DAMSM/bird.yml``: train the DAMSM text and image encoders."""
    args, cfg = _load(argv, 'Pretrain the DAMSM text and image encoders', 'cfg/DAMSM/bird.yml')
    from .damsm import train_damsm
    try:
        state, root = _resume_state(cfg, 'damsm')
        seed = state['seed'] if state is not None else args.manualSeed
        run = start_run(cfg, seed, args.output_dir, root=root)
        t0 = time.time()
        train_damsm(cfg, run, resume_state=state)
    except USER_ERRORS as e:
        return _fail(e)
    log.info('DAMSM done in %.1f s; encoders and pictures are in %s', time.time() - t0, run.root)
    return 0
