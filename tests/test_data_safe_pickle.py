"""attngan.data.safe_pickle: the restricted unpickler for dataset metadata, and atomic writes."""
import os
import pickle

import numpy as np
import pytest

from attngan.data.safe_pickle import (UnsafePickleError, SafeUnpickler, dump_pickle_atomic, safe_load,
                                      safe_loads)

# A Python 2 protocol-0 pickle of [numpy.int64(2), numpy.int64(2)], in the form of the real
# birds/train/class_info.pickle (numpy.core.multiarray.scalar + numpy.dtype, 'S' strings).
PY2_INT64_LIST = (
    b"(lp0\ncnumpy.core.multiarray\nscalar\np1\n(cnumpy\ndtype\np2\n(S'i8'\np3\nI0\nI1\ntp4\nRp5\n"
    b"(I3\nS'<'\np6\nNNNI-1\nI-1\nI0\ntp7\nbS'\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00'\np8\ntp9\nRp10\n"
    b"ag10\na.")
# Python 2 protocol 0: a list of str (bytes in Python 2), e.g. filenames.pickle
PY2_STR_LIST = b"(lp0\nS'002.Laysan_Albatross/Laysan_Albatross_0002_1027'\np1\naS'caf\\xe9'\np2\na."


class _Marker:
    """Unpickling this would create a file (the side effect a crafted pickle could have)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_python2_numpy_scalars_load():
    x = safe_loads(PY2_INT64_LIST)
    assert x == [2, 2]
    assert all(type(v) is np.int64 for v in x)
    assert x == pickle.loads(PY2_INT64_LIST, encoding='latin1')


def test_python2_strings_are_latin1():
    assert safe_loads(PY2_STR_LIST) == ['002.Laysan_Albatross/Laysan_Albatross_0002_1027', 'caf\xe9']


@pytest.mark.parametrize('protocol', range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_and_numpy_scalars_all_protocols(protocol):
    obj = [1, -2, 3.5, 'word', b'raw', None, True, (1, 2), {'a': [1]}, {1, 2}, frozenset({3}),
           np.int64(7), np.int32(-3), np.float32(1.5), np.float64(2.25), np.uint8(255), np.bool_(True)]
    out = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert out == obj
    assert [type(v) for v in out] == [type(v) for v in obj]


def test_crafted_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / 'pwned'
    data = pickle.dumps(_Marker(marker), protocol=2)
    with pytest.raises(UnsafePickleError, match=r'evil\.pickle.*global io\.open'):
        safe_loads(data, 'evil.pickle')
    assert not marker.exists()
    # the plain unpickler would have run it: the test's payload is real
    pickle.loads(data)
    assert marker.exists()


@pytest.mark.parametrize('payload', [
    b"cos\nsystem\n(S'echo hi'\ntR.",                  # os.system
    b"cbuiltins\neval\n(S'1+1'\ntR.",                   # eval
    b"c__builtin__\ngetattr\n(S'x'\nS'y'\ntR.",         # Python 2 name of getattr
])
def test_forbidden_globals(payload):
    with pytest.raises(UnsafePickleError, match='not allowed'):
        safe_loads(payload, 'x.pickle')


def test_numpy_arrays_and_object_dtypes_are_refused():
    with pytest.raises(UnsafePickleError, match='_reconstruct'):
        safe_loads(pickle.dumps(np.arange(3)))
    # a numpy scalar of object dtype would unpickle an arbitrary object
    obj_scalar = (b"cnumpy.core.multiarray\nscalar\n(cnumpy\ndtype\n(S'O8'\nI0\nI1\ntR"
                  b"(I3\nS'|'\nNNNI-1\nI-1\nI63\ntbS'x'\ntR.")
    with pytest.raises(UnsafePickleError, match='numeric'):
        safe_loads(obj_scalar)


def test_truncated_and_missing_files(tmp_path):
    p = tmp_path / 'filenames.pickle'
    p.write_bytes(pickle.dumps(['a', 'b'], protocol=2)[:-3])
    with pytest.raises(UnsafePickleError, match='filenames.pickle'):
        safe_load(p)
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / 'absent.pickle')


def test_unpickler_class_refuses_persistent_ids():
    import io

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return 'x' if obj == 'secret' else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(['secret'])
    with pytest.raises(UnsafePickleError):
        safe_loads(buf.getvalue())
    assert issubclass(SafeUnpickler, pickle.Unpickler)


def test_dump_pickle_atomic(tmp_path, monkeypatch):
    p = tmp_path / 'sub' / 'captions.pickle'
    dump_pickle_atomic([[1, 2], [3]], p)
    assert safe_load(p) == [[1, 2], [3]]
    assert pickle.loads(p.read_bytes()) == [[1, 2], [3]]
    assert os.listdir(p.parent) == ['captions.pickle']
    # a failure before the rename leaves the old file and no temporary file
    monkeypatch.setattr(os, 'replace', lambda *a: (_ for _ in ()).throw(OSError('disk full')))
    with pytest.raises(OSError, match='disk full'):
        dump_pickle_atomic(['new'], p)
    assert safe_load(p) == [[1, 2], [3]]
    assert os.listdir(p.parent) == ['captions.pickle']


def test_real_class_info_globals(shared_birds):
    """The real class_info.pickle files need only the globals the restricted unpickler maps (the real
    train file: numpy.dtype and numpy.core.multiarray.scalar, for its numpy.int64 ids), and read the same
    values, of the same types, as the standard unpickler."""
    from attngan.data.safe_pickle import _ALLOWED
    for split in ('train', 'test'):
        path = shared_birds / split / 'class_info.pickle'
        seen = set()

        class Recorder(pickle.Unpickler):
            def find_class(self, module, name):
                seen.add((module, name))
                return super().find_class(module, name)

        with open(path, 'rb') as f:
            expected = Recorder(f, encoding='latin1').load()
        with open(shared_birds / split / 'filenames.pickle', 'rb') as f:
            n_stems = len(pickle.load(f, encoding='latin1'))
        assert seen <= set(_ALLOWED), (path, seen - set(_ALLOWED))
        got = safe_load(path)
        assert len(got) == len(expected) == n_stems
        assert got == expected and [type(v) for v in got] == [type(v) for v in expected]
        # numpy scalars need both numpy globals; plain ints none
        has_numpy = any(isinstance(v, np.generic) for v in expected)
        assert has_numpy == bool(seen)
        if has_numpy:
            assert ('numpy', 'dtype') in seen
