"""Mistakes a new user makes, each told in one line that says what to do: a model file of another
kind, unaligned photos, stray files in a dataset folder, a quoted `~`. Every message is checked
verbatim with its exit code, in-process through facenet_tf.cli.command (the tools' command line)."""
import os
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import (classifier, cli, clustering, embedding_export, export_embeddings, gallery, make_record, sources,
                        validate)
from facenet_tf.training import input_pipeline
from facenet_tf.align import alignment_plan

tf1 = tf.compat.v1
LFW = 'lfw_deepfunneled'


@pytest.fixture(scope='module')
def mean_model(tmp_path_factory):
    """A frozen model with the tensor contract whose embedding is the L2-normalised mean colour
    of 4x4 blocks of the central 32x32 (48-D): enough for a whole classifier or validate run."""
    path = str(tmp_path_factory.mktemp('mean') / 'mean.pb')
    with tf1.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [None, 160, 160, 3], name='input')
        tf1.placeholder_with_default(False, [], name='phase_train')
        pooled = tf.nn.avg_pool2d(images[:, 64:96, 64:96, :], 8, 8, 'VALID')
        tf.math.l2_normalize(tf.reshape(pooled, [-1, 48]), axis=1, name='embeddings')
        with open(path, 'wb') as f:
            f.write(graph.as_graph_def().SerializeToString())
    return path


def _command(module, argv, capsys, monkeypatch, prog):
    monkeypatch.setattr('sys.argv', [prog])
    code = cli.command(module.main, module.parse_arguments, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _photos(data_dir, root, people=('Aaron_Peirsol', 'Abdullah_Gul'), per_person=3):
    """A class folder per person holding links to their first LFW photos (250x250, not aligned)."""
    for person in people:
        os.makedirs(os.path.join(root, person))
        for name in sorted(os.listdir(os.path.join(data_dir, LFW, person)))[:per_person]:
            os.symlink(os.path.join(data_dir, LFW, person, name), os.path.join(root, person, name))
    return root


def _aligned(data_dir, root, people=('Aaron_Peirsol', 'Abdullah_Gul'), per_person=3):
    """The same photos as 160x160 PNG files (a centre crop standing in for aligned faces)."""
    from PIL import Image
    for person in people:
        os.makedirs(os.path.join(root, person))
        for name in sorted(os.listdir(os.path.join(data_dir, LFW, person)))[:per_person]:
            with Image.open(os.path.join(data_dir, LFW, person, name)) as img:
                img.crop((45, 45, 205, 205)).save(os.path.join(root, person, name[:-4] + '.png'))
    return root


# --- a model file of another kind ----------------------------------------------------------------

HDF5 = b'\x89HDF\r\n\x1a\n' + bytes(56)
TFLITE = b'\x1c\x00\x00\x00TFL3' + bytes(56)


def _zip(path, member):
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr(member, b'x')
    return path


def _model_files(folder):
    """{name: (path, expected message)} of model files of other kinds, by name and by content."""
    f = str(folder)
    files = {}

    def add(name, content, message):
        path = os.path.join(f, name)
        if content is not None:
            with open(path, 'wb') as out:
                out.write(content)
        files[name] = (path, message % {'p': path, 'd': f})

    keras = ('%(p)s is a Keras HDF5 file, not a TensorFlow model: import it first: facenet-import-model %(p)s '
             'FOLDER (python src/import_keras_model.py), then give FOLDER')
    torch = ('%(p)s is a PyTorch file, not a TensorFlow model: import it first: facenet-import-model %(p)s '
             'FOLDER (python src/import_keras_model.py), then give FOLDER')
    lite = ('%(p)s is not a TensorFlow Lite model the interpreter can run: Model provided is schema version 0 '
            'not equal to supported version 3.')   # read by its runtime (facenet_tf.runtimes), which tells why
    part = '%(p)s is one file of a checkpoint folder: give the folder that holds it: %(d)s'
    add('facenet_keras.h5', HDF5, keras)
    add('keras_misnamed.pb', HDF5, keras)
    add('legacy.pt', b'\x80\x02}q\x00.', torch)
    _zip(os.path.join(f, 'weights.bin'), 'archive/data.pkl')
    add('weights.bin', None, torch)
    add('facenet.tflite', TFLITE, lite)
    add('lite_misnamed.pb', TFLITE, lite)
    _zip(os.path.join(f, 'model.zip'), '20180402-114759/20180402-114759.pb')
    add('model.zip', None, '%(p)s is a zip archive: unzip it first, then give the .pb or model folder it holds')
    for name in ('model-1.meta', 'model-1.ckpt-5.index', 'model-1.ckpt-5.data-00000-of-00001', 'checkpoint'):
        add(name, b'\n\x03abc', part)
    return files


def test_model_file_of_another_kind(tmp_path, capsys, monkeypatch):
    """validate_on_lfw.py checks its model first: each kind is told in one line, exit code 2."""
    files = _model_files(tmp_path)
    for name, (path, message) in files.items():
        if name in ('facenet.tflite', 'lite_misnamed.pb'):
            continue   # TensorFlow Lite files are models the tools read: told when they load (next test)
        code, out, err = _command(validate, [tmp_path, path], capsys, monkeypatch, 'validate_on_lfw.py')
        assert (code, err) == (2, 'validate_on_lfw.py: error: %s\n' % message), name


def test_model_file_of_another_kind_when_loading(tmp_path, mean_model, data_dir, capsys, monkeypatch):
    """The loader of every tool (load_for_inference) tells it too: classifier.py on real photos."""
    (tmp_path / 'models').mkdir()
    files = _model_files(tmp_path / 'models')
    photos = _aligned(data_dir, str(tmp_path / 'faces'))
    for name in ('keras_misnamed.pb', 'facenet.tflite', 'model-1.meta'):
        path, message = files[name]
        code, out, err = _command(classifier, ['TRAIN', photos, path, tmp_path / 'c.pkl'], capsys, monkeypatch,
                                  'classifier.py')
        assert code == 2 and err == 'classifier.py: error: %s\n' % message, name
        assert 'Number of images: 6' in out
    # the real published Keras file, when present
    real = os.path.expanduser('~/.cache/facenet-tf1compat/facenet_keras.h5')
    if os.path.isfile(real):
        code, _, err = _command(classifier, ['TRAIN', photos, real, tmp_path / 'c.pkl'], capsys, monkeypatch,
                                'classifier.py')
        assert code == 2 and err.startswith('classifier.py: error: %s is a Keras HDF5 file' % real)


# --- unaligned photos --------------------------------------------------------------------------------

def test_unaligned_photos_warn_classifier(tmp_path, mean_model, data_dir, capsys, monkeypatch):
    photos = _photos(data_dir, str(tmp_path / 'photos'))
    code, out, err = _command(classifier, ['TRAIN', photos, mean_model, tmp_path / 'c.pkl'], capsys, monkeypatch,
                              'classifier.py')
    align = '%s ALIGNED_FOLDER --image_size 160 --margin 32' % photos
    assert code == 0 and os.path.isfile(str(tmp_path / 'c.pkl'))
    assert err.splitlines()[0] == (
        'warning: 6 of the first 6 images in %s are not 160x160 pixels (not aligned? they would only be '
        'centre-cropped or padded): align them first: facenet-align %s (python src/align/align_dataset_mtcnn.py %s)'
        % (photos, align, align))
    assert sum('warning:' in line for line in err.splitlines()) == 1
    aligned = _aligned(data_dir, str(tmp_path / 'aligned'))
    code, out, err = _command(classifier, ['CLASSIFY', aligned, mean_model, tmp_path / 'c.pkl'], capsys,
                              monkeypatch, 'classifier.py')
    assert code == 0 and 'warning' not in err and 'Accuracy: ' in out


def test_unaligned_photos_warn_validate(tmp_path, mean_model, data_dir, capsys, monkeypatch):
    """validate_on_lfw.py on the unaligned LFW photos (pairs of two folds of pairs.txt) warns once."""
    with open(os.path.join(data_dir, 'lfw_protocol', 'pairs.txt')) as f:
        lines = f.read().splitlines()[1:]
    chosen = [lines[i] for k in (0, 1) for i in (600 * k, 600 * k + 1, 600 * k + 300, 600 * k + 301)]
    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('2\t2\n' + '\n'.join(chosen) + '\n')
    lfw = os.path.join(data_dir, LFW)
    code, out, err = _command(validate, [lfw, mean_model, '--lfw_pairs', pairs, '--lfw_nrof_folds', 2], capsys,
                              monkeypatch, 'validate_on_lfw.py')
    assert code == 0 and 'Accuracy: ' in out and 'Running forward pass on 13 distinct images' in out
    warnings = [line for line in err.splitlines() if 'warning:' in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        'warning: 13 of the first 13 images in %s are not 160x160 pixels' % lfw)


# --- stray files ---------------------------------------------------------------------------------------

def test_stray_files_classifier(tmp_path, mean_model, data_dir, capsys, monkeypatch):
    faces = _aligned(data_dir, str(tmp_path / 'faces'))
    notes = os.path.join(faces, 'Abdullah_Gul', 'notes.txt')
    thumbs = os.path.join(faces, 'Aaron_Peirsol', 'Thumbs.db')
    for path in (notes, thumbs):
        with open(path, 'w') as f:
            f.write('not an image\n')
    code, out, err = _command(classifier, ['TRAIN', faces, mean_model, tmp_path / 'c.pkl'], capsys, monkeypatch,
                              'classifier.py')
    assert code == 0 and 'Number of images: 6' in out
    assert err.splitlines()[:3] == ['%s: not an image file: skipped' % thumbs,
                                    '%s: not an image file: skipped' % notes,
                                    'skipped: 2 files that are not images']
    only = tmp_path / 'only' / 'A'
    only.mkdir(parents=True)
    (only / 'readme.txt').write_text('x')
    code, out, err = _command(classifier, ['TRAIN', only.parent, mean_model, tmp_path / 'd.pkl'], capsys,
                              monkeypatch, 'classifier.py')
    assert code == 2 and err.splitlines() == [
        '%s: not an image file: skipped' % (only / 'readme.txt'), 'skipped: 1 file that is not an image',
        'classifier.py: error: no images in %s (expected one sub-folder of aligned images per person)' % only.parent]
    code, out, err = _command(export_embeddings, [mean_model, only.parent, tmp_path / 'e.h5'], capsys, monkeypatch,
                              'export_embeddings.py')
    assert code == 2 and err.splitlines() == [
        '%s: not an image file: skipped' % (only / 'readme.txt'), 'skipped: 1 file that is not an image',
        'export_embeddings.py: error: no images in %s (expected one sub-folder of aligned images per person)'
        % only.parent]
    assert not os.path.exists(str(tmp_path / 'e.h5'))


def test_stray_files_every_listing(tmp_path, data_dir, capsys):
    """export_embeddings, align, cluster, recognize (sources and gallery), the training scripts and
    make_record list folders by the same rule."""
    faces = _aligned(data_dir, str(tmp_path / 'faces'), per_person=1)
    stray = os.path.join(faces, 'Abdullah_Gul', 'list.csv')
    with open(stray, 'w') as f:
        f.write('a,b\n')
    skipped = []
    names, paths, labels = embedding_export.list_images(faces, None, skipped)
    assert (len(paths), skipped) == (2, [stray])
    (tmp_path / 'out').mkdir()
    plan = alignment_plan.plan(faces, str(tmp_path / 'out'), False, False)
    assert len(plan.jobs) == 2
    assert capsys.readouterr().err.splitlines() == ['%s: not an image file: skipped' % stray,
                                                    'skipped: 1 file that is not an image']
    notes = []
    assert len(clustering.image_files(faces, notes.append)) == 2
    assert notes == ['%s: not an image file: skipped' % stray, 'skipped: 1 file that is not an image']
    notes = []
    assert len(sources.expand_sources([faces], notes.append)) == 2
    assert notes == ['%s: not an image file: skipped' % stray, 'skipped: 1 file that is not an image']
    note_lines = ['%s: not an image file: skipped' % stray, 'skipped: 1 file that is not an image']
    capsys.readouterr()
    assert [len(p) for p in gallery.gallery_people(faces)] == [1, 1]
    assert capsys.readouterr().err.splitlines() == note_lines
    classes, records = input_pipeline.load_training_set(faces)
    assert [len(c) for c in classes] == [1, 1] and records is None
    assert capsys.readouterr().err.splitlines() == note_lines
    assert make_record.pack_folder(faces, str(tmp_path / 'rec'))[:2] == (2, 2)
    assert capsys.readouterr().err.splitlines()[:2] == note_lines


# --- a quoted ~ ----------------------------------------------------------------------------------------

def test_quoted_tilde_in_image_and_model_paths(tmp_path, mean_model, data_dir, capsys, monkeypatch):
    home = tmp_path / 'home'
    home.mkdir()
    monkeypatch.setenv('HOME', str(home))
    _aligned(data_dir, str(home / 'faces'))
    shutil.copy(mean_model, str(home / 'mean.pb'))
    code, out, err = _command(classifier, ['TRAIN', '~/faces', '~/mean.pb', '~/c.pkl'], capsys, monkeypatch,
                              'classifier.py')
    assert code == 0 and os.path.isfile(str(home / 'c.pkl')), err
    assert 'Saved classifier model to file "%s"' % (home / 'c.pkl') in out
    with open(str(home / 'x.h5'), 'wb') as f:
        f.write(HDF5)
    code, out, err = _command(classifier, ['CLASSIFY', '~/faces', '~/x.h5', '~/c.pkl'], capsys, monkeypatch,
                              'classifier.py')
    assert code == 2 and err.startswith('classifier.py: error: %s is a Keras HDF5 file' % (home / 'x.h5'))
    from facenet_tf import compare
    args = cli.expand_user(compare.parse_arguments(['~/m.pb', '~/a.jpg', 'b.jpg', '--image_size', '160']))
    assert (args.model, args.image_files) == (str(home / 'm.pb'), [str(home / 'a.jpg'), 'b.jpg'])
    assert np.isscalar(args.image_size)
