"""The project's own error classes: everything a user's input can cause.

Every error raised because of something the user gave (a config key, a file, a dataset, weights, a
request) derives from :class:`AttnGANError`. The command-line entry points catch exactly that class and
print its message as one line (exit status 2); any other exception is a bug in the library and keeps its
traceback. Each class also derives from the builtin that describes it best (``ValueError``,
``FileNotFoundError``, ...), so callers that catch those keep working.
"""
from __future__ import annotations

__all__ = ['AttnGANError', 'ConfigError', 'InputError', 'MissingFileError', 'CheckpointError',
           'TrainingStopped']


class AttnGANError(Exception):
    """Base class: a problem with the user's input; the message names the file, key or value."""


class ConfigError(AttnGANError, ValueError):
    """A config file, key or override is invalid; the message names the key and the source."""


class InputError(AttnGANError, ValueError):
    """A value or file given on the command line (or read from one) cannot be used; the message names it."""


class MissingFileError(AttnGANError, FileNotFoundError):
    """A file or folder the user named (or that a layout needs) does not exist; the message names it."""


class CheckpointError(AttnGANError, ValueError):
    """A checkpoint or weight file cannot be read, is not the expected kind, or does not fit the model."""


class TrainingStopped(AttnGANError, RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the message says where and what was kept."""
