#!/usr/bin/env python
"""R-precision of a generator with DAMSM encoders.

Thin entry point of ``attngan.commands.r_precision`` (also installed as ``attngan-r-precision``); ``--help`` lists the options.
"""
import sys

from attngan.commands.r_precision import main

if __name__ == '__main__':
    sys.exit(main())
