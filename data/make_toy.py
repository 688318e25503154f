#!/usr/bin/env python
"""Write the embedded synthetic toy dataset (CUB layout).

Thin entry point of ``attngan.commands.make_toy`` (also installed as ``attngan-make-toy``); ``--help`` lists the options.
"""
import sys

from attngan.commands.make_toy import main

if __name__ == '__main__':
    sys.exit(main())
