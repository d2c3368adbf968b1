"""Short real classifier-training runs on real faces with the small network: the classic VGGFace2
recipe's flags with center loss, validation and the LFW check (run folders, stat.h5, summaries),
each margin loss (one from a train.rec record dataset), restarting from a model with another class
count, NaN stop; plus dataset filtering and bad input."""
import glob
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facenet_tf import make_record
from facenet_tf import train_softmax
from facenet_tf import embedding, model_io, training
from facenet_tf.training import input_pipeline, softmax_training
from facenet_tf.errors import FaceNetError
from training_faces import event_tags, make_faces, run_training

tf1 = tf.compat.v1
SIZE = 32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VGGFACE2_SCHEDULE = os.path.join(ROOT, 'data', 'learning_rate_schedules',
                                 'learning_rate_schedule_classifier_vggface2.txt')
COMMON = ['--model_def', 'models.small_cnn', '--image_size', str(SIZE), '--batch_size', '12',
          '--nrof_preprocess_threads', '1', '--seed', '1', '--lfw_batch_size', '20']
# The published VGGFace2 recipe (with the small network and tiny images).
VGGFACE2 = ['--optimizer', 'ADAM', '--learning_rate', '-1', '--learning_rate_schedule_file', VGGFACE2_SCHEDULE,
            '--keep_probability', '0.4', '--random_flip', '--use_fixed_image_standardization',
            '--weight_decay', '5e-4', '--embedding_size', '512']


@pytest.fixture(scope='module')
def faces(data_dir, tmp_path_factory):
    """Six ORL people (6 images each), the same packed as train.rec, and a 20-pair View-1 style
    LFW subset, shrunk to 36 px."""
    root = make_faces(data_dir, tmp_path_factory.mktemp('faces'))
    make_record.pack_folder(str(root / 'train'), str(root / 'records'))
    return root


def _train(data, tmp, extra):
    return run_training(train_softmax, data, tmp, COMMON + extra)


def _stat(log_dir):
    with h5py.File(os.path.join(log_dir, 'stat.h5'), 'r') as f:
        return {key: np.array(f[key]) for key in f}


@pytest.fixture(scope='module')
def first_run(faces, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('run1')
    return _train(faces / 'train', tmp, VGGFACE2 + [
        '--max_nrof_epochs', '2', '--epoch_size', '3', '--center_loss_factor', '0.01',
        '--prelogits_norm_loss_factor', '5e-4', '--validation_set_split_ratio', '0.2',
        '--validate_every_n_epochs', '1', '--lfw_dir', str(faces / 'lfw'), '--lfw_pairs',
        str(faces / 'pairs.txt'), '--lfw_nrof_folds', '2', '--lfw_distance_metric', '1',
        '--lfw_use_flipped_images', '--lfw_subtract_mean'])


def test_classic_recipe_writes_layout_stat_h5_and_summaries(first_run):
    code, model_dir, log_dir = first_run
    assert code == 0
    subdir = os.path.basename(model_dir)
    assert subdir == os.path.basename(log_dir)
    files = os.listdir(model_dir)
    assert [f for f in files if f.endswith('.meta')] == ['model-%s.meta' % subdir]
    for epoch in (1, 2):                        # classic: checkpoints numbered by epoch
        assert 'model-%s.ckpt-%d.index' % (subdir, epoch) in files
    args = open(os.path.join(log_dir, 'arguments.txt')).read()
    assert 'loss: softmax\n' in args and 'embedding_size: 512\n' in args
    lfw_lines = open(os.path.join(log_dir, 'lfw_result.txt')).read().splitlines()
    assert [int(line.split('\t')[0]) for line in lfw_lines] == [3, 6]
    # the best-checking epoch's checkpoint (numbered by epoch) is kept in best/
    accuracies = [float(line.split('\t')[1]) for line in lfw_lines]
    best_epoch = 1 + int(np.argmax(accuracies))
    best = open(os.path.join(model_dir, 'best', 'best.txt')).read().split('\t')
    assert int(best[0]) == best_epoch and float(best[1]) == max(accuracies)
    assert model_io.get_model_filenames(os.path.join(model_dir, 'best')) == (
        'model-%s.meta' % subdir, 'model-%s.ckpt-%d' % (subdir, best_epoch))

    stat = _stat(log_dir)
    assert set(stat) == {'loss', 'center_loss', 'reg_loss', 'xent_loss', 'prelogits_norm', 'accuracy',
                         'val_loss', 'val_xent_loss', 'val_accuracy', 'lfw_accuracy', 'lfw_valrate',
                         'learning_rate', 'time_train', 'time_validate', 'time_evaluate', 'prelogits_hist'}
    assert stat['loss'].shape == (6,) and stat['prelogits_hist'].shape == (2, 1000)
    assert np.all(stat['xent_loss'] > 0) and np.all(stat['reg_loss'] > 0) and np.all(stat['center_loss'] > 0)
    np.testing.assert_allclose(stat['loss'], stat['xent_loss'] + stat['reg_loss'], rtol=1e-4)
    assert np.all((stat['accuracy'] >= 0) & (stat['accuracy'] <= 1))
    np.testing.assert_allclose(stat['learning_rate'], [0.05, 0.05])           # the schedule's first rate
    assert np.all(stat['prelogits_hist'].sum(axis=1) == 3 * 12 * 512)
    assert np.all(stat['val_xent_loss'] > 0) and np.all(stat['val_accuracy'] >= 0)
    assert np.all((stat['lfw_accuracy'] > 0) & (stat['lfw_accuracy'] <= 1))
    assert np.all(stat['time_train'] > 0) and np.all(stat['time_evaluate'] > 0)

    tags = event_tags(log_dir)
    assert {'learning_rate', 'time/total', 'val/accuracy', 'val/xent_loss', 'lfw/accuracy', 'lfw/val_rate'} <= tags
    assert any(t.startswith('total_loss') for t in tags) and any(t.startswith('cross_entropy') for t in tags)
    reader = tf.train.load_checkpoint(os.path.join(model_dir, 'model-%s.ckpt-2' % subdir))
    shapes = reader.get_variable_to_shape_map()
    assert shapes['Logits/weights'] == [512, 6] and shapes['Logits/biases'] == [6]
    assert shapes['centers'] == [6, 512] and 'SmallCNN/Bottleneck/weights/ExponentialMovingAverage' in shapes
    assert not any('Adam' in n for n in shapes) and 'global_step' not in shapes


def test_trained_model_loads_and_embeds(first_run, faces):
    _, model_dir, _ = first_run
    images = np.stack([np.asarray(Image.open(p), np.float32)[2:34, 2:34] / 128.0 - 127.5 / 128.0
                       for p in sorted(glob.glob(str(faces / 'train' / 's1' / '*.png')))])
    with tf.Graph().as_default(), tf1.Session() as sess:
        model_io.load_model(model_dir, session=sess)
        emb = sess.run('embeddings:0', {'input:0': images, 'phase_train:0': False})
    assert emb.shape == (6, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize('loss, source', [('arcface', 'records'), ('cosface', 'train'), ('combined', 'train')])
def test_margin_loss_runs(faces, tmp_path, capsys, loss, source):
    # from records, the LFW images (files) go through the same queue as the record keys
    lfw = ['--lfw_dir', str(faces / 'lfw'), '--lfw_pairs', str(faces / 'pairs.txt'),
           '--lfw_nrof_folds', '2'] if source == 'records' else []
    code, model_dir, log_dir = _train(faces / source, tmp_path, [
        '--loss', loss, '--margin_s', '30', '--max_nrof_epochs', '1', '--epoch_size', '2',
        '--embedding_size', '16', '--optimizer', 'ADAM', '--learning_rate', '0.01', '--random_crop'] + lfw)
    out = capsys.readouterr().out
    assert code == 0
    if lfw:
        assert 'LFW: accuracy' in out and os.path.isfile(os.path.join(log_dir, 'lfw_result.txt'))
    assert 'Training set: 6 classes, 36 images' in out and 'loss: %s (s=30' % loss in out
    stat = _stat(log_dir)
    assert np.all(np.isfinite(stat['loss'])) and np.all(stat['xent_loss'] > 0)
    shapes = tf.train.load_checkpoint(training.checkpoint_prefix(model_dir)).get_variable_to_shape_map()
    assert shapes['Logits/weights'] == [16, 6] and 'Logits/biases' not in shapes


def test_lfw_check_on_moving_averages(faces, tmp_path):
    lfw_dir, pairs = str(faces / 'lfw'), str(faces / 'pairs.txt')
    code, model_dir, log_dir = _train(faces / 'train', tmp_path, [
        '--max_nrof_epochs', '1', '--epoch_size', '3', '--optimizer', 'ADAM', '--learning_rate', '0.01',
        '--random_crop', '--random_erase', '--use_fixed_image_standardization', '--lfw_dir', lfw_dir,
        '--lfw_pairs', pairs, '--lfw_nrof_folds', '2', '--lfw_use_moving_averages'])
    assert code == 0
    reader = tf.train.load_checkpoint(training.checkpoint_prefix(model_dir))
    average = reader.get_tensor('SmallCNN/Bottleneck/weights/ExponentialMovingAverage')
    assert np.abs(reader.get_tensor('SmallCNN/Bottleneck/weights') - average).max() > 1e-5
    # the averages loaded for inference give the accuracy the training run recorded
    with tf.Graph().as_default(), tf1.Session() as sess:
        embedding.load_for_inference(model_dir, sess, use_moving_averages=True)
        np.testing.assert_array_equal(sess.run('SmallCNN/Bottleneck/weights:0'), average)
        check = training.LfwCheck(lfw_dir, pairs, 2)
        accuracy, _ = check.run(lambda paths: embedding.embed(sess, paths, image_size=SIZE,
                                                              fixed_standardization=True), 0)
    recorded = float(open(os.path.join(log_dir, 'lfw_result.txt')).read().split()[1])
    assert accuracy == pytest.approx(recorded, abs=1e-5)


def test_moving_average_swap_puts_the_trained_values_back():
    with tf.Graph().as_default(), tf1.Session() as sess:
        var = tf1.get_variable('w', initializer=np.float32([1.0, 2.0]))
        ema = tf.train.ExponentialMovingAverage(0.5)
        update = ema.apply([var])
        swap = training.MovingAverageSwap({ema.average(var): var})
        sess.run(tf1.global_variables_initializer())
        sess.run(var.assign([5.0, 6.0]))
        sess.run(update)                                   # average: (1, 2) halfway to (5, 6)
        with swap(sess):
            np.testing.assert_allclose(sess.run(var), [3.0, 4.0])
        np.testing.assert_allclose(sess.run(var), [5.0, 6.0])
        with pytest.raises(RuntimeError):
            with swap(sess):
                raise RuntimeError('evaluation failed')
        np.testing.assert_allclose(sess.run(var), [5.0, 6.0])


def test_restart_with_other_class_count_skips_logits(first_run, faces, tmp_path, capsys):
    _, model_dir, _ = first_run
    four = tmp_path / 'four'
    four.mkdir()
    for person in range(1, 5):
        os.symlink(str(faces / 'train' / ('s%d' % person)), str(four / ('s%d' % person)))
    schedule = tmp_path / 'lr.txt'
    schedule.write_text('0: 1e-9\n2: -1\n')
    code, new_model_dir, _ = _train(four, tmp_path, [
        '--max_nrof_epochs', '5', '--epoch_size', '2', '--pretrained_model', model_dir,
        '--embedding_size', '512', '--optimizer', 'ADAM', '--learning_rate', '-1',
        '--learning_rate_schedule_file', str(schedule), '--use_fixed_image_standardization'])
    out = capsys.readouterr().out
    assert code == 0
    assert 'pretrained model: skipping Logits/weights (classifier layer)' in out
    assert 'pretrained model: skipping centers (shape [6, 512] in the checkpoint, [4, 512] here)' in out
    assert 'ends training at epoch 2' in out
    old = tf.train.load_checkpoint(training.checkpoint_prefix(model_dir))
    new = tf.train.load_checkpoint(training.checkpoint_prefix(new_model_dir))
    name = 'SmallCNN/Conv2d_3a_3x3/weights'
    np.testing.assert_allclose(new.get_tensor(name), old.get_tensor(name), atol=1e-6)
    assert new.get_tensor('Logits/weights').shape == (512, 4)


def test_nan_loss_stops_with_message(faces, tmp_path, capsys):
    code, _, log_dir = _train(faces / 'train', tmp_path, ['--max_nrof_epochs', '2', '--epoch_size', '2',
                                                          '--learning_rate', '1e38', '--optimizer', 'MOM',
                                                          '--embedding_size', '16'])
    assert code == 1
    err = capsys.readouterr().err
    assert 'the loss became nan' in err and 'last good checkpoint' in err
    assert os.path.isfile(os.path.join(log_dir, 'stat.h5'))


def test_filter_dataset_by_distance_to_center(faces, tmp_path):
    dataset, records = input_pipeline.load_training_set(str(faces / 'train'))
    assert records is None and [len(c) for c in dataset] == [6] * 6
    image_list = [p for c in dataset for p in c.image_paths]
    labels = np.repeat(np.arange(6), 6)
    distance = np.arange(36, dtype=np.float32)      # the last images are the farthest from their center
    filename = tmp_path / 'filter.h5'
    with h5py.File(filename, 'w') as f:
        f.create_dataset('distance_to_center', data=distance)
        f.create_dataset('label_list', data=labels)
        f.create_dataset('image_list', data=np.array(image_list, dtype='S'))
    kept, nrof_images, nrof_classes = softmax_training.filter_dataset(dataset, str(filename), 75.0, 5)
    threshold = softmax_training.find_threshold(distance, 75.0)
    assert 25 < threshold < 28
    removed = int(np.sum(distance >= threshold))
    assert nrof_images == removed and [len(c) for c in dataset] == [6] * 6     # input left alone
    assert [c.name for c in kept] == ['s1', 's2', 's3', 's4']
    assert nrof_classes == 2 and all(len(c) == 6 for c in kept)
    with pytest.raises(FaceNetError, match='filter file not found'):
        softmax_training.filter_dataset(dataset, str(tmp_path / 'none.h5'), 75.0, 0)


def test_record_training_set_and_shuffled_stream(faces):
    dataset, records = input_pipeline.load_training_set(str(faces / 'records'))
    try:
        assert [len(c) for c in dataset] == [6] * 6
        assert dataset[0].image_paths[0] == 'record:1' and records.num_classes == 6
    finally:
        records.close()
    stream = softmax_training.ShuffledIndices(5, np.random.RandomState(0))
    taken = np.concatenate([stream.take(3) for _ in range(5)])
    for i in range(3):
        assert sorted(taken[5 * i:5 * i + 5]) == [0, 1, 2, 3, 4]


def test_bad_input_is_one_line(faces, tmp_path):
    def main(argv):
        train_softmax.main(train_softmax.parse_arguments(['--model_def', 'models.small_cnn'] + argv))
    with pytest.raises(FaceNetError, match='margin m2 must be in'):
        main(['--loss', 'arcface', '--margin_m2', '4'])
    with pytest.raises(FaceNetError, match='dataset folder not found'):
        main(['--data_dir', str(tmp_path / 'none')])
    with pytest.raises(FaceNetError, match='cannot import the model definition'):
        train_softmax.main(train_softmax.parse_arguments(['--model_def', 'models.nothing_here']))
    with pytest.raises(FaceNetError, match='learning rate schedule file not found'):
        main(['--learning_rate', '-1', '--learning_rate_schedule_file', str(tmp_path / 'none.txt')])
    with pytest.raises(FaceNetError, match='at least 2 classes'):
        main(['--data_dir', str(faces / 'train' / 's1')])
