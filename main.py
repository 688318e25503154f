#!/usr/bin/env python
"""Thin entry point of ``attngan.cli.main`` (installed as ``attngan-train``; see README.md)."""
import sys

from attngan.cli import main

if __name__ == '__main__':
    sys.exit(main())
