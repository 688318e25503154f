#!/usr/bin/env python
"""Compare training runs over epochs: IS, FID and R-precision (CSV, Markdown, plots).

Thin entry point of ``attngan.commands.compare`` (also installed as ``attngan-compare``); ``--help`` lists the options.
"""
import sys

from attngan.commands.compare import main

if __name__ == '__main__':
    sys.exit(main())
