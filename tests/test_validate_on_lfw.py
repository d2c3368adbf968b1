"""validate_on_lfw.py end to end on real LFW images aligned by the project's MTCNN script, with a
reference-weights InceptionResnetV1 (60 pairs of pairs.txt: 3 same + 3 different from each fold)."""
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import lfw
import lfw_refmodel
from facenet_tf import validate as validate_on_lfw
from facenet_tf.align import align_dataset_mtcnn
from facenet_tf import embedding, evaluation, model_io
from facenet_tf.cli import run
from facenet_tf.verification_sets import read_bin, write_bin

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'src', 'validate_on_lfw.py')
LINES = [r'Accuracy: (\d\.\d{5})\+-(\d\.\d{5})',
         r'Validation rate: (\d\.\d{5})\+-(\d\.\d{5}) @ FAR=(\d\.\d{5})',
         r'Area Under Curve \(AUC\): (\d\.\d{3})',
         r'Equal Error Rate \(EER\): (\d\.\d{3})']


def _subset_pairs(protocol_dir, per_kind=3):
    with open(os.path.join(protocol_dir, 'pairs.txt')) as f:
        pairs = [line.split() for line in f.read().splitlines()[1:] if line.strip()]
    chosen = []
    for k in range(10):
        block = pairs[600 * k:600 * (k + 1)]
        chosen += block[:per_kind] + block[300:300 + per_kind]
    return chosen


def _images_of(pairs):
    names = set()
    for p in pairs:
        sides = [(p[0], p[1]), (p[0], p[2])] if len(p) == 3 else [(p[0], p[1]), (p[2], p[3])]
        names |= {(n, int(i)) for n, i in sides}
    return sorted(names)


@pytest.fixture(scope='module')
def lfw_subset(data_dir, tmp_path_factory):
    """(aligned folder, pairs file, pairs, distinct images named by the pairs)."""
    base = tmp_path_factory.mktemp('lfw')
    pairs = _subset_pairs(os.path.join(data_dir, 'lfw_protocol'))
    images = _images_of(pairs)
    raw = base / 'raw'
    for name, i in images:
        (raw / name).mkdir(parents=True, exist_ok=True)
        src = os.path.join(data_dir, 'lfw_deepfunneled', name, '%s_%04d.jpg' % (name, i))
        shutil.copy(src, str(raw / name))
    aligned = base / 'aligned'
    with contextlib.redirect_stdout(io.StringIO()):
        assert align_dataset_mtcnn.main(align_dataset_mtcnn.parse_arguments(
            [str(raw), str(aligned), '--image_size', '160', '--margin', '32'])) == 0
    pairs_file = base / 'pairs.txt'
    pairs_file.write_text('10\t3\n' + ''.join('\t'.join(p) + '\n' for p in pairs))
    return str(aligned), str(pairs_file), pairs, images


def _parse(out):
    values = []
    for pattern in LINES:
        m = re.search('^' + pattern + '$', out, re.M)
        assert m is not None, 'missing line %r in:\n%s' % (pattern, out)
        values.append(tuple(float(x) for x in m.groups()))
    return values


def _run_in_process(capsys, argv):
    code = run(validate_on_lfw.main, validate_on_lfw.parse_arguments(argv), prog='validate_on_lfw.py')
    captured = capsys.readouterr()
    return code, captured.out, captured.err


E2E_FLAGS = ['--use_fixed_image_standardization', '--use_flipped_images', '--distance_metric', '1',
             '--subtract_mean']


@pytest.fixture(scope='module')
def cli_result(lfw_subset, ref_pb, tmp_path_factory):
    """The script run as users run it, with most flags and a batch size that divides nothing."""
    aligned, pairs_file, _, _ = lfw_subset
    roc = str(tmp_path_factory.mktemp('roc') / 'roc.csv')
    proc = subprocess.run([sys.executable, SCRIPT, aligned, ref_pb, '--lfw_pairs', pairs_file,
                           '--lfw_batch_size', '37', '--roc_output', roc] + E2E_FLAGS,
                          capture_output=True, text=True)
    return proc, roc


def test_cli_end_to_end(lfw_subset, ref_pb, cli_result):
    aligned, pairs_file, pairs, images = lfw_subset
    proc, roc = cli_result
    assert len(images) == 96 and len(pairs) == 60
    assert proc.returncode == 0, proc.stderr
    assert 'Running forward pass on 96 distinct images' in proc.stdout
    assert 'Embedded 96 images' in proc.stdout
    assert re.search(r'Embedding: 192 img in ', proc.stderr)
    printed = _parse(proc.stdout)

    # The same numbers from embeddings computed independently: numpy preprocessing fed to the model.
    paths, issame = lfw.get_paths(aligned, lfw.read_pairs(pairs_file))
    distinct = sorted(set(paths))
    with tf1.Graph().as_default(), tf1.Session() as sess:
        model_io.load_model(ref_pb)
        g = sess.graph
        batch = np.stack([(np.asarray(Image.open(p).convert('RGB'), np.float32) - 127.5) / 128.0
                          for p in distinct])
        emb = []
        for images_in in (batch, batch[:, :, ::-1, :]):
            emb.append(sess.run('embeddings:0', {'input:0': images_in, 'phase_train:0': False}))
    table = dict(zip(distinct, np.concatenate(emb, axis=1).astype(np.float64)))
    embeddings = np.stack([table[p] for p in paths])
    tpr, fpr, accuracy, val, val_std, far = evaluation.evaluate(embeddings, issame, 10, 1, True)
    auc, eer = evaluation.auc_eer(fpr, tpr)
    assert printed[0] == pytest.approx((round(np.mean(accuracy), 5), round(np.std(accuracy), 5)), abs=1e-5)
    assert printed[1] == pytest.approx((round(val, 5), round(val_std, 5), round(far, 5)), abs=1e-5)
    assert printed[2][0] == pytest.approx(auc, abs=6e-4)
    assert printed[3][0] == pytest.approx(eer, abs=6e-4)

    rows = np.loadtxt(roc, delimiter=',', skiprows=1)
    assert rows.shape == (400, 3)
    np.testing.assert_allclose(rows[:, 1], fpr, atol=1e-6)
    np.testing.assert_allclose(rows[:, 2], tpr, atol=1e-6)
    with Image.open(roc[:-4] + '.png') as img:
        assert img.size[0] >= 400


def test_bin_set_gives_the_same_numbers(lfw_subset, ref_pb, cli_result, tmp_path, capsys):
    aligned, pairs_file, _, _ = lfw_subset
    paths, issame = lfw.get_paths(aligned, lfw.read_pairs(pairs_file))
    images = []
    for p in paths:
        with open(p, 'rb') as f:
            images.append(f.read())
    bin_path = str(tmp_path / 'subset.bin')
    write_bin(bin_path, images, issame)
    assert read_bin(bin_path)[1].tolist() == issame
    capsys.readouterr()
    code, out_bin, err = _run_in_process(capsys, [bin_path, ref_pb, '--lfw_batch_size', '64'] + E2E_FLAGS)
    assert code == 0, err
    assert 'Running forward pass on 96 distinct images' in out_bin
    assert _parse(out_bin) == _parse(cli_result[0].stdout)


def test_view1_style_pairs_file_with_a_missing_image(lfw_subset, ref_pb, tmp_path, capsys):
    """A header with one number: N same then N different pairs, split into balanced folds; a pair
    naming a missing image is skipped and counted."""
    aligned, _, pairs, _ = lfw_subset
    same = [p for p in pairs if len(p) == 3] + [['Nobody_Here', '1', '2']]
    diff = [p for p in pairs if len(p) == 4]
    view1 = tmp_path / 'pairsDev.txt'
    view1.write_text('%d\n' % len(diff) + ''.join('\t'.join(p) + '\n' for p in same + diff))
    code, out, err = _run_in_process(capsys, [aligned, ref_pb, '--lfw_pairs', str(view1),
                                              '--lfw_nrof_folds', '5', '--lfw_batch_size', '200'])
    assert code == 0, err
    assert 'Skipped 1 image pairs' in err and 'Skipped' not in out
    assert len(_parse(out)) == 4


def test_user_errors(lfw_subset, ref_pb, tmp_path, capsys):
    aligned, pairs_file, _, _ = lfw_subset
    code, _, err = _run_in_process(capsys, [aligned, ref_pb, '--lfw_pairs', str(tmp_path / 'pairs.txt')])
    assert code == 2
    assert err.startswith('validate_on_lfw.py: error: pairs file not found') and 'pairsDevTest.txt' in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _run_in_process(capsys, [aligned, str(tmp_path / 'missing.pb'), '--lfw_pairs', pairs_file])
    assert code == 2 and 'model not found' in err
    empty = tmp_path / 'empty'
    empty.mkdir()
    code, _, err = _run_in_process(capsys, [str(empty), ref_pb, '--lfw_pairs', pairs_file])
    assert code == 2 and 'align_dataset_mtcnn.py' in err and '--margin 32' in err
    not_bin = tmp_path / 'x.bin'
    not_bin.write_bytes(b'not a pickle')
    code, _, err = _run_in_process(capsys, [str(not_bin), ref_pb])
    assert code == 2 and 'is not a verification set' in err
    proc = subprocess.run([sys.executable, SCRIPT, aligned, ref_pb, '--lfw_pairs', pairs_file,
                           '--lfw_batch_size', '0'], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        'validate_on_lfw.py: error: argument --lfw_batch_size: must be at least 1, got 0'


def test_pipeline_embeddings_match_classic(reference_dir, ref_pb):
    crops = os.path.join(reference_dir, 'embeddings', 'crops')
    with open(os.path.join(reference_dir, 'embeddings', 'seed1_files.txt')) as f:
        files = [os.path.join(crops, line.strip()) for line in f if line.strip()]
    with tf1.Graph().as_default(), tf1.Session() as sess:
        embedding.load_for_inference(ref_pb, sess)
        for name, fixed, flipped in [('pipe_standardization', False, False), ('pipe_fixed', True, False),
                                     ('pipe_fixed_flip', True, True), ('pipe_standardization_flip', False, True)]:
            emb = embedding.embed(sess, files, 160, 3, fixed, flipped)
            ref = lfw_refmodel.reference_embeddings(reference_dir, name)
            assert emb.shape == ref.shape
            np.testing.assert_allclose(emb, ref, rtol=0, atol=1e-6, err_msg=name)


def test_checkpoint_folder_matches_classic(reference_dir, ref_checkpoint):
    model_dir = ref_checkpoint
    crops = os.path.join(reference_dir, 'embeddings', 'crops')
    with open(os.path.join(reference_dir, 'embeddings', 'seed1_files.txt')) as f:
        files = [os.path.join(crops, line.strip()) for line in f if line.strip()]
    with tf1.Graph().as_default(), tf1.Session() as sess:
        embedding.load_for_inference(model_dir, sess)
        emb = embedding.embed(sess, files, 160, 8, True, True)
    np.testing.assert_allclose(emb, lfw_refmodel.reference_embeddings(reference_dir, 'pipe_fixed_flip'),
                               rtol=0, atol=1e-6)
