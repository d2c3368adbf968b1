"""classifier.py on real faces.

With the reference-weights InceptionResnetV1, the embeddings stored at TRAIN are checked against the
classic pipeline's embeddings of the reference crops, and CLASSIFY's lines against the pickled SVM.
Those random-weight embeddings all lie within ~0.1 of each other, which a linear SVM with C=1 cannot
separate, so recognition itself (accuracy, unknown people) is checked on ORL faces with a small
frozen "pixel" model (8x8 average pooling, L2-normalised) that follows the same tensor contract.
"""
import os
import pickle
import re

import numpy as np
import pytest
import tensorflow as tf
from sklearn.svm import SVC

from facenet_tf import classifier
import lfw_refmodel
from facenet_tf import classify
from facenet_tf.cli import run

tf1 = tf.compat.v1
LINE = re.compile(r'^ {0,3}\d+  (.+): (\d\.\d{3})(?:  \(distance (\d+\.\d{3})\))?$')


@pytest.fixture(scope='module')
def ref_model(ref_pb):
    return ref_pb


@pytest.fixture(scope='module')
def pixel_model(tmp_path_factory):
    """A frozen model whose embedding is the central 112x96 of the image (where an ORL face sits
    once padded to 160), 8x8-average-pooled, centred and L2-normalised (504-D)."""
    path = str(tmp_path_factory.mktemp('pixel') / 'pixel.pb')
    with tf1.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [None, 160, 160, 3], name='input')
        tf1.placeholder_with_default(False, [], name='phase_train')
        pooled = tf.reshape(tf.nn.avg_pool2d(images[:, 24:136, 32:128, :], 8, 8, 'VALID'), [-1, 14 * 12 * 3])
        centred = pooled - tf.reduce_mean(pooled, axis=1, keepdims=True)
        tf.nn.l2_normalize(centred, 1, 1e-10, name='embeddings')
        with open(path, 'wb') as f:
            f.write(graph.as_graph_def().SerializeToString())
    return path


@pytest.fixture(scope='module')
def orl(tmp_path_factory, data_dir):
    """ORL people s1..s12: train/ holds images 1-6 of s1..s8, test/ images 7-10 of s1..s8;
    strangers/ holds 4 images each of s9..s12, who are not in train/."""
    src = os.path.join(data_dir, 'orl_faces')
    root = tmp_path_factory.mktemp('orl')
    for k in range(1, 13):
        for part, numbers in (('train', range(1, 7)), ('test', range(7, 11))):
            if k > 8 and part == 'train':
                continue
            folder = root / (part if k <= 8 else 'strangers') / ('s%d' % k)
            folder.mkdir(parents=True, exist_ok=True)
            for n in numbers:
                os.symlink(os.path.join(src, 's%d' % k, '%d.png' % n), str(folder / ('%d.png' % n)))
    return root


def _run(capsys, argv):
    code = run(classifier.main, classifier.parse_arguments(argv), 'classifier.py')
    out = capsys.readouterr()
    return code, out.out, out.err


def _result_lines(out):
    return [LINE.match(line) for line in out.splitlines() if LINE.match(line)]


@pytest.mark.parametrize('fixed, oracle', [(False, 'pipe_standardization'), (True, 'pipe_fixed')])
def test_train_stores_classic_embeddings_and_classify_prints_svm_results(
        ref_model, reference_dir, tmp_path, capsys, fixed, oracle):
    crops = os.path.join(reference_dir, 'embeddings', 'crops')
    pkl = str(tmp_path / 'cls.pkl')
    extra = ['--use_fixed_image_standardization'] if fixed else []
    code, out, _ = _run(capsys, ['TRAIN', crops, ref_model, pkl, '--batch_size', '5'] + extra)
    assert code == 0
    assert 'Number of classes: 2\nNumber of images: 8\n' in out
    assert 'Saved classifier model to file "%s"' % pkl in out
    with open(pkl, 'rb') as f:
        model, class_names = pickle.load(f)
    assert isinstance(model, SVC) and model.kernel == 'linear' and model.probability
    assert class_names == ['Anthony Hopkins', 'composite']
    expected = lfw_refmodel.reference_embeddings(reference_dir, oracle)
    np.testing.assert_allclose(model.facenet_embeddings_, expected, atol=2e-5)
    np.testing.assert_array_equal(model.facenet_labels_, [0, 0, 1, 1, 1, 1, 1, 1])
    if fixed:
        return
    code, out, _ = _run(capsys, ['CLASSIFY', crops, ref_model, pkl])
    assert code == 0
    lines = _result_lines(out)
    proba = model.predict_proba(expected)
    assert [m.group(1) for m in lines] == [class_names[i] for i in np.argmax(proba, axis=1)]
    np.testing.assert_allclose([float(m.group(2)) for m in lines], proba.max(axis=1), atol=1.5e-3)
    truth = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    assert 'Accuracy: %.3f' % np.mean(np.argmax(proba, axis=1) == truth) in out.splitlines()


def test_recognises_orl_people_and_flags_strangers(pixel_model, orl, tmp_path, capsys):
    pkl = str(tmp_path / 'orl.pkl')
    code, out, _ = _run(capsys, ['TRAIN', str(orl / 'train'), pixel_model, pkl,
                                 '--test_data_dir', str(orl / 'test')])
    assert code == 0
    lines = _result_lines(out)
    assert len(lines) == 32
    accuracy = float(re.search(r'^Accuracy: (\d\.\d{3})$', out, re.M).group(1))
    truth = ['s%d' % k for k in range(1, 9) for _ in range(4)]
    assert accuracy == pytest.approx(np.mean([m.group(1) == t for m, t in zip(lines, truth)]), abs=1e-3)
    assert accuracy >= 0.8

    # the same people's held-out images and four strangers: the strangers become unknown
    mixed = tmp_path / 'mixed'
    mixed.mkdir()
    for name in ('s1', 's2', 's3', 's4'):
        os.symlink(str(orl / 'test' / name), str(mixed / name))
    for name in os.listdir(str(orl / 'strangers')):
        os.symlink(str(orl / 'strangers' / name), str(mixed / name))
    code, out, _ = _run(capsys, ['CLASSIFY', str(mixed), pixel_model, pkl, '--unknown_threshold', '0.5'])
    assert code == 0
    lines = _result_lines(out)
    names = sorted(os.listdir(str(mixed)))
    truth = [n for n in names for _ in range(4)]
    distances = np.array([float(m.group(3)) for m in lines])
    predicted = [m.group(1) for m in lines]
    assert all((p == 'unknown') == (d > 0.5) for p, d in zip(predicted, distances))
    strangers = [p for p, t in zip(predicted, truth) if t in ('s9', 's10', 's11', 's12')]
    known = [p for p, t in zip(predicted, truth) if t in ('s1', 's2', 's3', 's4')]
    assert strangers.count('unknown') >= 12                 # of 16
    assert known.count('unknown') <= 4                      # of 16
    right = [p == t or (p == 'unknown' and t in ('s9', 's10', 's11', 's12'))
             for p, t in zip(predicted, truth)]
    assert 'Accuracy: %.3f' % np.mean(right) in out.splitlines()
    assert 'Unknown: %d of 32 images' % predicted.count('unknown') in out

    # without the threshold every stranger gets the nearest known name
    code, out, _ = _run(capsys, ['CLASSIFY', str(mixed), pixel_model, pkl])
    assert code == 0 and 'unknown' not in out


def test_split_dataset_is_the_classic_split(pixel_model, orl, tmp_path, capsys):
    pkl = str(tmp_path / 'split.pkl')
    data = str(orl / 'train')            # 8 people x 6 images
    args = ['--use_split_dataset', '--min_nrof_images_per_class', '6', '--nrof_train_images_per_class', '4']
    code, out, _ = _run(capsys, ['TRAIN', data, pixel_model, pkl] + args)
    assert code == 0 and 'Number of classes: 8\nNumber of images: 32\n' in out
    code, out, _ = _run(capsys, ['CLASSIFY', data, pixel_model, pkl] + args)
    assert code == 0 and 'Number of classes: 8\nNumber of images: 16\n' in out
    assert len(_result_lines(out)) == 16
    # the training images are those the classic shuffle picks with seed 666
    from facenet_tf.dataset import get_dataset
    np.random.seed(666)
    train_set, test_set = classify.split_dataset(get_dataset(data), 6, 4)
    assert [len(c) for c in train_set] == [4] * 8 and [len(c) for c in test_set] == [2] * 8
    with open(pkl, 'rb') as f:
        model, _ = pickle.load(f)
    with tf1.Graph().as_default(), tf1.Session() as sess:
        from facenet_tf import embedding, model_io
        model_io.load_model(pixel_model)
        paths = [p for c in train_set for p in c.image_paths]
        np.testing.assert_allclose(model.facenet_embeddings_, embedding.embed(sess, paths), atol=1e-6)
    code, out, _ = _run(capsys, ['TRAIN', data, pixel_model, pkl, '--use_split_dataset'])
    assert code == 2                     # nobody has the default 20 images


def test_classic_classifier_file_loads(pixel_model, orl, tmp_path, capsys):
    """A pickle of (SVC, class_names) without our extra attributes classifies; the unknown
    threshold then asks for retraining."""
    data = str(orl / 'test')
    pkl = str(tmp_path / 'ours.pkl')
    assert _run(capsys, ['TRAIN', data, pixel_model, pkl])[0] == 0
    with open(pkl, 'rb') as f:
        model, names = pickle.load(f)
    classic = SVC(kernel='linear', probability=True).set_params(**model.get_params())
    for attr, value in vars(model).items():
        if not attr.startswith('facenet_'):
            setattr(classic, attr, value)
    classic_pkl = str(tmp_path / 'classic.pkl')
    with open(classic_pkl, 'wb') as f:
        pickle.dump((classic, names), f)
    code, out, _ = _run(capsys, ['CLASSIFY', data, pixel_model, classic_pkl])
    assert code == 0 and len(_result_lines(out)) == 32
    code, out, err = _run(capsys, ['CLASSIFY', data, pixel_model, classic_pkl, '--unknown_threshold', '0.5'])
    assert code == 2 and 'train it again' in err and out == ''


def test_bf16_precision_gives_the_same_classifier(pixel_model, orl, tmp_path, capsys):
    data = str(orl / 'test')
    pickles = []
    for precision in ('fp32', 'bf16'):
        pkl = str(tmp_path / ('%s.pkl' % precision))
        assert _run(capsys, ['TRAIN', data, pixel_model, pkl, '--precision', precision])[0] == 0
        with open(pkl, 'rb') as f:
            pickles.append(pickle.load(f)[0])
    np.testing.assert_allclose(pickles[1].facenet_embeddings_, pickles[0].facenet_embeddings_, atol=1e-2)


def test_errors_are_one_line(pixel_model, orl, tmp_path, capsys):
    data = str(orl / 'test')
    empty = tmp_path / 'empty'
    (empty / 'nobody').mkdir(parents=True)
    one = tmp_path / 'one'
    one.mkdir()
    os.symlink(str(orl / 'test' / 's1'), str(one / 's1'))
    (tmp_path / 'junk.pkl').write_bytes(b'not a pickle')
    cases = [
        (['TRAIN', str(tmp_path / 'missing'), pixel_model, str(tmp_path / 'a.pkl')],
         'dataset folder not found'),
        (['TRAIN', data, pixel_model, str(tmp_path / 'a.pkl'), '--test_data_dir', str(tmp_path / 'missing')],
         'dataset folder not found'),
        (['CLASSIFY', data, pixel_model, str(tmp_path / 'missing.pkl')], 'classifier file not found'),
        (['CLASSIFY', data, pixel_model, str(tmp_path / 'junk.pkl')], 'is not a classifier file'),
        (['TRAIN', str(empty), pixel_model, str(tmp_path / 'a.pkl')], 'no images in'),
        (['TRAIN', str(one), pixel_model, str(tmp_path / 'a.pkl')], 'at least two classes'),
        (['TRAIN', data, str(tmp_path / 'nomodel.pb'), str(tmp_path / 'a.pkl')], 'model not found'),
        (['TRAIN', data, pixel_model, str(tmp_path / 'no' / 'a.pkl')],
         'folder of the classifier file not found'),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, argv)
        assert code == 2 and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit) as exit_info:  # a flag value: argparse reports it
        classifier.parse_arguments(['CLASSIFY', data, pixel_model, str(tmp_path / 'a.pkl'),
                                    '--unknown_threshold', '-1'])
    assert exit_info.value.code == 2
    assert 'error: argument --unknown_threshold: must be >= 0, got -1' in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / 'a.pkl'))


def test_nearest_known_in_blocks_equals_one_pass(reference_dir):
    """The gallery is searched in blocks (bounded memory): the same nearest rows and distances as a
    search over all of it at once, on the classic reference embeddings."""
    emb = lfw_refmodel.reference_embeddings(reference_dir, 'pipe_fixed_flip').astype(np.float32)
    known, probes = np.concatenate([emb[:5], emb[:5] * 0.5]), emb[3:]
    labels = np.arange(len(known))
    whole = ((probes[:, None, :] - known[None, :, :]) ** 2).sum(axis=2)
    for chunk, block in ((1024, 16384), (2, 3), (1, 1)):
        dist, nearest = classify.nearest_known(known, labels, probes, chunk=chunk, block=block)
        np.testing.assert_array_equal(nearest, whole.argmin(axis=1))
        np.testing.assert_allclose(dist, np.sqrt(whole.min(axis=1)), rtol=0, atol=1e-5)
