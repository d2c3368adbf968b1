"""export_embeddings.py: the embeddings file, shards merged against one run (bit for bit), resume
after a kill without recomputing complete chunks, bad images, and the file as input of
classifier.py and validate_on_lfw.py. A small random network stands in for a trained model."""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from facenet_tf import export_embeddings as script
from facenet_tf import embedding_export, embeddings_file, model_freeze, tf_setup
from facenet_tf.errors import FaceNetError

tf = tf_setup.configure()
tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'src', 'export_embeddings.py')
SIZE = 64
NAMES = ['Anna_%d' % i for i in range(5)] + ['Bruno', 'Chen_Li', 'Zoë']


@pytest.fixture(scope='module')
def model_pb(tmp_path_factory):
    """A frozen small_cnn (random weights, 32-D L2-normalised embeddings) with the classic tensors."""
    from facenet_tf.models import small_cnn
    pb = str(tmp_path_factory.mktemp('model') / 'small-cnn.pb')
    with tf1.Graph().as_default():
        tf1.set_random_seed(0)
        images = tf1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name='input')
        phase_train = tf1.placeholder(tf.bool, name='phase_train')
        prelogits, _ = small_cnn.inference(images, 1.0, phase_train=phase_train, bottleneck_layer_size=32)
        tf.nn.l2_normalize(prelogits, 1, 1e-10, name='embeddings')
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            model_freeze.write_graph_def(model_freeze.freeze_session(sess), pb)
    return pb


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """8 classes of 6-12 generated images (smooth colour fields of several sizes, so crops and pads
    both happen), and one file in class 'Bruno' that is not an image."""
    root = tmp_path_factory.mktemp('aligned')
    rng = np.random.RandomState(1)
    for k, name in enumerate(NAMES):
        (root / name).mkdir()
        for j in range(6 + (k * 5) % 7):
            side = int(rng.choice([56, 64, 72]))
            low = rng.randint(0, 256, (4, 4, 3)).astype(np.uint8)
            Image.fromarray(low).resize((side, side), Image.BICUBIC).save(str(root / name / ('%s_%04d.png' % (name, j + 1))))
    (root / 'Bruno' / 'Bruno_0099.png').write_text('not an image\n')
    return str(root)


def _export(model, data, out, *extra):
    return script.main(script.parse_arguments([model, data, out, '--image_size', str(SIZE), '--batch_size', '8',
                                               '--chunk_size', '16'] + list(extra)))


@pytest.fixture(scope='module')
def one_run(model_pb, dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('one') / 'emb.h5')
    assert _export(model_pb, dataset, out) == 0
    return out


def test_file_contents(one_run, dataset, model_pb, capsys):
    data = embeddings_file.read(one_run)
    images = sorted(glob.glob(os.path.join(dataset, '*', '*.png')))
    assert data.class_names == sorted(NAMES)
    assert data.paths == [os.path.relpath(p, dataset) for p in images if 'Bruno_0099' not in p]
    assert [data.class_names[label] for label in data.labels] == [p.split('/')[0] for p in data.paths]
    assert data.embeddings.dtype == np.float32 and data.embeddings.shape == (len(data.paths), 32)
    np.testing.assert_allclose(np.linalg.norm(data.embeddings, axis=1), 1.0, atol=1e-5)
    assert data.attrs == {'model': 'small-cnn', 'image_size': SIZE, 'use_fixed_image_standardization': False,
                          'use_flipped_images': False, 'precision': 'fp32', 'batch_size': 8,
                          'data_dir': dataset, 'shard': ''}
    assert not os.path.exists(one_run + '.partial')
    # the same rows as embedding the images directly (batches of one, no padding)
    from facenet_tf.embedding import embed, load_for_inference
    with tf1.Graph().as_default(), tf1.Session() as sess:
        load_for_inference(model_pb, sess)
        direct = embed(sess, [os.path.join(dataset, p) for p in data.paths[:5]], SIZE, 1, stream=open(os.devnull, 'w'))
    np.testing.assert_allclose(direct, data.embeddings[:5], atol=1e-5)


def test_shards_merge_into_the_file_of_one_run(one_run, model_pb, dataset, tmp_path, capsys):
    out = str(tmp_path / 'emb.h5')
    for i in range(3):
        assert _export(model_pb, dataset, out, '--shard', '%d/3' % i) == 0
    printed = capsys.readouterr().err   # the notes
    assert 'unreadable: %s' % os.path.join(dataset, 'Bruno', 'Bruno_0099.png') in printed
    assert printed.count('unreadable: /') == 1
    files = sorted(glob.glob(str(tmp_path / 'emb.shard_*_of_3.h5')))
    assert [os.path.basename(f) for f in files] == ['emb.shard_%d_of_3.h5' % i for i in range(3)]
    assert sum(len(embeddings_file.read(f).paths) for f in files) == len(embeddings_file.read(one_run).paths)
    merged = str(tmp_path / 'merged.h5')
    assert script.main(script.parse_arguments(['--merge', merged] + files[::-1])) == 0
    a, b = embeddings_file.read(one_run), embeddings_file.read(merged)
    assert a.paths == b.paths and a.class_names == b.class_names and a.attrs == b.attrs
    assert np.array_equal(a.labels, b.labels)
    assert a.embeddings.tobytes() == b.embeddings.tobytes()  # bit for bit
    with pytest.raises(FaceNetError, match='expected the files of shards 0..COUNT-1'):
        embeddings_file.merge(files[:2], str(tmp_path / 'incomplete.h5'))


def test_killed_run_resumes_after_its_complete_chunks(one_run, model_pb, dataset, tmp_path, capsys):
    out = str(tmp_path / 'emb.h5')
    proc = subprocess.Popen([sys.executable, SCRIPT, model_pb, dataset, out, '--image_size', str(SIZE),
                             '--batch_size', '8', '--chunk_size', '8'], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out + '.partial'
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not glob.glob(os.path.join(parts, 'chunk_*.npz')):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    chunks = sorted(glob.glob(os.path.join(parts, 'chunk_*.npz')))
    total = len(embeddings_file.read(one_run).paths) + 1
    labels = [p.split('/')[0] for p in sorted(os.path.relpath(f, dataset) for f in glob.glob(dataset + '/*/*'))]
    plan = embedding_export.plan_chunks(labels, 8, 8)
    assert proc.returncode == -signal.SIGKILL and not os.path.exists(out)
    assert 1 <= len(chunks) < len(plan), 'the run should have been killed part-way'
    assert script.main(script.parse_arguments([model_pb, dataset, out, '--image_size', str(SIZE),
                                               '--batch_size', '8', '--chunk_size', '8'])) == 0
    printed = capsys.readouterr()
    done = sum(sum(c) for c in plan[:len(chunks)])
    assert 'Resumed at chunk %d of %d (%d of %d images embedded by an earlier run)' % (
        len(chunks), len(plan), done, total) in printed.err
    assert 'computed now: %d, by an earlier run: %d' % (total - done, done) in printed.out
    a, b = embeddings_file.read(one_run), embeddings_file.read(out)
    assert a.paths == b.paths and a.embeddings.tobytes() == b.embeddings.tobytes()
    assert not os.path.exists(parts) and not glob.glob(str(tmp_path / '.*'))


def test_errors_are_one_line(model_pb, dataset, tmp_path, capsys):
    from facenet_tf.cli import run
    for argv, message in [([model_pb, str(tmp_path / 'none'), str(tmp_path / 'e.h5')], 'dataset folder not found'),
                          ([model_pb, dataset, str(tmp_path / 'no' / 'e.h5')], 'folder of the output file not found'),
                          (['--merge', str(tmp_path / 'm.h5'), dataset], 'embeddings file not found'),
                          ([str(tmp_path / 'none.pb'), dataset, str(tmp_path / 'e.h5')], 'model not found'),
                          ([model_pb, dataset, str(tmp_path / 'e.h5'), '--shard_count', '2'],
                           '--shard_count needs an index')]:
        assert run(script.main, script.parse_arguments(argv), prog='export_embeddings.py') == 2
        err = capsys.readouterr().err
        assert err.startswith('export_embeddings.py: error: %s' % message) and err.count('\n') == 1


@pytest.fixture(scope='module')
def clean_copy(dataset, one_run, tmp_path_factory):
    """The dataset without its unreadable file (links): the images the embeddings file holds."""
    root = tmp_path_factory.mktemp('clean')
    for path in glob.glob(os.path.join(dataset, '*', '*.png')):
        if 'Bruno_0099' not in path:
            os.makedirs(str(root / os.path.basename(os.path.dirname(path))), exist_ok=True)
            os.symlink(path, str(root / os.path.relpath(path, dataset)))
    return str(root), one_run


def _result_lines(text):
    return [line for line in text.splitlines() if line[:4].strip().isdigit() or line.startswith(
        ('Accuracy', 'Validation rate', 'Area Under', 'Equal Error', 'Number of'))]


def test_classifier_on_the_embeddings_file_gives_the_folder_results(clean_copy, model_pb, tmp_path, capsys):
    from facenet_tf import classifier
    folder, emb = clean_copy
    flags = ['--use_split_dataset', '--min_nrof_images_per_class', '6', '--nrof_train_images_per_class', '4',
             '--image_size', str(SIZE)]
    outputs = []
    for source in (folder, emb):
        pkl = str(tmp_path / ('%s.pkl' % os.path.basename(source)))
        for mode in ('TRAIN', 'CLASSIFY'):
            classifier.main(classifier.parse_arguments([mode, source, model_pb, pkl] + flags))
        printed = capsys.readouterr().out
        outputs.append(_result_lines(printed))
    assert 'Embeddings read from %s (model small-cnn)' % emb in printed
    assert 'Loading feature extraction model' not in printed
    assert len(outputs[0]) > 20 and outputs[0] == outputs[1]


def test_validate_on_the_embeddings_file_gives_the_folder_results(clean_copy, model_pb, tmp_path, capsys):
    from facenet_tf import validate as validate_on_lfw
    folder, emb = clean_copy
    names = sorted(os.listdir(folder))
    pairs = ['%s\t%d\t%d' % (n, i, i + 1) for n in names for i in (1, 3)]
    pairs += ['%s\t%d\t%s\t%d' % (a, 1 + k % 5, b, 2) for k, (a, b) in enumerate(zip(names, names[1:] + names[:1]))]
    pairs += ['%s\t%d\t%s\t%d' % (a, 4, b, 5) for a, b in zip(names, names[2:] + names[:2])]
    pairs_file = tmp_path / 'pairs.txt'
    pairs_file.write_text('%d\n' % len(pairs) + '\n'.join(pairs) + '\n')
    outputs = []
    for source in (folder, emb):
        validate_on_lfw.main(validate_on_lfw.parse_arguments(
            [source, model_pb, '--lfw_pairs', str(pairs_file), '--lfw_nrof_folds', '2', '--image_size', str(SIZE)]))
        printed = capsys.readouterr().out
        outputs.append(_result_lines(printed))
    assert 'distinct images from %s (model small-cnn; %s: %d pairs)' % (emb, pairs_file, len(pairs)) in printed
    assert 'Running forward pass' not in printed
    assert len(outputs[0]) == 4 and outputs[0] == outputs[1]
