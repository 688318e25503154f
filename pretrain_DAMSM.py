#!/usr/bin/env python
"""Thin entry point of ``attngan.cli.pretrain_damsm`` (installed as ``attngan-pretrain-damsm``; see README.md)."""
import sys

from attngan.cli import pretrain_damsm

if __name__ == '__main__':
    sys.exit(pretrain_damsm())
