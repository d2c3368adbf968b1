"""Open-set identification (1:N) of a dataset of people: DIR at FPIR and closed-set rank-k over seeded trials.

Example: python src/evaluate_identification.py lfw_published_embeddings.h5 --trials 10 --seed 0
         python src/evaluate_identification.py ~/datasets/lfw/lfw_mtcnnpy_160 model.pb

`data` is an aligned folder (one sub-folder of face crops per person) embedded with `model`, or an
embeddings file of one (export_embeddings.py; the model is then not needed). Each trial enrols
--nrof_enrolled people among those with more than --gallery_per_person images, takes that many of
their images as the gallery and the rest as genuine probes; every image of the people not enrolled is
an impostor probe. Prints the split sizes and a table of each metric's mean, spread (std), min and
max over the trials (the protocol step by step: docs/identification.md).
"""
import sys

import numpy as np

from facenet_tf import tf_setup
from facenet_tf.cli import ArgumentParser, add_standardization_argument, rate_list, command, positive_int
from facenet_tf.errors import FaceNetError


def rank_list(text):
    """An argparse type: comma-separated ranks, each at least 1."""
    import argparse
    try:
        values = [int(v) for v in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated integers, got %r' % text)
    if not all(v >= 1 for v in values):
        raise argparse.ArgumentTypeError('each rank must be at least 1, got %r' % text)
    return values


def load_rows(args):
    """(embeddings, labels, class names, description) of the data: an embeddings file's rows, or the
    aligned folder's images embedded with the model."""
    from facenet_tf import embeddings_file
    if embeddings_file.is_embeddings_file(args.data):
        stored = embeddings_file.read(args.data)
        return (stored.embeddings, stored.labels, stored.class_names,
                'embeddings file %s (model %s)' % (args.data, stored.attrs.get('model')))
    import os
    if not os.path.exists(args.data):
        raise FaceNetError('%s: not found (expected an aligned folder or an embeddings file)' % args.data)
    if not os.path.isdir(args.data):
        raise FaceNetError('%s is neither a folder of aligned faces nor an embeddings file (HDF5)' % args.data)
    if not args.model:
        raise FaceNetError('%s is an image folder: give the model to embed it with' % args.data)
    from facenet_tf.dataset import get_dataset, get_image_paths_and_labels, note_skipped
    skipped = []
    dataset = get_dataset(args.data, skipped=skipped)
    note_skipped(skipped, lambda line: sys.stderr.write(line + '\n'))
    paths, labels = get_image_paths_and_labels(dataset)
    if not paths:
        raise FaceNetError('no images in %s (expected one sub-folder of aligned images per person)' % args.data)
    from facenet_tf.model_io import find_model
    find_model(args.model)
    tf_setup.configure()
    from facenet_tf.embedding import embed
    from facenet_tf.runtimes import open_model
    with open_model(args.model, args, use_moving_averages=args.use_moving_averages,
                    image_size=args.image_size) as sess:   # a .pb, a checkpoint folder, .tflite or .onnx
        emb = embed(sess, paths, image_size=args.image_size, batch_size=args.embed_batch_size,
                    fixed_standardization=args.use_fixed_image_standardization,
                    use_flipped_images=args.use_flipped_images)
    return emb, np.asarray(labels, np.int64), [c.name for c in dataset], 'folder %s (model %s)' % (args.data,
                                                                                                   args.model)


def table_lines(summary, ranks, fpirs):
    """The result table (Markdown): each metric's mean, std, min and max over the trials."""
    lines = ['| metric | mean | std | min | max |', '| --- | ---: | ---: | ---: | ---: |']
    keys = (['rank-%d' % k for k in ranks] + ['DIR@FPIR=%g' % f for f in fpirs]
            + ['threshold@FPIR=%g' % f for f in fpirs] + ['FPIR@FPIR=%g' % f for f in fpirs])
    names = {'threshold@FPIR=%g' % f: 'threshold (cosine) at FPIR %g' % f for f in fpirs}
    names.update({'FPIR@FPIR=%g' % f: 'realised FPIR at target %g' % f for f in fpirs})
    names.update({'DIR@FPIR=%g' % f: 'DIR at FPIR %g (rank 1)' % f for f in fpirs})
    names.update({'rank-%d' % k: 'closed-set rank-%d' % k for k in ranks})
    for key in keys:
        mean, std, low, high = summary[key]
        lines.append('| %s | %.4f | %.4f | %.4f | %.4f |' % (names[key], mean, std, low, high))
    return lines


def main(args):
    from facenet_tf import identification
    from facenet_tf.progress import Progress
    embeddings, labels, class_names, description = load_rows(args)
    eligible = len(identification.eligible_people(labels, args.gallery_per_person))
    people = len(np.unique(labels))
    sys.stderr.write('%d images of %d people from %s; %d people have at least %d images\n'
                     % (len(labels), people, description, eligible, args.gallery_per_person + 1))
    progress = Progress(args.trials, 'trials', 'trial')
    results, sizes = identification.run_trials(
        embeddings, labels, trials=args.trials, seed=args.seed, nrof_enrolled=args.nrof_enrolled,
        gallery_per_person=args.gallery_per_person, ranks=args.rank, fpirs=args.fpir,
        batch_size=args.batch_size, progress=progress)
    sys.stderr.write(progress.summary() + '\n')
    impostors = [s['impostors'] for s in sizes]
    for f in args.fpir:
        if min(impostors) * f < 1:
            sys.stderr.write('note: FPIR %g needs at least %d impostor probes, a trial has %d: its threshold is the '
                             'highest impostor score\n' % (f, int(np.ceil(1 / f)), min(impostors)))
    print('Open-set identification: %d trial%s (seed %d) on %d images of %d people' % (
        args.trials, '' if args.trials == 1 else 's', args.seed, len(labels), people))
    print('Per trial: %d enrolled of %d eligible people, %d gallery image%s each; %s genuine probes, '
          '%s impostor probes (%d people not enrolled)' % (
              args.nrof_enrolled, eligible, args.gallery_per_person, '' if args.gallery_per_person == 1 else 's',
              _count_range([s['genuine'] for s in sizes]), _count_range(impostors), people - args.nrof_enrolled))
    for line in table_lines(identification.summary(results), args.rank, args.fpir):
        print(line)
    return 0


def _count_range(values):
    return '%d' % values[0] if min(values) == max(values) else '%d-%d' % (min(values), max(values))


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data', type=str,
                        help='An aligned folder (one sub-folder per person) or an embeddings file (.h5) of one.')
    parser.add_argument('model', type=str, nargs='?', default='',
                        help='A model folder or frozen .pb to embed an image folder with (not used with an '
                             'embeddings file).')
    parser.add_argument('--trials', type=positive_int, default=10, help='Number of random trials.')
    parser.add_argument('--seed', type=int, default=0, help='Seed of the trials (trial t uses (seed, t)).')
    parser.add_argument('--nrof_enrolled', type=positive_int, default=1000,
                        help='People enrolled in the gallery per trial.')
    parser.add_argument('--gallery_per_person', type=positive_int, default=1,
                        help='Gallery images per enrolled person (scores fused by their maximum).')
    parser.add_argument('--fpir', type=rate_list, default=[0.01, 0.001],
                        help='False-positive identification rates at which DIR is reported (comma-separated).')
    parser.add_argument('--rank', type=rank_list, default=[1, 5],
                        help='Closed-set ranks reported (comma-separated).')
    parser.add_argument('--batch_size', type=positive_int, default=1024,
                        help='Probes scored at a time (memory: batch x gallery floats).')
    parser.add_argument('--image_size', type=positive_int, default=160, help='Image size (folder input).')
    parser.add_argument('--embed_batch_size', type=positive_int, default=100,
                        help='Images per forward pass (folder input).')
    add_standardization_argument(parser, 'the images (folder input)')
    parser.add_argument('--use_flipped_images', action='store_true',
                        help='Concatenate the embeddings of each image and its mirror image (folder input).')
    parser.add_argument('--use_moving_averages', action='store_true',
                        help='Embed with the moving averages of a checkpoint\'s weights (folder input).')
    tf_setup.add_inference_arguments(parser)
    return parser.parse_args(argv)


def console_main():
    """The `facenet-evaluate-identification` command (also `python -m facenet_tf.evaluate_identification`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
