"""Train a face classifier on the embeddings of an aligned image folder, or classify a folder with it.

TRAIN: embed every image, fit a linear SVM with probabilities, and pickle (model, class_names).
CLASSIFY: embed every image, print each image's best class and its probability, then the accuracy
(folder names are the true classes). With --unknown_threshold, a face whose embedding is farther
(L2 distance) than the threshold from every training embedding is reported as unknown.

An embeddings file of the aligned folder (export_embeddings.py) may be given in place of the folder
(data_dir or --test_data_dir): its rows are used and the model is not loaded for it.

Usage:
  python src/classifier.py TRAIN aligned_dir model.pb classifier.pkl
  python src/classifier.py CLASSIFY aligned_dir model.pb classifier.pkl [--unknown_threshold 1.1]
  python src/classifier.py TRAIN embeddings.h5 model.pb classifier.pkl
"""
import argparse
import os
import sys
from collections import namedtuple

import numpy as np

from facenet_tf import classify, embeddings_file, tf_setup
from facenet_tf.cli import ArgumentParser, add_standardization_argument, non_negative_float, command
from facenet_tf.dataset import get_dataset, get_image_paths_and_labels, note_skipped
from facenet_tf.errors import FaceNetError
from facenet_tf.files import add_overwrite_argument, check_new_output
from facenet_tf.images import unaligned_warning

# an image folder (stored None) or an embeddings file (paths relative, as stored in it)
# with the warning line about image sizes (unaligned_warning), shown once the model has loaded
Images = namedtuple('Images', 'dataset paths labels stored warning')


def load_dataset(data_dir, args, mode, split, stored=None):
    """The classes of data_dir, or of the embeddings file's content `stored` (with `split`, the
    training or test part of the classic split); classes without images are left out with a note,
    files that are not images with a note each on stderr."""
    skipped = []
    dataset = embeddings_file.dataset(stored) if stored is not None else get_dataset(data_dir, skipped=skipped)
    note_skipped(skipped, _warn)
    if split:
        train_set, test_set = classify.split_dataset(dataset, args.min_nrof_images_per_class,
                                                     args.nrof_train_images_per_class)
        dataset = train_set if mode == 'TRAIN' else test_set
        if not dataset:
            raise FaceNetError('no class of %s has --min_nrof_images_per_class %d images'
                            % (data_dir, args.min_nrof_images_per_class))
    empty = [cls.name for cls in dataset if not cls.image_paths]
    dataset = [cls for cls in dataset if cls.image_paths]
    if not dataset:
        raise FaceNetError('no images in %s (expected one sub-folder of aligned images per person)' % data_dir)
    if empty:
        _warn('Left out %d class%s without images: %s' % (len(empty), '' if len(empty) == 1 else 'es',
                                                          ', '.join(empty[:10])))
    return dataset


def compute_embeddings(args, *path_lists, warnings=()):
    """Embeddings of each list of image files with the model (loaded once), in batches of
    args.batch_size; `warnings` are written to stderr once the model has loaded (after every
    error the run could stop on)."""
    tf_setup.configure()
    from facenet_tf import embedding, runtimes
    print('Loading feature extraction model')
    with runtimes.open_model(args.model, args, image_size=args.image_size) as sess:  # .pb, folder, .tflite, .onnx
        for warning in warnings:
            _warn(warning)
        print('Calculating features for images')
        sys.stdout.flush()
        return [embedding.embed(sess, paths, image_size=args.image_size, batch_size=args.batch_size,
                                fixed_standardization=args.use_fixed_image_standardization)
                for paths in path_lists]


def load_images(args, data_dir, mode, split):
    """Images of a folder or an embeddings file, with the classic count lines."""
    stored = None
    if embeddings_file.is_embeddings_file(data_dir):
        stored = embeddings_file.read(data_dir)
    elif os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise FaceNetError('%s is neither a folder of aligned faces nor an embeddings file (HDF5)' % data_dir)
    if stored is not None:
        print('Embeddings read from %s (model %s)' % (data_dir, stored.attrs.get('model')))
    dataset = load_dataset(data_dir, args, mode, split, stored)
    if mode == 'TRAIN' and len(dataset) < 2:
        raise FaceNetError('training needs at least two classes with images, %s has %d'
                        % (data_dir, len(dataset)))
    paths, labels = get_image_paths_and_labels(dataset)
    print('Number of classes: %d' % len(dataset))
    print('Number of images: %d' % len(paths))
    warning = unaligned_warning(paths, args.image_size, data_dir) if stored is None else None
    return Images(dataset, paths, labels, stored, warning)


def _warn(line):
    sys.stdout.flush()
    sys.stderr.write(line + '\n')


def embeddings_of(args, *image_sets):
    """Embeddings of each Images: the rows of its embeddings file, or computed with the model
    (loaded once, only when a set needs it)."""
    warnings = [s.warning for s in image_sets if s.warning]
    computed = iter(compute_embeddings(args, *[s.paths for s in image_sets if s.stored is None], warnings=warnings)
                    if any(s.stored is None for s in image_sets) else [])
    return [next(computed) if s.stored is None else embeddings_file.rows_of(s.stored, s.paths)
            for s in image_sets]


def report(model, class_names, dataset, labels, emb, unknown_threshold):
    """Print each image's best class and probability (the classic lines), then the accuracy."""
    names, probabilities, distances = classify.predict(model, class_names, emb, unknown_threshold)
    for i, (name, p) in enumerate(zip(names, probabilities)):
        line = '%4d  %s: %.3f' % (i, name, p)
        if distances is not None:
            line += '  (distance %.3f)' % distances[i]
        print(line)
    true_names = [classify.display_name(dataset[label].name) for label in labels]
    print('Accuracy: %.3f' % classify.accuracy(names, true_names, class_names))
    if unknown_threshold is not None:
        print('Unknown: %d of %d images (nearest training face farther than %.3f)'
              % (sum(n == classify.UNKNOWN for n in names), len(names), unknown_threshold))


def main(args):
    data_dir = os.path.expanduser(args.data_dir)
    classifier_file = os.path.expanduser(args.classifier_filename)
    np.random.seed(seed=args.seed)
    if args.threshold_file:
        from facenet_tf.operating_points import threshold_from_file
        args.unknown_threshold = threshold_from_file(args.threshold_file, _warn)
    if args.mode == 'CLASSIFY':
        model, class_names = classify.load(classifier_file)
        if args.unknown_threshold is not None:
            classify.training_embeddings(model)
        images = load_images(args, data_dir, 'CLASSIFY', args.use_split_dataset)
        dataset, labels = images.dataset, images.labels
        emb, = embeddings_of(args, images)
        classify.check_embedding_size(classifier_file, model, emb)
        print('Testing classifier')
        print('Loaded classifier model from file "%s"' % classifier_file)
        report(model, class_names, dataset, labels, emb, args.unknown_threshold)
        return
    folder = os.path.dirname(os.path.abspath(classifier_file))
    if not os.path.isdir(folder):
        raise FaceNetError('folder of the classifier file not found: %s' % folder)
    check_new_output(classifier_file, args.overwrite)
    train_images = load_images(args, data_dir, 'TRAIN', args.use_split_dataset)
    dataset, labels = train_images.dataset, train_images.labels
    test = None
    if args.test_data_dir:
        print('Test data: %s' % args.test_data_dir)
        test = load_images(args, os.path.expanduser(args.test_data_dir), 'CLASSIFY', False)
    embeddings = embeddings_of(args, train_images, *([test] if test else []))
    if test and embeddings[1].shape[1] != embeddings[0].shape[1]:
        raise FaceNetError('%s gives %d-D embeddings, %s %d-D ones (made with another model?)' % (
            args.test_data_dir, embeddings[1].shape[1], data_dir, embeddings[0].shape[1]))
    print('Training classifier')
    class_names = [classify.display_name(cls.name) for cls in dataset]
    model = classify.train(embeddings[0], labels)
    classify.save(classifier_file, model, class_names)
    print('Saved classifier model to file "%s"' % classifier_file)
    if test:
        print('Testing classifier on %s' % args.test_data_dir)
        report(model, class_names, test[0], test[2], embeddings[1], args.unknown_threshold)


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('mode', type=str, choices=['TRAIN', 'CLASSIFY'],
                        help='Indicates if a new classifier should be trained or a classification '
                             'model should be used for classification')
    parser.add_argument('data_dir', type=str,
                        help='Path to the data directory containing aligned face patches.')
    parser.add_argument('model', type=str,
                        help='Could be either a directory containing the meta_file and ckpt_file or a '
                             'model protobuf (.pb) file')
    parser.add_argument('classifier_filename',
                        help='Classifier model file name as a pickle (.pkl) file. For training this is '
                             'the output and for classification this is an input.')
    parser.add_argument('--use_split_dataset', action='store_true',
                        help='Indicates that the dataset specified by data_dir should be split into a '
                             'training and test set. Otherwise a separate test set can be specified '
                             'using the test_data_dir option.')
    parser.add_argument('--test_data_dir', type=str,
                        help='Path to the test data directory containing aligned images used for '
                             'testing: in TRAIN mode, all its images are classified with the new '
                             'classifier after training.')
    parser.add_argument('--batch_size', type=int, help='Number of images to process in a batch.', default=90)
    parser.add_argument('--image_size', type=int, help='Image size (height, width) in pixels.', default=160)
    parser.add_argument('--seed', type=int, help='Random seed.', default=666)
    parser.add_argument('--min_nrof_images_per_class', type=int,
                        help='Only include classes with at least this number of images in the dataset',
                        default=20)
    parser.add_argument('--nrof_train_images_per_class', type=int,
                        help='Use this number of images from each class for training and the rest for '
                             'testing', default=10)
    unknown = parser.add_mutually_exclusive_group()
    unknown.add_argument('--unknown_threshold', type=non_negative_float, default=None,
                        help='Report a face as unknown when the L2 distance from its embedding to the '
                             'nearest training embedding is above this (e.g. 1.1; same scale as '
                             'compare.py distances).')
    unknown.add_argument('--threshold_file', type=str, metavar='FILE',
                         help='--unknown_threshold from a threshold file written by facenet-calibrate (its '
                              'FAR is printed; docs/thresholds.md).')
    add_standardization_argument(parser)
    add_overwrite_argument(parser, 'the classifier file in mode TRAIN')
    tf_setup.add_inference_arguments(parser)
    return parser.parse_args(argv)



def console_main():
    """The `facenet-classifier` command (also `python -m facenet_tf.classifier`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
