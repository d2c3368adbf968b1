"""Short real triplet-loss training runs on real faces with the small network: run folders, summaries,
LFW check, restarting from a pretrained model, schedule end, NaN stop, Ctrl-C, loading the result."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from facenet_tf import make_record
from facenet_tf import train_triplet as train_tripletloss
from facenet_tf import model_io, training
from facenet_tf.errors import FaceNetError
from training_faces import event_tags, make_faces, run_training

tf1 = tf.compat.v1
SIZE = 32
COMMON = ['--model_def', 'models.small_cnn', '--image_size', str(SIZE), '--batch_size', '12',
          '--people_per_batch', '4', '--images_per_person', '4', '--epoch_size', '2',
          '--nrof_preprocess_threads', '2', '--embedding_size', '16', '--seed', '1']


@pytest.fixture(scope='module')
def faces(data_dir, tmp_path_factory):
    """Six ORL people (6 images each) and a 20-pair View-1 style LFW subset, shrunk to 36 px."""
    return make_faces(data_dir, tmp_path_factory.mktemp('faces'))


def _train(faces, tmp, extra):
    return run_training(train_tripletloss, faces / 'train', tmp, COMMON + extra)


@pytest.fixture(scope='module')
def first_run(faces, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('run1')
    code, model_dir, log_dir = _train(faces, tmp, [
        '--max_nrof_epochs', '2', '--random_crop', '--random_flip', '--random_rotate',
        '--triplet_selection', 'semihard', '--lfw_dir', str(faces / 'lfw'),
        '--lfw_pairs', str(faces / 'pairs.txt'), '--lfw_nrof_folds', '2', '--lfw_distance_metric', '1',
        '--lfw_use_flipped_images', '--lfw_subtract_mean', '--lfw_use_moving_averages'])
    return code, model_dir, log_dir


def test_run_writes_classic_layout_and_summaries(first_run):
    code, model_dir, log_dir = first_run
    assert code == 0
    subdir = os.path.basename(model_dir)
    assert subdir == os.path.basename(log_dir) and len(subdir) == 15 and subdir[8] == '-'
    files = os.listdir(model_dir)
    assert [f for f in files if f.endswith('.meta')] == ['model-%s.meta' % subdir]
    for step in (2, 4):
        assert 'model-%s.ckpt-%d.index' % (subdir, step) in files
    args = open(os.path.join(log_dir, 'arguments.txt')).read()
    assert 'batch_size: 12\n' in args and 'triplet_selection: semihard\n' in args
    revision = open(os.path.join(log_dir, 'revision_info.txt')).read()
    assert 'tensorflow version: %s' % tf.__version__ in revision and 'git hash: ' in revision
    lfw_lines = open(os.path.join(log_dir, 'lfw_result.txt')).read().splitlines()
    assert [int(line.split('\t')[0]) for line in lfw_lines] == [2, 4]
    assert all(0.0 <= float(line.split('\t')[1]) <= 1.0 for line in lfw_lines)
    # the best-checking epoch's checkpoint (numbered by step) is kept in best/, which loads as a model
    accuracies = [float(line.split('\t')[1]) for line in lfw_lines]
    best_step = int(open(os.path.join(model_dir, 'best', 'best.txt')).read().split('\t')[0])
    # the step of the highest accuracy (printed with 5 decimals: a tie there may be a win in full precision)
    assert best_step in [step for step, accuracy in zip([2, 4], accuracies) if accuracy == max(accuracies)]
    assert model_io.get_model_filenames(os.path.join(model_dir, 'best')) == (
        'model-%s.meta' % subdir, 'model-%s.ckpt-%d' % (subdir, best_step))
    tags = event_tags(log_dir)
    assert {'loss', 'learning_rate', 'time/selection', 'lfw/accuracy', 'lfw/val_rate'} <= tags
    reader = tf.train.load_checkpoint(os.path.join(model_dir, 'model-%s.ckpt-4' % subdir))
    names = set(reader.get_variable_to_shape_map())
    assert 'SmallCNN/Bottleneck/weights' in names
    assert 'SmallCNN/Bottleneck/weights/ExponentialMovingAverage' in names
    assert 'SmallCNN/Bottleneck/BatchNorm/moving_mean' in names
    assert not any('Adagrad' in n for n in names) and 'global_step' not in names


def test_trained_model_loads_and_embeds(first_run, faces):
    _, model_dir, _ = first_run
    images = np.stack([np.asarray(Image.open(p), np.float32)[2:34, 2:34] / 128.0 - 1.0
                       for p in sorted(glob.glob(str(faces / 'train' / 's1' / '*.png')))])
    with tf.Graph().as_default():
        with tf1.Session() as sess:
            model_io.load_model(model_dir, session=sess)
            graph = tf1.get_default_graph()
            for name in ('image_batch', 'label_batch', 'phase_train', 'input'):
                graph.get_operation_by_name(name)
            feed = {'input:0': images, 'phase_train:0': False}
            emb = sess.run('embeddings:0', feed)
            again = sess.run('embeddings:0', feed)
    assert emb.shape == (6, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(emb, again)


def test_restart_from_pretrained_model_until_schedule_end(first_run, faces, tmp_path, capsys):
    _, model_dir, _ = first_run
    schedule = tmp_path / 'lr.txt'
    schedule.write_text('# tiny rate: the restored weights must stay as they were\n0: 1e-9\n1: -1\n')
    code, new_model_dir, _ = _train(faces, tmp_path, [
        '--max_nrof_epochs', '5', '--pretrained_model', model_dir, '--embedding_size', '8',
        '--learning_rate', '-1', '--learning_rate_schedule_file', str(schedule)])
    out = capsys.readouterr().out
    assert code == 0
    assert 'pretrained model: skipping SmallCNN/Bottleneck/weights (shape [512, 16] in the checkpoint, ' \
           '[512, 8] here)' in out
    assert 'restored ' in out and 'ends training at epoch 1' in out
    assert [f for f in os.listdir(new_model_dir) if f.endswith('.index')] == [
        'model-%s.ckpt-2.index' % os.path.basename(new_model_dir)]
    old = tf.train.load_checkpoint(training.checkpoint_prefix(model_dir))
    new = tf.train.load_checkpoint(training.checkpoint_prefix(new_model_dir))
    name = 'SmallCNN/Conv2d_3a_3x3/weights'
    np.testing.assert_allclose(new.get_tensor(name), old.get_tensor(name), atol=1e-6)
    assert new.get_tensor('SmallCNN/Bottleneck/weights').shape == (512, 8)


def test_record_dataset_trains_as_its_image_folder(faces, tmp_path):
    """train.rec + train.idx packed from the training folder: same people, same images, so the same
    sampled rounds, triplets and weights as training from the folder (one reader thread, no augmentation)."""
    make_record.pack_folder(str(faces / 'train'), str(tmp_path / 'records'))
    weights, averages = [], []
    for source in ('train', 'records'):
        code, model_dir, _ = run_training(train_tripletloss, tmp_path / source if source == 'records'
                                          else faces / 'train', tmp_path / ('run_' + source),
                                          COMMON + ['--max_nrof_epochs', '1', '--nrof_preprocess_threads', '1',
                                                    '--optimizer', 'MOM', '--learning_rate', '0.05'])
        assert code == 0
        reader = tf.train.load_checkpoint(training.checkpoint_prefix(model_dir))
        weights.append(reader.get_tensor('SmallCNN/Conv2d_1a_3x3/weights'))
        averages.append(reader.get_tensor('SmallCNN/Conv2d_1a_3x3/weights/ExponentialMovingAverage'))
    # the weights moved (their moving average lags behind), and moved the same way from both sources
    assert np.abs(weights[0] - averages[0]).max() > 1e-4
    np.testing.assert_allclose(weights[1], weights[0], atol=1e-5)
    np.testing.assert_allclose(averages[1], averages[0], atol=1e-5)


def test_batch_mining_trains_on_triplets_mined_in_each_batch(faces, tmp_path, capsys):
    """--triplet_mining batch: no selection rounds, every batch's admitted triplets counted and trained on."""
    code, model_dir, log_dir = _train(faces, tmp_path, ['--max_nrof_epochs', '1', '--triplet_mining', 'batch',
                                                        '--triplet_selection', 'vggface', '--alpha', '1.0'])
    assert code == 0
    out = capsys.readouterr().out
    assert 'Selected' not in out
    mined = float(out.split(' triplets mined per batch')[0].rsplit(', ', 1)[1])
    # 12 images, up to 4 a person: at most 36 ordered pairs (3 people x 4 x 3), each with 8 negatives
    assert 0 < mined <= 3 * 12 * 8
    assert {'loss', 'triplets/selected'} <= event_tags(log_dir)
    reader = tf.train.load_checkpoint(training.checkpoint_prefix(model_dir))
    weights = reader.get_tensor('SmallCNN/Conv2d_1a_3x3/weights')
    assert np.abs(weights - reader.get_tensor('SmallCNN/Conv2d_1a_3x3/weights/ExponentialMovingAverage')).max() > 1e-4


def test_nan_loss_stops_with_message(faces, tmp_path, capsys):
    code, model_dir, _ = _train(faces, tmp_path, ['--max_nrof_epochs', '3', '--learning_rate', '1e38',
                                                  '--optimizer', 'MOM'])
    err = capsys.readouterr().err
    assert code == 1
    assert 'the loss became nan' in err and 'last good checkpoint' in err


def test_ctrl_c_saves_a_checkpoint(faces, tmp_path, monkeypatch, capsys):
    def interrupt(self, step, *args):
        raise KeyboardInterrupt
    monkeypatch.setattr(training.EpochProgress, 'update', interrupt)
    code, model_dir, _ = _train(faces, tmp_path, ['--max_nrof_epochs', '3'])
    assert code == 130
    assert 'interrupted: checkpoint saved to' in capsys.readouterr().err
    assert any(f.endswith('.ckpt-1.index') for f in os.listdir(model_dir))


def test_bad_input_is_one_line(faces, tmp_path):
    with pytest.raises(FaceNetError, match='multiple of 3'):
        train_tripletloss.main(train_tripletloss.parse_arguments(['--batch_size', '10']))
    with pytest.raises(FaceNetError, match='dataset folder not found'):
        train_tripletloss.main(train_tripletloss.parse_arguments(
            ['--data_dir', str(tmp_path / 'none'), '--model_def', 'models.small_cnn']))
    with pytest.raises(FaceNetError, match='cannot import the model definition'):
        train_tripletloss.main(train_tripletloss.parse_arguments(['--model_def', 'models.nothing_here']))
