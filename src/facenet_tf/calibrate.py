"""Measure the distance threshold of a model for a target false-accept rate on your own aligned faces.

Example: facenet-calibrate ~/datasets/my_faces_160 model.pb calib.json --far 1e-3
         facenet-recognize model.pb photo.jpg --gallery people/ --threshold_file calib.json

The folder holds one sub-folder of aligned faces per person (as the aligner writes it), or it is an
embeddings file of such a folder (export_embeddings.py: its rows are used, the model is not loaded).
With at most --max_all_pairs_images images every pair of images is used, and the people are dealt
into --nrof_folds folds (a fold's pairs are those with one of its people); otherwise pairs are drawn
as generate_pairs.py draws them (folds of disjoint people, --nrof_pairs same-person and as many
different-person pairs each). The threshold is exact for the target FAR on all pairs (L2 distance,
the scale of compare, recognize, classifier and the API); the folds give the held-out TAR and FAR
and a 95% interval of the threshold (docs/thresholds.md). Writes a small JSON file; prints a table.
"""
import os
import sys

import numpy as np

from facenet_tf import operating_points as op
from facenet_tf import tf_setup
from facenet_tf.cli import ArgumentParser, add_standardization_argument, rate, command, int_at_least, positive_int
from facenet_tf.errors import FaceNetError
from facenet_tf.files import add_overwrite_argument, check_new_output

MAX_ALL_PAIRS_IMAGES = 2000


def _note(line):
    sys.stdout.flush()
    sys.stderr.write(line + '\n')


def load_people(data_dir):
    """(ImageClass list with images, embeddings file content or None)."""
    from facenet_tf import embeddings_file
    from facenet_tf.dataset import get_dataset, note_skipped
    if embeddings_file.is_embeddings_file(data_dir):
        stored = embeddings_file.read(data_dir)
        classes = embeddings_file.dataset(stored)
    elif os.path.isdir(data_dir):
        stored, skipped = None, []
        classes = get_dataset(data_dir, skipped=skipped)
        note_skipped(skipped, _note)
    else:
        raise FaceNetError('%s: neither a folder of aligned faces nor an embeddings file' % data_dir)
    return [c for c in classes if c.image_paths], stored


def all_pairs(classes, nrof_folds, seed):
    """(first index, second index, issame, folds) of every pair of images; people dealt to folds
    (generate_pairs.deal_people), a fold's pairs are those with one of its people."""
    from facenet_tf.generate_pairs import deal_people
    label = np.concatenate([np.full(len(c.image_paths), k) for k, c in enumerate(classes)])
    first, second = np.triu_indices(label.size, 1)
    dealt = deal_people(list(range(len(classes))), nrof_folds, np.random.RandomState(seed))
    fold_of = np.zeros(len(classes), np.int64)
    for k, people in enumerate(dealt):
        fold_of[people] = k
    f1, f2 = fold_of[label[first]], fold_of[label[second]]
    folds = [np.flatnonzero((f1 == k) | (f2 == k)) for k in range(nrof_folds)]
    return first, second, label[first] == label[second], folds


def drawn_pairs(classes, nrof_folds, nrof_pairs, seed):
    """(first index, second index, issame, None) of the pairs generate_pairs.py would draw (folds of
    disjoint people, in order: the default unshuffled folds)."""
    from facenet_tf.generate_pairs import generate
    start = np.cumsum([0] + [len(c.image_paths) for c in classes])
    people = {str(k): list(range(1, len(c.image_paths) + 1)) for k, c in enumerate(classes)}  # names: indices
    sides = []
    for line in generate(people, nrof_folds, nrof_pairs, seed)[1:]:
        p = [int(x) for x in line.split('\t')]
        a, b = ((p[0], p[1]), (p[0], p[2])) if len(p) == 3 else ((p[0], p[1]), (p[2], p[3]))
        sides.append((start[a[0]] + a[1] - 1, start[b[0]] + b[1] - 1, len(p) == 3))
    first, second, issame = (np.array(x) for x in zip(*sides))
    return first, second, issame.astype(bool), None


def embeddings_of(args, paths, stored):
    """Embeddings of the images: the embeddings file's rows, or through the model (loaded once)."""
    if stored is not None:
        from facenet_tf import embeddings_file
        return embeddings_file.rows_of(stored, paths).astype(np.float64)
    tf_setup.configure()
    from facenet_tf.embedding import embed
    from facenet_tf.images import unaligned_warning
    from facenet_tf.runtimes import open_model
    with open_model(args.model, args, image_size=args.image_size) as sess:   # .pb, folder, .tflite, .onnx
        warning = unaligned_warning(paths, args.image_size, args.data_dir)
        if warning:
            _note(warning)
        emb = embed(sess, paths, image_size=args.image_size, batch_size=args.batch_size,
                    fixed_standardization=args.use_fixed_image_standardization)
    return emb.astype(np.float64)


def pair_distances(emb, first, second, chunk=1 << 20):
    """L2 distances of the pairs (first[i], second[i]), chunked so memory stays bounded."""
    out = np.empty(first.size)
    for s in range(0, first.size, chunk):
        diff = emb[first[s:s + chunk]] - emb[second[s:s + chunk]]
        out[s:s + chunk] = np.sqrt(np.einsum('ij,ij->i', diff, diff))
    return out


def main(args):
    data_dir = os.path.expanduser(args.data_dir)
    output = os.path.expanduser(args.output)
    check_new_output(output, args.overwrite)
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise FaceNetError('%s: the output folder does not exist' % output)
    if os.path.realpath(output) in (os.path.realpath(data_dir), os.path.realpath(os.path.expanduser(args.model))):
        raise FaceNetError('%s: the output would replace an input' % output)
    classes, stored = load_people(data_dir)
    if len(classes) < 2 * args.nrof_folds:
        raise FaceNetError('%s has %d people with images: need at least 2 per fold (%d folds)'
                           % (args.data_dir, len(classes), args.nrof_folds))
    if stored is None:
        from facenet_tf.model_io import find_model
        find_model(args.model)
    paths = [p for c in classes for p in c.image_paths]
    if len(paths) <= args.max_all_pairs_images:
        first, second, issame, folds = all_pairs(classes, args.nrof_folds, args.seed)
        how = 'all pairs of %d images' % len(paths)
    else:
        first, second, issame, folds = drawn_pairs(classes, args.nrof_folds, args.nrof_pairs, args.seed)
        how = '%d folds x (%d same + %d different) pairs drawn from %d images' % (
            args.nrof_folds, args.nrof_pairs, args.nrof_pairs, len(paths))
        used = np.unique(np.concatenate([first, second]))
        remap = np.zeros(len(paths), np.int64)
        remap[used] = np.arange(used.size)
        paths, first, second = [paths[i] for i in used], remap[first], remap[second]
    print('Calibrating on %s of %d people (%d same-person, %d different-person pairs)'
          % (how, len(classes), int(issame.sum()), int((~issame).sum())))
    sys.stdout.flush()
    emb = embeddings_of(args, paths, stored)
    dist = pair_distances(emb, first, second)
    fars = sorted(set(op.DEFAULT_FARS) | {args.far}, reverse=True)
    points = op.operating_points(dist, issame, fars, folds=folds, nrof_folds=args.nrof_folds)
    source = os.path.basename(os.path.normpath(data_dir))
    for line in op.table([(source, p) for p in points], 'L2'):
        print(line)
    point = points[fars.index(args.far)]
    model = stored.attrs.get('model') if stored is not None and stored.attrs.get('model') else args.model
    record = op.threshold_record(point, 'l2', os.path.basename(os.path.normpath(str(model))), source,
                                 args.nrof_folds)
    op.write_threshold_file(output, record)
    lo, hi = record['ci95']
    print('Threshold %.4f (95%% interval %.4f to %s) for FAR %s written to %s'
          % (point.threshold, lo, 'unbounded' if hi is None else '%.4f' % hi, op.far_text(args.far), output))
    if not point.meaningful:
        _note('warning: %d different-person pairs cannot measure a FAR of %s (below 1/%d): use more images'
              % (point.nrof_impostor, op.far_text(args.far), point.nrof_impostor))
    return 0


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_dir', type=str,
                        help='Aligned faces, one sub-folder per person, or an embeddings file of them.')
    parser.add_argument('model', type=str, help='Frozen .pb or checkpoint folder.')
    parser.add_argument('output', type=str, help='Threshold file to write (JSON).')
    parser.add_argument('--far', type=rate, default=1e-3, help='Target false-accept rate.')
    parser.add_argument('--nrof_folds', type=int_at_least(2), default=10,
                        help='Folds for the held-out rates and the interval of the threshold.')
    parser.add_argument('--max_all_pairs_images', type=positive_int, default=MAX_ALL_PAIRS_IMAGES,
                        help='Use every pair of images up to this many images; above it, draw pairs as '
                             'generate_pairs.py does.')
    parser.add_argument('--nrof_pairs', type=positive_int, default=300,
                        help='Drawn pairs: same-person pairs per fold, and as many different-person pairs.')
    parser.add_argument('--seed', type=int, default=666, help='Random seed of the folds and drawn pairs.')
    parser.add_argument('--batch_size', type=positive_int, default=100, help='Images per forward pass.')
    parser.add_argument('--image_size', type=positive_int, default=160, help='Image size (height, width) in pixels.')
    add_standardization_argument(parser)
    add_overwrite_argument(parser, 'the threshold file')
    tf_setup.add_inference_arguments(parser)
    return parser.parse_args(argv)


def console_main():
    """The `facenet-calibrate` command (also `python -m facenet_tf.calibrate`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
