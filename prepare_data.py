#!/usr/bin/env python
"""Datasets: check-data, COCO and custom converters, image cache.

Thin entry point of ``attngan.commands.prepare_data`` (also installed as ``attngan-prepare-data``); ``--help`` lists the options.
"""
import sys

from attngan.commands.prepare_data import main

if __name__ == '__main__':
    sys.exit(main())
