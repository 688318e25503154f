"""Restricted unpickling of the dataset metadata, and atomic writes.

``filenames.pickle``, ``class_info.pickle`` and ``captions.pickle`` come from the internet (the original
AttnGAN release, written by Python 2). ``pickle.load`` on such a file can run arbitrary code, so they are
read with :class:`SafeUnpickler`: plain containers (list, tuple, dict, set), str/bytes, numbers, bools and
None are allowed, plus numpy *numeric scalars* because the real CUB ``train/class_info.pickle`` stores
``numpy.int64`` values. Such a scalar is pickled as ``numpy.core.multiarray.scalar(numpy.dtype('i8'), raw)``
(numpy >= 2 writes ``numpy._core.multiarray.scalar``); both names are mapped to local rebuilders that only
accept bool/int/uint/float/complex dtypes and never call into numpy's unpickling machinery. Any other global
is refused with an error naming the file. Python 2 ``str`` objects are decoded as latin1.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import AttnGANError, MissingFileError

__all__ = ['UnsafePickleError', 'SafeUnpickler', 'safe_load', 'safe_loads',
           'atomic_write_bytes', 'atomic_write_text', 'dump_pickle_atomic']


class UnsafePickleError(AttnGANError, pickle.UnpicklingError):
    """A metadata pickle references something other than plain data, or is corrupt."""


class _DtypeSpec:
    """Stand-in for ``numpy.dtype`` during unpickling: records the type code, validates the state."""

    def __init__(self, code, align=False, copy=True):
        if isinstance(code, bytes):
            code = code.decode('latin1')
        if not isinstance(code, str):
            raise UnsafePickleError(f'numpy.dtype with a non-string type code {code!r}')
        try:
            dt = np.dtype(code)
        except TypeError as e:
            raise UnsafePickleError(f'numpy.dtype({code!r}): {e}') from None
        if dt.kind not in 'biufc' or dt.fields is not None or dt.subdtype is not None:
            raise UnsafePickleError(f'numpy.dtype({code!r}) is not a plain numeric dtype')
        self.dtype = dt

    def __setstate__(self, state):
        # numpy's dtype state: (version, byteorder, subdescr, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 2:
            raise UnsafePickleError(f'unexpected numpy.dtype state {state!r}')
        byteorder = state[1]
        if isinstance(byteorder, bytes):
            byteorder = byteorder.decode('latin1')
        if byteorder not in ('<', '>', '=', '|'):
            raise UnsafePickleError(f'unexpected numpy.dtype byte order {byteorder!r}')
        if any(x is not None for x in state[2:5]):
            raise UnsafePickleError('numpy.dtype with sub-arrays or fields is not allowed')
        if byteorder in '<>':
            self.dtype = self.dtype.newbyteorder(byteorder)


def _numpy_scalar(spec, data=None):
    """Rebuild ``numpy.core.multiarray.scalar(dtype, raw_bytes)`` for numeric dtypes only."""
    if not isinstance(spec, _DtypeSpec):
        raise UnsafePickleError('numpy scalar with a non-numeric or unknown dtype')
    if isinstance(data, str):  # Python 2 str read with encoding='latin1'
        data = data.encode('latin1')
    if not isinstance(data, bytes) or len(data) != spec.dtype.itemsize:
        raise UnsafePickleError(f'numpy scalar of {spec.dtype}: expected {spec.dtype.itemsize} raw bytes')
    return np.frombuffer(data, dtype=spec.dtype)[0].astype(spec.dtype.newbyteorder('='))


def _codecs_encode(text, encoding='utf-8'):
    # Python 3 pickles bytes at protocol <= 2 as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise UnsafePickleError(f'_codecs.encode({type(text).__name__}, {encoding!r}) is not allowed')
    return text.encode('latin1')


_ALLOWED = {
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('builtins', 'bytearray'): bytearray,
    ('__builtin__', 'set'): set,  # Python 2 names (find_class is overridden, so no automatic mapping)
    ('__builtin__', 'frozenset'): frozenset,
    ('__builtin__', 'bytearray'): bytearray,
    ('_codecs', 'encode'): _codecs_encode,
    ('numpy', 'dtype'): _DtypeSpec,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,   # numpy < 2 (the real class_info.pickle)
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,  # numpy >= 2
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED`` (see the module docstring)."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f'global {module}.{name} is not allowed') from None

    def persistent_load(self, pid):
        raise UnsafePickleError('persistent ids are not allowed')


def safe_loads(data: bytes, name: str = '<bytes>') -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`; errors name ``name``."""
    try:
        return SafeUnpickler(io.BytesIO(data), encoding='latin1').load()
    except UnsafePickleError as e:
        raise UnsafePickleError(
            f'{name}: refused to unpickle: {e}. Only plain containers, strings, numbers and numpy numeric '
            f'scalars are allowed in dataset metadata') from None
    except Exception as e:  # truncated or corrupt file
        raise UnsafePickleError(f'{name}: not a readable pickle ({type(e).__name__}: {e})') from None


def safe_load(path: str | os.PathLike) -> Any:
    """Read and unpickle the file at ``path`` safely (Python 2 pickles included).

    A missing file is a :class:`~attngan.errors.MissingFileError` (a ``FileNotFoundError``), a file that
    cannot be read an :class:`UnsafePickleError`; both name the path."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f'{path}: no such file') from None
    except OSError as e:
        raise UnsafePickleError(f'{path}: cannot read ({e.strerror or e})') from None
    return safe_loads(data, str(path))


# ---------------------------------------------------------------------------------------------------------
# atomic writes (attngan.atomic): readers never see a half-written file

def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode('utf-8'))


def dump_pickle_atomic(obj: Any, path: str | os.PathLike, protocol: int = 2) -> None:
    """Pickle ``obj`` to ``path`` atomically; protocol 2 as the original (readable by Python 2)."""
    atomic_write_bytes(path, pickle.dumps(obj, protocol=protocol))
