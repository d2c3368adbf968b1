"""Group the faces of a pile of photos by person.

Every face of every photo under INPUT_DIR is detected (MTCNN), cropped as the aligner does (box
grown by margin/2 per side, resized to image_size) and written under OUTPUT_DIR/crops/; with
--aligned the images are taken as aligned crops as they are. The crops are embedded in batches and
clustered on their embeddings (scikit-learn). OUTPUT_DIR gets one folder per cluster
(cluster_000 the largest) and noise/ with links (or --copy copies) of the crops, and clusters.csv
(cluster, crop, source photo, face index, main face of its photo, box, score).

Methods (N faces):
  dbscan (default): a face with --min_samples faces within --eps (L2 distance between embeddings,
    the scale compare.py prints) is a core; cores within eps join a cluster; the rest is noise.
    Neighbours found by brute force on the embeddings: O(N^2) distances, computed in chunks;
    memory for the neighbour lists only.
  agglomerative: average linkage, merged while groups are closer than --eps on average (or into
    --n_clusters groups); groups smaller than --min_samples are noise. O(N^2) memory (10,000 faces:
    about 400 MB), O(N^2 log N) time.
Thousands of faces cluster in seconds; the embedding pass dominates (about 25 faces/s on 2 cores).

With --evaluate, INPUT_DIR holds one sub-folder per person: the main face of each photo (the one the
aligner would choose) is scored against its folder: pairwise precision/recall/F1 and NMI.

Usage: python src/cluster.py model.pb photos/ clusters/ [--method dbscan|agglomerative] [--eps E]
"""
import os
import sys

import numpy as np

from facenet_tf.align import aligner
from facenet_tf import annotate, clustering, recognition, tf_setup
from facenet_tf.cli import add_model_argument, doc_parser, positive_float, positive_int, command
from facenet_tf.errors import FaceNetError


def _note(text):
    sys.stderr.write(text + '\n')


def embed_faces(args, input_dir, output_dir):
    """(faces, embeddings) of the input: detected and cropped, or the aligned crops as they are.
    The output folder is made only once the model has loaded."""
    tf_setup.configure()
    from facenet_tf import embedding, runtimes
    with runtimes.open_model(args.model, args, image_size=args.image_size) as sess:  # .pb, folder, .tflite, .onnx
        os.makedirs(output_dir, exist_ok=True)
        if clustering.unfinished_by(output_dir) is not None:
            clustering.take_over(output_dir)
        clustering.begin_output(output_dir)
        if args.aligned:
            faces = clustering.readable(clustering.aligned_faces(input_dir), _note)
            emb = embedding.embed(sess, [f.crop for f in faces], image_size=args.image_size,
                                  batch_size=args.batch_size,
                                  fixed_standardization=args.use_fixed_image_standardization)
            return faces, emb
        from facenet_tf.align.detect_face import MTCNN
        from facenet_tf.faces import FacePipeline
        with MTCNN(gpu_memory_fraction=args.gpu_memory_fraction, allow_growth=args.allow_growth) as detector:
            pipeline = FacePipeline(sess, detector, args.image_size, args.margin,
                                    args.use_fixed_image_standardization, args.max_detect_side, args.batch_size)
            return clustering.detect_and_embed(pipeline, input_dir, os.path.join(output_dir, clustering.CROPS_FOLDER),
                                               _note)


def _check_output(input_dir, output_dir):
    """Refuse, before any work, an output folder that is or lies inside the input folder (its crops
    would be read as photos by the next run) or that exists with anything in it (never replaced),
    unless a killed cluster.py run left it unfinished (the rerun takes it over)."""
    real_in, real_out = os.path.realpath(input_dir), os.path.realpath(output_dir)
    if real_out == real_in or real_out.startswith(real_in.rstrip(os.sep) + os.sep):
        raise FaceNetError('%s: the output folder must not be or lie inside the input folder %s'
                           % (output_dir, input_dir))
    writer = clustering.unfinished_by(output_dir)
    if writer is not None and annotate.process_running(writer) and writer != os.getpid():
        raise FaceNetError('%s is being written by another cluster.py run (process %d)' % (output_dir, writer))
    if writer is None and os.path.lexists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise FaceNetError('%s already exists and is not an empty folder (give a new output folder)' % output_dir)


def _remove_empty(folders):
    """Remove the folders of `folders` (made by this run) that are still empty, in order."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def main(args):
    input_dir = os.path.expanduser(args.input_dir)
    output_dir = os.path.expanduser(args.output_dir)
    if not os.path.isdir(input_dir):
        raise FaceNetError('input folder not found: %s' % args.input_dir)
    _check_output(input_dir, output_dir)
    nrof_photos = len(clustering.image_files(input_dir, _note))
    if not nrof_photos:
        raise FaceNetError('no image files under %s' % args.input_dir)
    made = [os.path.join(output_dir, clustering.CROPS_FOLDER)] + ([] if os.path.isdir(output_dir) else [output_dir])
    try:
        faces, emb = embed_faces(args, input_dir, output_dir)
        if not faces:
            raise FaceNetError('no face found under %s (%d image files)' % (args.input_dir, nrof_photos))
    except BaseException:
        crops = os.path.join(output_dir, clustering.CROPS_FOLDER)
        if not (os.path.isdir(crops) and os.listdir(crops)):   # nothing written: no mark, no folder left
            marker = os.path.join(output_dir, clustering.UNFINISHED)
            if os.path.isfile(marker):
                os.remove(marker)
            _remove_empty(made)
        raise
    eps = args.eps if args.eps is not None else clustering.DEFAULT_EPS[args.method]
    labels = clustering.cluster(emb, args.method, eps, args.min_samples, args.n_clusters)
    clustering.write_clusters(output_dir, faces, labels, args.copy)
    nrof_clusters = int(labels.max() + 1) if len(labels) else 0
    sizes = np.bincount(labels[labels >= 0]) if nrof_clusters else np.zeros(0, np.int64)
    print('%d faces: %d clusters (largest %s), %d noise faces' % (
        len(faces), nrof_clusters, ', '.join(str(s) for s in sizes[:5]) or '-', int(np.sum(labels < 0))))
    print('wrote %s' % os.path.join(output_dir, clustering.CSV_NAME))
    if args.evaluate:
        s = clustering.scores(clustering.identities(faces, input_dir), labels)
        print('evaluation on %d faces of %d people: pairwise precision %.4f, recall %.4f, F1 %.4f, NMI %.4f'
              % (s['faces'], s['people'], s['precision'], s['recall'], s['f1'], s['nmi']))


def parse_arguments(argv):
    parser = doc_parser(__doc__)
    add_model_argument(parser)
    parser.add_argument('input_dir', type=str, help='Folder of photos (searched recursively).')
    parser.add_argument('output_dir', type=str, help='New (or empty) folder for the clusters.')
    parser.add_argument('--method', choices=['dbscan', 'agglomerative'], default='dbscan',
                        help='Clustering method (see the complexity notes below).')
    parser.add_argument('--eps', type=positive_float, default=None,
                        help='dbscan: neighbourhood radius (default 0.8); agglomerative: largest mean '
                             'distance of two groups merged (default 0.9); L2 between embeddings. The '
                             'defaults suit the published model (best on LFW, docs/cluster.md).')
    parser.add_argument('--min_samples', type=positive_int, default=3,
                        help='dbscan: faces (itself included) within eps that make a core face; '
                             'agglomerative: smallest group kept as a cluster.')
    parser.add_argument('--n_clusters', type=positive_int, default=None,
                        help='agglomerative only: cut the tree into this many groups instead of at --eps.')
    parser.add_argument('--aligned', action='store_true',
                        help='The images are aligned face crops: embed them as they are, no detection.')
    parser.add_argument('--copy', action='store_true', help='Copy the crops into the cluster folders '
                                                             'instead of linking them.')
    parser.add_argument('--evaluate', action='store_true',
                        help='INPUT_DIR holds one sub-folder per person: score the clusters against them.')
    aligner.add_max_detect_side_argument(parser)
    recognition.add_face_arguments(parser)
    args = parser.parse_args(argv)
    if args.n_clusters and args.method != 'agglomerative':
        parser.error('--n_clusters needs --method agglomerative')
    return args



def console_main():
    """The `facenet-cluster` command (also `python -m facenet_tf.cluster`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
