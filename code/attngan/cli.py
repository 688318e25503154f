"""Entry points behind ``main.py`` (GAN training / sampling) and ``pretrain_DAMSM.py``.

A mistake in the user's input (any :class:`~attngan.errors.AttnGANError`: config, files, data, weights,
a diverged loss) ends the program with one ``error:`` line and exit status 2; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .config import Config
from .engine.logger import setup_logging
from .engine.resume import load_resume_state, resume_checkpoint_path, resume_config, saved_config
from .engine.run import (Run, build_arg_parser, choose_seed, config_from_args, run_name, seed_everything,
                         select_device, start_run)
from .engine.trainer import Trainer, task_class
from .errors import AttnGANError

log = logging.getLogger('attngan')

#: What the entry points (and eval/ scripts) report as one line: the project's own errors only.
USER_ERRORS = (AttnGANError,)


def _fail(e: Exception) -> int:
    print(f'error: {e}', file=sys.stderr)
    return 2


def _training_config(args: argparse.Namespace, cfg: Config, kind: str) -> tuple[Config, dict | None, Path | None]:
    """The config of this training start, the checkpoint it resumes (or None) and that run's folder.

    With ``--resume`` (or TRAIN.RESUME) the run's saved config is used; without ``--cfg`` it is the base
    that ``--set`` applies to, with ``--cfg`` that file must agree with it (see engine/resume.py).
    """
    if not cfg.TRAIN.RESUME:
        return cfg, None, None
    path = resume_checkpoint_path(cfg.TRAIN.RESUME, cfg.OUTPUT_DIR, run_name(cfg))
    state = load_resume_state(path, kind)
    if args.cfg_file is None:  # the run's own config, with this start's --set and flags
        cfg = config_from_args(args, base=saved_config(state, str(path)))
    cfg, changes = resume_config(state, cfg, str(path))
    return cfg, {**state, 'changes': changes, 'path': path}, path.resolve().parent.parent


def _train(args: argparse.Namespace, default_task: str) -> int:
    """Start (or resume) a training run of TRAIN.TASK (``default_task`` when empty) and drive it to its end
    or stop."""
    t0 = time.time()
    cfg = config_from_args(args)
    task_cls = task_class(cfg.TRAIN.TASK or default_task)
    cfg, state, root = _training_config(args, cfg, task_cls.kind)
    seed = state['seed'] if state is not None else args.manualSeed
    run: Run = start_run(cfg, seed, args.output_dir, root=root)
    try:
        if state is not None:
            log.info('resuming %s', state['path'])
            for change in state['changes']:
                log.info('resume: %s (changed on resume)', change)
        Trainer(cfg, run, task_cls(cfg, run), state).fit()
    except BaseException:
        if run.discard_if_unused():
            print(f'note: removed the run folder {run.root}: this start wrote nothing into it', file=sys.stderr)
        raise
    log.info('%s training done in %.1f s; checkpoints in %s, pictures in %s', task_cls.title, time.time() - t0,
             run.model_dir, run.image_dir)
    return 0


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
        if cfg.TRAIN.FLAG:
            return _train(args, 'gan')
        return _sample(cfg, args)
    except AttnGANError as e:
        return _fail(e)


def _sample(cfg: Config, args: argparse.Namespace) -> int:
    from .sampling import gen_example, gen_from_text, sample_split
    t0 = time.time()
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


def pretrain_damsm(argv=None) -> int:
    """``python pretrain_DAMSM.py --cfg cfg/DAMSM/bird.yml``: train the DAMSM text and image encoders."""
    parser = build_arg_parser('Pretrain the DAMSM text and image encoders', 'cfg/DAMSM/bird.yml')
    args = parser.parse_args(argv)
    try:
        return _train(args, 'damsm')
    except AttnGANError as e:
        return _fail(e)
