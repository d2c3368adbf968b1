"""Wall time of validate_on_lfw.py on the full LFW View 2 protocol (6,000 pairs, 7,701 images).

    python benchmarks/bench_validate.py [--cache /tmp/facenet_bench] [--model MODEL] [--precision bf16]

Needs ../shared (LFW deep-funneled images + protocol files + the reference weight recipe). The images
named in pairs.txt are aligned once with src/align/align_dataset_mtcnn.py (--image_size 160
--margin 32) into the cache folder (outside git); without --model a frozen InceptionResnetV1 with the
reference weights is written there too. The classic tool embeds 12,000 images at 65 img/s here,
i.e. about 185 s of forward passes alone; the target is under 0.6 of that.
"""
import argparse
import importlib.util
import os
import re
import subprocess
import sys
import time

from _paths import ROOT, SHARED
from facenet_tf.pairs import pair_images

CLASSIC_FORWARD_SECONDS = 12000 / 65.0


def align(cache, pairs_file):
    """Aligned 160px crops of the pairs' images in <cache>/lfw_aligned_160 (done once)."""
    raw = os.path.join(cache, 'lfw_raw_links')
    aligned = os.path.join(cache, 'lfw_aligned_160')
    images = pair_images(pairs_file)
    missing = [(n, i) for n, i in images
               if not os.path.exists(os.path.join(aligned, n, '%s_%04d.png' % (n, i)))]
    if not missing:
        return aligned, len(images)
    for name, i in images:
        os.makedirs(os.path.join(raw, name), exist_ok=True)
        link = os.path.join(raw, name, '%s_%04d.jpg' % (name, i))
        if not os.path.lexists(link):
            os.symlink(os.path.join(SHARED, 'data', 'lfw_deepfunneled', name, os.path.basename(link)), link)
    print('Aligning %d images into %s (once)' % (len(missing), aligned))
    start = time.time()
    subprocess.run([sys.executable, os.path.join(ROOT, 'src', 'align', 'align_dataset_mtcnn.py'), raw, aligned,
                    '--image_size', '160', '--margin', '32'], check=True)
    print('Aligned in %.0f s' % (time.time() - start))
    return aligned, len(images)


def reference_model(cache):
    """<cache>/refweights_seed1.pb (written once): the published-format InceptionResnetV1 (512-D)
    with every variable set by the reference recipe ref_value(name, shape, 1) of
    ../shared/reference/refweights.py, frozen with phase_train False."""
    path = os.path.join(cache, 'refweights_seed1.pb')
    if os.path.exists(path):
        return path
    from facenet_tf import keras_import, model_freeze, tf_setup
    from facenet_tf.models import inception_resnet_v1
    tf1 = tf_setup.configure().compat.v1
    spec = importlib.util.spec_from_file_location('refweights', os.path.join(SHARED, 'reference', 'refweights.py'))
    refweights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refweights)
    with tf1.Graph().as_default():
        keras_import.build_classic_graph(inception_resnet_v1, 512, 160, keep_probability=1.0)
        with tf1.Session() as sess:
            keras_import.load_weights(sess, {
                v.op.name: refweights.ref_value(v.op.name, v.shape.as_list(), 1, v.dtype.base_dtype.name)
                for v in tf1.global_variables()})
            model_freeze.write_graph_def(model_freeze.freeze_session(sess), path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cache', default='/tmp/facenet_bench', help='Folder for aligned crops and the model.')
    parser.add_argument('--model', default='', help='Model to time (default: reference-weights .pb).')
    parser.add_argument('--pairs', default=os.path.join(SHARED, 'data', 'lfw_protocol', 'pairs.txt'))
    parser.add_argument('--lfw_batch_size', type=int, default=100)
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'bf16'))
    parser.add_argument('--use_flipped_images', action='store_true')
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(SHARED, 'data', 'lfw_deepfunneled')):
        sys.exit('bench_validate.py: ../shared (LFW images) is not present beside the project')
    os.makedirs(args.cache, exist_ok=True)
    aligned, nrof_images = align(args.cache, args.pairs)
    model = args.model or reference_model(args.cache)
    cmd = [sys.executable, os.path.join(ROOT, 'src', 'validate_on_lfw.py'), aligned, model,
           '--lfw_pairs', args.pairs, '--lfw_batch_size', str(args.lfw_batch_size), '--precision', args.precision]
    if args.use_flipped_images:
        cmd.append('--use_flipped_images')
    print(' '.join(cmd))
    sys.stdout.flush()
    start = time.time()
    proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    wall = time.time() - start
    sys.stdout.write(proc.stdout)
    m = re.search(r'^Embedded (\d+) images$', proc.stdout, re.M)
    embedded = int(m.group(1)) if m else nrof_images
    classic = CLASSIC_FORWARD_SECONDS * (2 if args.use_flipped_images else 1)
    print('validate_on_lfw.py: %d images embedded (%d named by the pairs), wall %.1f s (%.1f img/s end to '
          'end); classic forward passes alone %.0f s; ratio %.2f (target < 0.60)'
          % (embedded, nrof_images, wall, embedded / wall, classic, wall / classic))


if __name__ == '__main__':
    main()
