#!/usr/bin/env python
"""Inception Score of a folder of generated images.

Thin entry point of ``attngan.commands.inception_score`` (also installed as ``attngan-inception-score``); ``--help`` lists the options.
"""
import sys

from attngan.commands.inception_score import main

if __name__ == '__main__':
    sys.exit(main())
