#!/usr/bin/env python
"""Thin entry point; the work is done by attngan.cli.pretrain_damsm (see README.md)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / 'code'))

from attngan.cli import pretrain_damsm  # noqa: E402

if __name__ == '__main__':
    sys.exit(pretrain_damsm())
