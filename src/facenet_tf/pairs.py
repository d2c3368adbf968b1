"""LFW-format pairs files: reading them, finding the pair images in an aligned folder, and the folds.

Pairs files come in two kinds. View 2 (`pairs.txt`, header `10<TAB>300`) lists its pairs fold by fold:
the folds are the file's own, read in file order by unshuffled K-fold, as the classic tool does.
View 1 (`pairsDevTrain.txt`, `pairsDevTest.txt`, header `N`) lists N same-person pairs then N
different-person pairs, not in folds: `pair_folds` splits them into folds that each hold the same
share of both kinds, deterministically. `src/lfw.py` re-exports these under their classic names.
"""
import os
import re
import sys

import numpy as np

from facenet_tf.dataset import IMAGE_EXTENSIONS
from facenet_tf.errors import FaceNetError

PROTOCOL_HINT = ('the official LFW protocol files are pairs.txt (View 2, 10 folds x 300 same + 300 '
                 'different pairs) and pairsDevTrain.txt / pairsDevTest.txt (View 1), from the LFW '
                 'download page http://vis-www.cs.umass.edu/lfw/ ; or write one for your own aligned '
                 'data with src/generate_pairs.py')


MAX_LINE = 4096          # characters in one line of a pairs file (LFW's longest is under 80)
MAX_IMAGE_NUMBER_DIGITS = 9
_NUMBER_RE = re.compile(r'[0-9]{1,%d}' % MAX_IMAGE_NUMBER_DIGITS)  # ASCII digits only: '²' is not one


def _read_lines(pairs_filename):
    """The stripped lines of a pairs file; a binary file or an overlong line is one error."""
    path = os.path.expanduser(pairs_filename)
    if not os.path.isfile(path):
        raise FaceNetError('pairs file not found: %s (%s)' % (pairs_filename, PROTOCOL_HINT))
    lines = []
    try:
        with open(path, 'rb') as f:
            while True:
                line = f.readline(MAX_LINE + 1)
                if not line:
                    break
                where = '%s line %d' % (pairs_filename, len(lines) + 1)
                if len(line) > MAX_LINE:
                    raise FaceNetError('%s: longer than %d bytes (not a pairs file)' % (where, MAX_LINE))
                if b'\0' in line:
                    raise FaceNetError('%s: holds a NUL byte (a binary file, not a pairs file)' % where)
                try:
                    lines.append(line.decode('utf-8').strip())
                except UnicodeDecodeError:
                    raise FaceNetError('%s: not UTF-8 text (a binary file, not a pairs file)' % where)
    except OSError as e:
        raise FaceNetError('cannot read pairs file %s: %s' % (pairs_filename, e.strerror or e))
    return lines


def read_pairs_header(pairs_filename):
    """The numbers on the first line: [nrof_folds, n] for View 2 files, [n] for View 1 files."""
    return _header(pairs_filename, _read_lines(pairs_filename))


def _header(pairs_filename, lines):
    fields = lines[0].split() if lines else []
    if not fields or len(fields) > 2 or not all(_NUMBER_RE.fullmatch(x) for x in fields):
        raise FaceNetError('%s: the first line must hold the pair counts (e.g. "10<TAB>300"), found "%s"'
                           % (pairs_filename, lines[0][:80] if lines else ''))
    return [int(x) for x in fields]


def is_safe_name(name):
    """True when `name` is one plain folder name: no separator, not '.' or '..', so a pairs entry
    can only name a folder directly inside the dataset folder."""
    seps = {'/', os.sep} | ({os.altsep} if os.altsep else set())
    return name not in ('', '.', '..') and not any(c in name for c in seps) and '\0' not in name


def _check_pair(pairs_filename, lineno, line, pair):
    """One line of the pairs file checked: field count, names inside the dataset folder, image
    numbers 1..999999999 in ASCII digits."""
    where = '%s line %d' % (pairs_filename, lineno)
    if len(pair) not in (3, 4):
        raise FaceNetError('%s: expected "name i j" or "name1 i name2 j", found %d fields in "%s"'
                           % (where, len(pair), line[:80]))
    names = (pair[0],) if len(pair) == 3 else (pair[0], pair[2])
    numbers = pair[1:] if len(pair) == 3 else (pair[1], pair[3])
    for name in names:
        if not is_safe_name(name):
            raise FaceNetError('%s: the name "%s" is not a folder inside the dataset folder (a name '
                               'holds no "/" and is not "." or "..")' % (where, name[:80]))
    for number in numbers:
        if not _NUMBER_RE.fullmatch(number) or int(number) < 1:
            raise FaceNetError('%s: the image number "%s" is not a whole number from 1 to %s'
                               % (where, number[:80], '9' * MAX_IMAGE_NUMBER_DIGITS))


def read_pairs(pairs_filename):
    """The pairs after the header line: `name i j` (same person) or `name1 i name2 j` (different).
    Every line is checked (see _check_pair); a bad one is a one-line error naming its line."""
    lines = _read_lines(pairs_filename)
    _header(pairs_filename, lines)
    pairs = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        pair = line.split()
        _check_pair(pairs_filename, lineno, line, pair)
        pairs.append(pair)
    if not pairs:
        raise FaceNetError('%s holds no pairs' % pairs_filename)
    result = np.empty(len(pairs), dtype=object)
    result[:] = pairs
    return result


def add_extension(path):
    """`path` + '.jpg' or '.png' (whichever exists, jpg first), or None when neither exists."""
    for ext in ('.jpg', '.png'):
        if os.path.exists(path + ext):
            return path + ext
    return None


def lfw_number(name, filename):
    """The image number N of an LFW-style file name `<name>_NNNN.<ext>` (at least 4 digits, no extra
    leading zeros), else None."""
    m = re.match(r'^%s_(\d{4,})\.[^.]+$' % re.escape(name), filename)
    if m is None or '%04d' % int(m.group(1)) != m.group(1):
        return None
    return int(m.group(1))


def image_files(folder):
    """Image file names of a folder, sorted by name."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [f for f in names if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            and os.path.isfile(os.path.join(folder, f))]


class _ImageFinder(object):
    """Path of image N of a person: `<dir>/<name>/<name>_NNNN.jpg|.png` (classic); in a folder with
    no such names at all, the N-th image file in name order (the numbering of generate_pairs.py)."""

    def __init__(self, lfw_dir):
        self.lfw_dir = lfw_dir
        self._positional = {}

    def _with_extension(self, path):
        return add_extension(path)

    def _files(self, folder):
        return image_files(folder)

    def __call__(self, name, number):
        if not is_safe_name(name):  # pairs given as lists, not read by read_pairs
            return None
        path = self._with_extension(os.path.join(self.lfw_dir, name, '%s_%04d' % (name, number)))
        if path is not None:
            return path
        files = self._positional.get(name)
        if files is None:
            folder = os.path.join(self.lfw_dir, name)
            files = self._files(folder)
            if any(lfw_number(name, f) is not None for f in files):
                files = []
            files = self._positional[name] = [os.path.join(folder, f) for f in files]
        return files[number - 1] if 1 <= number <= len(files) else None


class _ListedImageFinder(_ImageFinder):
    """The same rules over a list of relative paths `<name>/<file>` (an embeddings file's)."""

    def __init__(self, paths):
        _ImageFinder.__init__(self, '')
        self.paths = set(paths)
        self.by_class = {}
        for path in sorted(self.paths):
            folder, name = os.path.split(path)
            self.by_class.setdefault(folder, []).append(name)

    def _with_extension(self, path):
        return next((path + ext for ext in ('.jpg', '.png') if path + ext in self.paths), None)

    def _files(self, folder):
        return self.by_class.get(folder, [])


def _pair_sides(pair):
    if len(pair) == 3:
        return (pair[0], int(pair[1])), (pair[0], int(pair[2])), True
    return (pair[0], int(pair[1])), (pair[2], int(pair[3])), False


def pair_images(pairs_filename):
    """The distinct (name, number) images a pairs file names, sorted."""
    images = set()
    for pair in read_pairs(pairs_filename):
        first, second, _ = _pair_sides(pair)
        images.update((first, second))
    return sorted(images)


def get_paths_and_skipped(lfw_dir, pairs, listed=None):
    """(path_list, issame_list, skipped): two paths per usable pair; `skipped` lists the pairs whose
    image is missing. Image N of a person is `<dir>/<name>/<name>_NNNN.jpg` or `.png`, or, in a
    folder without any such name, its N-th image file in name order. With `listed` (relative paths
    `<name>/<file>`, e.g. of an embeddings file) the images are looked up there, not on disk."""
    if listed is not None:
        find = _ListedImageFinder(listed)
    else:
        lfw_dir = os.path.expanduser(lfw_dir)
        if not os.path.isdir(lfw_dir):
            raise FaceNetError('LFW folder not found: %s' % lfw_dir)
        find = _ImageFinder(lfw_dir)
    path_list, issame_list, skipped = [], [], []
    for pair in pairs:
        side0, side1, issame = _pair_sides(pair)
        path0, path1 = find(*side0), find(*side1)
        if path0 is None or path1 is None:
            skipped.append(pair)
            continue
        path_list += (path0, path1)
        issame_list.append(issame)
    return path_list, issame_list, skipped


def note(message):
    """A note for the user on stderr: stdout carries the results alone."""
    print(message, file=sys.stderr, flush=True)


def get_paths(lfw_dir, pairs):
    """Classic get_paths: (path_list, issame_list); pairs with a missing image are skipped and counted
    (a note on stderr)."""
    path_list, issame_list, skipped = get_paths_and_skipped(lfw_dir, pairs)
    if skipped:
        note('Skipped %d image pairs' % len(skipped))
    return path_list, issame_list


def pair_folds(pairs_filename, actual_issame, nrof_folds):
    """Test pair indices of each fold, or None to use the file order (unshuffled K-fold, View 2).

    For a View 1 file (one number on its header line), the same-person pairs and the
    different-person pairs are each cut, in file order, into nrof_folds nearly equal runs; fold k
    holds run k of both kinds.
    """
    if len(read_pairs_header(pairs_filename)) != 1:
        return None
    actual_issame = np.asarray(actual_issame, bool)
    same = np.array_split(np.flatnonzero(actual_issame), nrof_folds)
    diff = np.array_split(np.flatnonzero(~actual_issame), nrof_folds)
    return [np.sort(np.concatenate([s, d])) for s, d in zip(same, diff)]
