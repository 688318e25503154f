#!/usr/bin/env python
"""Do toy samples show the part colours their captions name?.

Thin entry point of ``attngan.commands.toy_follow`` (also installed as ``attngan-toy-follow``); ``--help`` lists the options.
"""
import sys

from attngan.commands.toy_follow import main

if __name__ == '__main__':
    sys.exit(main())
