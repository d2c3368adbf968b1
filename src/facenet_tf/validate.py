"""Validate a face embedding model on LFW (or any pairs file / .bin verification set), classic script.

Example: python src/validate_on_lfw.py ~/datasets/lfw/lfw_mtcnnpy_160 ~/models/20180402-114759 \
             --lfw_pairs data/pairs.txt --distance_metric 1 --use_flipped_images --subtract_mean \
             --use_fixed_image_standardization

`lfw_dir` holds the aligned faces as `<Name>/<Name>_NNNN.png` (or .jpg); a `.bin` verification set
(lfw.bin, cfp_fp.bin, agedb_30.bin) may be given instead, then --lfw_pairs is not used; or an
embeddings file of the aligned faces (export_embeddings.py), whose rows are used and the model is not
loaded. Each distinct image is embedded once, in batches of any size. Prints the classic four result
lines; --far adds TAR and the threshold at chosen false-accept rates, --pairs evaluates more sets
(pairs files against the same folder, or .bin sets) in the same run, with one model load and one
table (docs/thresholds.md).
"""
import os
import sys

import numpy as np

from facenet_tf import tf_setup
from facenet_tf.cli import ArgumentParser, add_standardization_argument, rate_list, int_at_least, positive_int, command
from facenet_tf.errors import FaceNetError
from facenet_tf.images import unaligned_warning

def load_pairs(args, stored=None):
    """(items to embed, index of each pair side in items, issame, folds, encoded, description) of the
    verification set (verification_sets.load_verification_set); with `stored` (an embeddings file's
    content) the items are its relative paths."""
    from facenet_tf.verification_sets import load_verification_set
    vset = load_verification_set(args.lfw_dir, args.lfw_pairs, args.lfw_nrof_folds,
                                 listed=stored.paths if stored is not None else None)
    return vset.items, vset.where, vset.issame, vset.folds, vset.encoded, vset.description


def embed_items(args, items, encoded):
    """Embeddings (float64, as the classic arrays) of the distinct images through the model."""
    return embed_groups(args, [(items, encoded)])[0]


def embed_groups(args, groups):
    """Embeddings (float64) of each (items, encoded) group through the model, loaded once."""
    tf_setup.configure()
    from facenet_tf.embedding import embed
    from facenet_tf.runtimes import open_model
    out = []
    with open_model(args.model, args, use_moving_averages=args.use_moving_averages,
                    image_size=args.image_size) as sess:   # a .pb, a checkpoint folder, .tflite or .onnx
        for items, encoded in groups:
            warning = None if encoded else unaligned_warning(items, args.image_size, args.lfw_dir)
            if warning:
                sys.stderr.write(warning + '\n')
            out.append(embed(sess, items, image_size=args.image_size, batch_size=args.lfw_batch_size,
                             fixed_standardization=args.use_fixed_image_standardization,
                             use_flipped_images=args.use_flipped_images, encoded=encoded).astype(np.float64))
    return out


def report(args, embeddings, issame, folds):
    """Evaluate and print the classic result lines; write the ROC files when asked."""
    from facenet_tf import evaluation
    tpr, fpr, accuracy, val, val_std, far = evaluation.evaluate(
        embeddings, issame, nrof_folds=args.lfw_nrof_folds, distance_metric=args.distance_metric,
        subtract_mean=args.subtract_mean, folds=folds)
    print('Accuracy: %2.5f+-%2.5f' % (np.mean(accuracy), np.std(accuracy)))
    print('Validation rate: %2.5f+-%2.5f @ FAR=%2.5f' % (val, val_std, far))
    auc, eer = evaluation.auc_eer(fpr, tpr)
    print('Area Under Curve (AUC): %1.3f' % auc)
    print('Equal Error Rate (EER): %1.3f' % eer)
    if args.roc_output:
        from facenet_tf.roc_output import write_roc
        title = '%s: accuracy %.4f, AUC %.3f, EER %.3f' % (
            os.path.basename(os.path.normpath(args.model)), np.mean(accuracy), auc, eer)
        csv_path, png = write_roc(args.roc_output, evaluation.ROC_THRESHOLDS, fpr, tpr, title,
                                  val=val, far=far, eer=eer)
        print('ROC written to %s and %s' % (csv_path, png))


def extra_sets(args, stored):
    """The VerificationSets of --pairs: a .bin file, or a pairs file read against lfw_dir."""
    from facenet_tf.verification_sets import load_verification_set
    sets = []
    for source in args.pairs:
        name = os.path.basename(source)
        if source.lower().endswith('.bin'):
            sets.append(load_verification_set(source, None, args.lfw_nrof_folds, name))
        elif stored is None and os.path.isfile(os.path.expanduser(args.lfw_dir)):
            raise FaceNetError('%s: a pairs file is read against an aligned folder or embeddings file, '
                               'and %s is a .bin set' % (source, args.lfw_dir))
        else:
            sets.append(load_verification_set(args.lfw_dir, source, args.lfw_nrof_folds, name,
                                              listed=stored.paths if stored is not None else None))
    return sets


def embed_sets(args, sets, stored):
    """Per set, the embeddings of its pair sides (rows 2i, 2i+1: pair i): image paths shared by
    several sets are embedded once, .bin sets on their own, all with one model load; the rows of
    `stored` for the paths when an embeddings file was given."""
    from facenet_tf import embeddings_file
    from facenet_tf.embedding import unique_items
    paths, _ = unique_items([p for s in sets if not s.encoded for p in s.items])
    index = {p: i for i, p in enumerate(paths)}
    groups = [(paths, False)] if stored is None and paths else []
    groups += [(s.items, True) for s in sets if s.encoded]
    if groups:
        print('Running forward pass on %d distinct images (%s)'
              % (sum(len(g[0]) for g in groups), '; '.join(s.description for s in sets)))
        sys.stdout.flush()
    computed = embed_groups(args, groups) if groups else []
    if groups:
        print('Embedded %d images' % sum(len(g[0]) for g in groups))
    if stored is not None and paths:
        print('Reading the embeddings of %d distinct images from %s (model %s; %s)'
              % (len(paths), args.lfw_dir, stored.attrs.get('model'),
                 '; '.join(s.description for s in sets if not s.encoded)))
        shared = embeddings_file.rows_of(stored, paths).astype(np.float64)
    else:
        shared = computed.pop(0) if paths else None
    out = []
    for s in sets:
        if s.encoded:
            out.append(computed.pop(0)[s.where])
        else:
            out.append(shared[np.array([index[p] for p in s.items], np.int64)[s.where]])
    return out


def operating_point_rows(args, name, embeddings, issame, folds):
    """(name, OperatingPoint) rows of one set at args.far (default 1e-2, 1e-3, 1e-4), on the
    distance of --distance_metric (with --subtract_mean, the mean of all the set's embeddings)."""
    from facenet_tf import evaluation, operating_points
    mean = np.mean(embeddings, axis=0) if args.subtract_mean else 0.0
    dist = evaluation.distance(embeddings[0::2] - mean, embeddings[1::2] - mean, args.distance_metric)
    points = operating_points.operating_points(dist, issame, args.far or operating_points.DEFAULT_FARS,
                                               folds=folds, nrof_folds=args.lfw_nrof_folds)
    return [(name, p) for p in points]


def main(args):
    tf_setup.configure()
    from facenet_tf import embeddings_file
    stored = embeddings_file.read(args.lfw_dir) if embeddings_file.is_embeddings_file(args.lfw_dir) else None
    if stored is None:
        from facenet_tf.model_io import find_model
        find_model(args.model)
    if not args.pairs:
        items, where, issame, folds, encoded, description = load_pairs(args, stored)
        if stored is not None:
            print('Reading the embeddings of %d distinct images from %s (model %s; %s)'
                  % (len(items), args.lfw_dir, stored.attrs.get('model'), description))
            emb = embeddings_file.rows_of(stored, items).astype(np.float64)
        else:
            print('Running forward pass on %d distinct images (%s)' % (len(items), description))
            sys.stdout.flush()
            emb = embed_items(args, items, encoded)
            print('Embedded %d images' % len(items))
        report(args, emb[where], issame, folds)
        if args.far:
            _print_table(args, operating_point_rows(args, _set_name(args), emb[where], issame, folds))
        return 0
    from facenet_tf.verification_sets import load_verification_set
    first = load_verification_set(args.lfw_dir, args.lfw_pairs, args.lfw_nrof_folds, _set_name(args),
                                  listed=stored.paths if stored is not None else None)
    sets = [first] + extra_sets(args, stored)
    rows = []
    for k, (vset, emb) in enumerate(zip(sets, embed_sets(args, sets, stored))):
        if k:
            print('Set %s (%s):' % (vset.name, vset.description))
        report(args if not k else _without_roc(args), emb, vset.issame, vset.folds)
        rows += operating_point_rows(args, vset.name, emb, vset.issame, vset.folds)
    _print_table(args, rows)
    return 0


def _set_name(args):
    path = os.path.expanduser(args.lfw_dir)
    return os.path.basename(args.lfw_dir if os.path.isfile(path) and not args.lfw_dir.lower().endswith(
        ('.h5', '.hdf5')) else args.lfw_pairs)


def _without_roc(args):
    import argparse
    return argparse.Namespace(**dict(vars(args), roc_output=''))


def _print_table(args, rows):
    from facenet_tf import operating_points
    metric = ('squared L2', 'angle')[args.distance_metric]
    print('Verification at chosen false-accept rates (thresholds: %s%s; accept when below):'
          % (metric, ' after subtracting the mean embedding' if args.subtract_mean else ''))
    for line in operating_points.table(rows, metric, with_l2=args.distance_metric == 0 and not args.subtract_mean):
        print(line)


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('lfw_dir', type=str,
                        help='Path to the data directory containing aligned LFW face patches, '
                             'or a .bin verification set.')
    parser.add_argument('model', type=str,
                        help='Either a directory containing the meta_file and ckpt_file or a model '
                             'protobuf (.pb) file')
    parser.add_argument('--lfw_batch_size', type=positive_int, default=100,
                        help='Number of images to process in a batch in the LFW test set.')
    parser.add_argument('--image_size', type=positive_int, default=160, help='Image size (height, width) in pixels.')
    parser.add_argument('--lfw_pairs', type=str, default='data/pairs.txt',
                        help='The file containing the pairs to use for validation.')
    parser.add_argument('--lfw_nrof_folds', type=int_at_least(2), default=10,
                        help='Number of folds to use for cross validation. Mainly used for testing.')
    parser.add_argument('--distance_metric', type=int, choices=(0, 1), default=0,
                        help='Distance metric  0:euclidian, 1:cosine similarity.')
    parser.add_argument('--use_flipped_images', action='store_true',
                        help='Concatenates embeddings for the image and its horizontally flipped counterpart.')
    parser.add_argument('--subtract_mean', action='store_true',
                        help='Subtract feature mean before calculating distance.')
    parser.add_argument('--use_moving_averages', action='store_true',
                        help='Evaluate the moving averages of a checkpoint\'s weights (kept by the training '
                        'scripts) instead of the weights.')
    add_standardization_argument(parser)
    parser.add_argument('--roc_output', type=str, default='',
                        help='Write the ROC points to this CSV file and its plot beside it (.png).')
    parser.add_argument('--far', type=rate_list, metavar='LIST',
                        help='After the classic lines, print TAR and the threshold at these false-accept '
                             'rates (e.g. 1e-2,1e-3,1e-4), per fold and overall (docs/thresholds.md).')
    parser.add_argument('--pairs', action='append', default=[], metavar='FILE',
                        help='Another verification set in the same run (repeatable): a pairs file read '
                             'against lfw_dir, or a .bin set. Prints its classic lines and one table of '
                             'every set (at --far, default 1e-2,1e-3,1e-4).')
    tf_setup.add_inference_arguments(parser)
    return parser.parse_args(argv)


def console_main():
    """The `facenet-validate` command (also `python -m facenet_tf.validate`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
