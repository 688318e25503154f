#!/usr/bin/env python
"""Fréchet Inception Distance between two image folders or .npz statistics.

Thin entry point of ``attngan.commands.fid`` (also installed as ``attngan-fid``); ``--help`` lists the options.
"""
import sys

from attngan.commands.fid import main

if __name__ == '__main__':
    sys.exit(main())
