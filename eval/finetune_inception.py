#!/usr/bin/env python
"""Fine-tune Inception-v3 on CUB-200-2011 as the classifier of the Inception Score.

Thin entry point of ``attngan.commands.finetune_inception`` (also installed as ``attngan-finetune-inception``); ``--help`` lists the options.
"""
import sys

from attngan.commands.finetune_inception import main

if __name__ == '__main__':
    sys.exit(main())
