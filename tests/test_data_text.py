"""attngan.data.text: tokenisation, caption files, vocabulary, captions.pickle, custom captions."""
import os
import pickle

import numpy as np
import pytest

from attngan.data import text as T
from attngan.data.text import (CaptionError, LayoutError, build_vocab, encode_caption, load_examples,
                               load_text_data, read_caption_file, tokenize)
from data_fixtures import make_cub


def test_tokenize_rules():
    assert tokenize('This Bird has a SHORT beak.') == ['this', 'bird', 'has', 'a', 'short', 'beak']
    # the byte pair that decodes to '\ufffd\ufffd' is replaced by a space, so the words split
    assert tokenize('bird\ufffd\ufffdwith wings') == ['bird', 'with', 'wings']
    # a single \ufffd is not a word character: it separates tokens too
    assert tokenize('a\ufffdb') == ['a', 'b']
    # only the ASCII part of a token is kept; all-non-ASCII tokens are dropped
    assert tokenize('caf\xe9 na\xefve \u65e5\u672c bird') == ['caf', 'nave', 'bird']
    assert tokenize('snake_case 42 birds') == ['snake_case', '42', 'birds']  # \w includes _ and digits
    assert tokenize('!!! ...') == []


def test_tokenize_equals_nltk():
    nltk_tok = pytest.importorskip('nltk.tokenize').RegexpTokenizer(r'\w+')
    lines = ['A small bird\ufffd\ufffdwith red wings, and a long-tail!', 'caf\xe9 \u00dcber 3rd_place',
             'tabs\tand\nnewlines', "it's the bird's beak"]
    for line in lines:
        ref = [t.encode('ascii', 'ignore').decode('ascii')
               for t in nltk_tok.tokenize(line.replace('\ufffd\ufffd', ' ').lower())]
        assert tokenize(line) == [t for t in ref if t]


def test_read_caption_file(tmp_path):
    p = tmp_path / 'a.txt'
    p.write_bytes('first caption here\n\n!!!\nSecond\ufffd\ufffdone\nthird\nfourth\n'.encode('utf-8'))
    assert read_caption_file(p, 3) == [['first', 'caption', 'here'], ['second', 'one'], ['third']]
    with pytest.raises(CaptionError, match=r'a\.txt: 4 valid captions, fewer than TEXT.CAPTIONS_PER_IMAGE=5'):
        read_caption_file(p, 5)
    with pytest.raises(LayoutError, match='missing caption file .*b.txt'):
        read_caption_file(tmp_path / 'b.txt', 1)
    (tmp_path / 'c.txt').write_bytes(b'bad \xff\xfe bytes\n')
    with pytest.raises(CaptionError, match=r'c\.txt: not valid UTF-8'):
        read_caption_file(tmp_path / 'c.txt', 1)


def test_build_vocab_order():
    ixtoword, wordtoix = build_vocab([['b', 'a'], ['a', 'c']], [['d', 'b']])
    assert ixtoword == {0: '<end>', 1: 'b', 2: 'a', 3: 'c', 4: 'd'}
    assert wordtoix == {w: i for i, w in ixtoword.items()}
    assert list(wordtoix) == ['<end>', 'b', 'a', 'c', 'd']


def test_load_text_data_builds_and_writes_pickle(tmp_path):
    info = make_cub(tmp_path)
    td = load_text_data(tmp_path, 3)
    assert td.source == 'built'
    path = tmp_path / 'captions.pickle'
    assert sorted(os.listdir(tmp_path)).count('captions.pickle') == 1
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]
    assert td.train_names == info['train'] and td.test_names == info['test']
    assert len(td.train_captions) == 4 * 3 and len(td.test_captions) == 2 * 3
    # first caption of the first stem: 'this red bird has a short beak'
    assert [td.ixtoword[i] for i in td.train_captions[0]] == 'this red bird has a short beak'.split()
    # the extra 4th caption is not part of any split
    assert 'extra' not in td.wordtoix and td.ixtoword[0] == '<end>'
    assert all(0 not in c for c in td.train_captions + td.test_captions)
    assert td.n_words == len(td.wordtoix)
    # the original's structure, readable by a plain unpickler (and Python 2: protocol 2)
    raw = pickle.loads(path.read_bytes())
    assert raw == [td.train_captions, td.test_captions, td.ixtoword, td.wordtoix]
    assert path.read_bytes()[:2] == b'\x80\x02'


def test_existing_pickle_is_read_not_rebuilt(tmp_path):
    make_cub(tmp_path)
    td = load_text_data(tmp_path, 3)
    # permute the word indices as Python 2 hashing did: the file's indices must win
    perm = {0: 0, **{i: td.n_words - i for i in range(1, td.n_words)}}
    ixtoword = {perm[i]: w for i, w in td.ixtoword.items()}
    wordtoix = {w: i for i, w in ixtoword.items()}
    train = [[perm[i] for i in c] for c in td.train_captions]
    test = [[perm[i] for i in c] for c in td.test_captions]
    with open(tmp_path / 'captions.pickle', 'wb') as f:
        pickle.dump([train, test, ixtoword, wordtoix], f, protocol=2)
    td2 = load_text_data(tmp_path, 3)
    assert td2.source == str(tmp_path / 'captions.pickle')
    assert td2.wordtoix == wordtoix and td2.train_captions == train
    assert td2.wordtoix != td.wordtoix


def test_pickle_that_does_not_match_the_lists(tmp_path):
    make_cub(tmp_path)
    load_text_data(tmp_path, 3)
    with pytest.raises(CaptionError, match=r'captions\.pickle: holds 12 train captions .* 4 stems x '
                                           r'TEXT.CAPTIONS_PER_IMAGE=2'):
        load_text_data(tmp_path, 2)


def test_unwritable_folder_warns_and_keeps_vocab(tmp_path, monkeypatch):
    make_cub(tmp_path)

    def fail(*a, **k):
        raise PermissionError('read-only file system')
    monkeypatch.setattr(T, 'dump_pickle_atomic', fail)
    with pytest.warns(UserWarning, match='could not save .*captions.pickle'):
        td = load_text_data(tmp_path, 3)
    assert td.source == 'built (not saved)' and td.n_words > 10
    assert not (tmp_path / 'captions.pickle').exists()
    td2 = load_text_data(tmp_path, 3, write=False)
    assert td2.wordtoix == td.wordtoix and not (tmp_path / 'captions.pickle').exists()


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    make_cub(tmp_path)
    monkeypatch.setattr(os, 'replace', lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        load_text_data(tmp_path, 3)
    assert not [f for f in os.listdir(tmp_path) if 'captions.pickle' in f]


def test_layout_errors_name_the_file(tmp_path):
    with pytest.raises(LayoutError, match='DATA_DIR .*nothing does not exist'):
        load_text_data(tmp_path / 'nothing', 3)
    make_cub(tmp_path)
    (tmp_path / 'test' / 'filenames.pickle').unlink()
    with pytest.raises(LayoutError, match=r'missing .*test/filenames\.pickle; expected the AttnGAN'):
        load_text_data(tmp_path, 3)


def test_short_caption_file_is_an_error(tmp_path):
    info = make_cub(tmp_path)
    bad = tmp_path / 'text' / f'{info["test"][1]}.txt'
    bad.write_text('only one caption\n\n')
    with pytest.raises(CaptionError, match=rf'{bad.name}: 1 valid captions, fewer than'):
        load_text_data(tmp_path, 3)
    assert not (tmp_path / 'captions.pickle').exists()


def test_encode_caption():
    wordtoix = {'<end>': 0, 'red': 1, 'bird': 2}
    assert encode_caption('A RED bird, unknown words dropped', wordtoix) == [1, 2]
    with pytest.raises(CaptionError, match="caption 'purple zebra' .*no word in the vocabulary"):
        encode_caption('purple zebra', wordtoix)
    with pytest.raises(CaptionError, match=r'\(example\.txt:3\)'):
        encode_caption('', wordtoix, source='example.txt:3')


def test_load_examples(tmp_path):
    make_cub(tmp_path)
    td = load_text_data(tmp_path, 3)
    dic = load_examples(tmp_path, td.wordtoix)
    assert list(dic) == ['example_captions']
    cap_array, cap_lens, order = dic['example_captions']
    # 'a red bird' (3) and 'the blue bird has a short beak and long wings' (10): longest first
    assert list(cap_lens) == [10, 3] and list(order) == [1, 0]
    assert cap_array.shape == (2, 10) and cap_array.dtype == np.int64
    assert [td.ixtoword[i] for i in cap_array[1, :3]] == ['a', 'red', 'bird'] and (cap_array[1, 3:] == 0).all()
    (tmp_path / 'example_captions.txt').write_text('a red bird\nzzz qqq\n')
    with pytest.raises(CaptionError, match=r"'zzz qqq' \(.*example_captions\.txt:2\)"):
        load_examples(tmp_path, td.wordtoix)
