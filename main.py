#!/usr/bin/env python
"""Thin entry point; the work is done by attngan.cli.main (see README.md)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / 'code'))

from attngan.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
