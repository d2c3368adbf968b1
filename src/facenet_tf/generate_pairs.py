"""Write an LFW-format pairs file (folds of N same + N different pairs) for any aligned dataset.

Example: python src/generate_pairs.py ~/datasets/my_faces_160 my_pairs.txt --nrof_folds 10 --nrof_pairs 100
         python src/validate_on_lfw.py ~/datasets/my_faces_160 model.pb --lfw_pairs my_pairs.txt

The file reads like LFW's pairs.txt: a header `nrof_folds<TAB>N`, then per fold N lines `name i j`
(same person) and N lines `name1 i name2 j` (different people). As in LFW, the folds hold disjoint
people: each person is dealt to one fold, so no identity is shared between training and test folds.
Image numbers: in a person folder whose files are named `<name>_NNNN.<ext>` (LFW style) the number is
NNNN (other files there are ignored); otherwise it is the file's 1-based position in the folder's
image files sorted by name, which is how validate_on_lfw.py reads it back. Same seed, same file.
"""
import itertools
import os
import sys

import numpy as np

from facenet_tf.cli import ArgumentParser, positive_int, command
from facenet_tf.errors import FaceNetError
from facenet_tf import pairs as pairs_io
from facenet_tf.files import add_overwrite_argument, check_new_output, write_atomic

MAX_ENUMERATED_PAIRS = 200000


def _writable_name(name):
    """True when `name` can be one field of a pairs line: no whitespace, UTF-8 text."""
    try:
        name.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return name.split() == [name]


def person_images(data_dir):
    """{name: sorted image numbers} of the person folders under data_dir (see module doc). A
    folder whose name cannot be written in a pairs file (whitespace, not UTF-8) is skipped with a
    note, since validate_on_lfw.py could not read it back."""
    people = {}
    for name in sorted(os.listdir(data_dir)):
        folder = os.path.join(data_dir, name)
        if name.startswith('.') or not os.path.isdir(folder):
            continue
        if not _writable_name(name):
            sys.stderr.write('skipped the folder %r in %s: a pairs file cannot name it (whitespace or '
                             'not UTF-8)\n' % (name, data_dir))
            continue
        files = pairs_io.image_files(folder)
        numbers = [pairs_io.lfw_number(name, f) for f in files]
        if any(n is not None for n in numbers):
            people[name] = sorted(n for n in numbers if n is not None)
        elif files:
            people[name] = list(range(1, len(files) + 1))
    return people


def deal_people(names, nrof_folds, rng):
    """Shuffle the people and deal them round-robin into folds."""
    order = rng.permutation(len(names))
    return [[names[i] for i in order[k::nrof_folds]] for k in range(nrof_folds)]


class _DrawnPairs(object):
    """The same-person pairs of one person with more than MAX_ENUMERATED_PAIRS of them, drawn at
    random without repeats instead of listed and shuffled: memory grows with the pairs drawn (at
    most --nrof_pairs), not with the square of the person's image count."""

    def __init__(self, numbers, rng):
        self.numbers, self.rng, self.drawn = numbers, rng, set()
        self.capacity = len(numbers) * (len(numbers) - 1) // 2

    def __bool__(self):
        return len(self.drawn) < self.capacity

    def pop(self):
        while True:
            i, j = sorted(self.rng.choice(len(self.numbers), 2, replace=False))
            if (i, j) not in self.drawn:
                self.drawn.add((i, j))
                return self.numbers[i], self.numbers[j]


def same_pairs(people, names, n, rng):
    """n distinct same-person pairs, taking people in turn (shuffled) so they spread over everyone."""
    pools = {}
    for name in names:
        count = len(people[name])
        if count * (count - 1) // 2 > MAX_ENUMERATED_PAIRS:
            pools[name] = _DrawnPairs(people[name], rng)
            continue
        combos = list(itertools.combinations(people[name], 2))
        if combos:
            pools[name] = [combos[i] for i in rng.permutation(len(combos))]
    turn = rng.permutation(sorted(pools)).tolist()
    pairs = []
    while len(pairs) < n and turn:
        still = []
        for name in turn:
            if len(pairs) == n:
                break
            i, j = pools[name].pop()
            pairs.append((name, i, j))
            if pools[name]:
                still.append(name)
        turn = still
    return pairs


def different_pairs(people, names, n, rng):
    """n distinct pairs of images of two different people (people drawn uniformly, then images)."""
    counts = np.array([len(people[name]) for name in names])
    capacity = (counts.sum() ** 2 - (counts ** 2).sum()) // 2
    if capacity <= MAX_ENUMERATED_PAIRS:
        flat = [(a, i, b, j) for a, b in itertools.combinations(range(len(names)), 2)
                for i in people[names[a]] for j in people[names[b]]]
        chosen = rng.choice(len(flat), size=min(n, len(flat)), replace=False)
        return [(names[a], i, names[b], j) for a, i, b, j in (flat[c] for c in chosen)]
    seen, pairs = set(), []
    while len(pairs) < min(n, capacity):
        a, b = sorted(rng.choice(len(names), 2, replace=False))
        i = people[names[a]][rng.randint(counts[a])]
        j = people[names[b]][rng.randint(counts[b])]
        if (a, i, b, j) not in seen:
            seen.add((a, i, b, j))
            pairs.append((names[a], i, names[b], j))
    return pairs


def generate(people, nrof_folds, n, seed):
    """Lines of the pairs file (header included)."""
    rng = np.random.RandomState(seed)
    folds = deal_people(sorted(people), nrof_folds, rng)
    lines = ['%d\t%d' % (nrof_folds, n)]
    for k, names in enumerate(folds):
        same = same_pairs(people, names, n, rng)
        diff = different_pairs(people, names, n, rng)
        if len(same) < n or len(diff) < n:
            raise FaceNetError('fold %d (%d people) has only %d same-person and %d different-person pairs for '
                            '--nrof_pairs %d: use fewer folds or pairs, or a larger dataset'
                            % (k + 1, len(names), len(same), len(diff), n))
        lines += ['%s\t%d\t%d' % p for p in same]
        lines += ['%s\t%d\t%s\t%d' % p for p in diff]
    return lines


def main(args):
    data_dir = os.path.expanduser(args.data_dir)
    if not os.path.isdir(data_dir):
        raise FaceNetError('dataset folder not found: %s' % args.data_dir)
    check_new_output(args.output_file, args.overwrite)
    out_dir = os.path.dirname(os.path.abspath(args.output_file))
    if not os.path.isdir(out_dir):
        raise FaceNetError('output folder does not exist: %s' % out_dir)
    people = person_images(data_dir)
    if len(people) < 2 * args.nrof_folds:
        raise FaceNetError('%s has %d people with images: need at least 2 per fold (%d folds)'
                        % (args.data_dir, len(people), args.nrof_folds))
    lines = generate(people, args.nrof_folds, args.nrof_pairs, args.seed)
    write_atomic(args.output_file, '\n'.join(lines) + '\n')
    print('Wrote %d folds x (%d same + %d different) pairs of %d people to %s'
          % (args.nrof_folds, args.nrof_pairs, args.nrof_pairs, len(people), args.output_file))
    return 0


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_dir', type=str, help='Aligned dataset: one folder of images per person.')
    parser.add_argument('output_file', type=str, help='Pairs file to write (LFW pairs.txt format).')
    parser.add_argument('--nrof_folds', type=positive_int, default=10, help='Number of folds.')
    parser.add_argument('--nrof_pairs', type=positive_int, default=300,
                        help='Same-person pairs per fold, and as many different-person pairs.')
    parser.add_argument('--seed', type=int, default=666, help='Random seed.')
    add_overwrite_argument(parser, 'the pairs file')
    return parser.parse_args(argv)



def console_main():
    """The `facenet-generate-pairs` command (also `python -m facenet_tf.generate_pairs`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
