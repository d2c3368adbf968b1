"""Validate a face embedding model on LFW (or any pairs file / .bin verification set), classic script.

Example: python src/validate_on_lfw.py ~/datasets/lfw/lfw_mtcnnpy_160 ~/models/20180402-114759 \
             --lfw_pairs data/pairs.txt --distance_metric 1 --use_flipped_images --subtract_mean \
             --use_fixed_image_standardization

`lfw_dir` holds the aligned faces as `<Name>/<Name>_NNNN.png` (or .jpg); a `.bin` verification set
(lfw.bin, cfp_fp.bin, agedb_30.bin) may be given instead, then --lfw_pairs is not used; or an
embeddings file of the aligned faces (export_embeddings.py), whose rows are used and the model is not
loaded. Each distinct image is embedded once, in batches of any size. Prints the classic four result
lines.
"""
import os
import sys

import numpy as np

from facenet_tf import tf_setup
from facenet_tf.cli import ArgumentParser, int_at_least, positive_int, command
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
    tf1 = tf_setup.configure().compat.v1
    from facenet_tf.embedding import embed, load_for_inference
    with tf1.Graph().as_default():
        with tf_setup.inference_session(args) as sess:
            load_for_inference(args.model, sess, args.use_moving_averages)
            warning = None if encoded else unaligned_warning(items, args.image_size, args.lfw_dir)
            if warning:
                sys.stderr.write(warning + '\n')
            emb = embed(sess, items, image_size=args.image_size, batch_size=args.lfw_batch_size,
                        fixed_standardization=args.use_fixed_image_standardization,
                        use_flipped_images=args.use_flipped_images, encoded=encoded)
    return emb.astype(np.float64)


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


def main(args):
    tf_setup.configure()
    from facenet_tf import embeddings_file
    stored = embeddings_file.read(args.lfw_dir) if embeddings_file.is_embeddings_file(args.lfw_dir) else None
    if stored is None:
        from facenet_tf.model_io import find_model
        find_model(args.model)
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
    return 0


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
    parser.add_argument('--use_fixed_image_standardization', action='store_true',
                        help='Performs fixed standardization of images.')
    parser.add_argument('--roc_output', type=str, default='',
                        help='Write the ROC points to this CSV file and its plot beside it (.png).')
    tf_setup.add_inference_arguments(parser)
    return parser.parse_args(argv)



def console_main():
    """The `facenet-validate` command (also `python -m facenet_tf.validate`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
