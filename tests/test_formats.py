"""Exported model formats as first-class models: a small model exported to TensorFlow Lite
(fp32, fp16, dynamic, int8) and ONNX (fp32, int8) by the tools, read back by every tool that takes a
model (validate_on_lfw, compare, classifier, export_embeddings, cluster, recognize, the API) through
facenet_tf.runtimes, with embeddings checked against TensorFlow's; hostile files give one line."""
import contextlib
import io
import os
import re
import sys

import numpy as np
import pytest

from facenet_tf import cli, runtimes
from facenet_tf import export_onnx, export_tflite

pytest.importorskip('onnxruntime')
pytest.importorskip('tf2onnx')
onnx = pytest.importorskip('onnx')

LFW = 'lfw_deepfunneled'
PEOPLE = ('Aaron_Peirsol', 'Abdullah_Gul')
# largest element difference to TensorFlow fp32 on real crops, by format (measured on this tiny model:
# 6e-8, 3.5e-5, 6e-8, 4.8e-3, 4.5e-8, 1.2e-3)
TOLERANCE = {'none.tflite': 1e-6, 'fp16.tflite': 1e-3, 'dynamic.tflite': 1e-3, 'int8.tflite': 0.03,
             'fp32.onnx': 1e-6, 'int8.onnx': 0.03}


def _command(module, argv, capsys, prog):
    """(exit code, stdout, stderr) of a tool run in-process as its command line."""
    saved = sys.argv
    sys.argv = [prog]
    try:
        code = cli.command(module.main, module.parse_arguments, [str(a) for a in argv])
    finally:
        sys.argv = saved
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope='module')
def exported(tiny_pb, photos, tmp_path_factory):
    """{name: path} of the tiny model exported by export_tflite.py and export_onnx.py in every format
    (the int8 ones calibrated on the photos, centre-cut to 160x160)."""
    base = tmp_path_factory.mktemp('exported')
    paths = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        for q in ('none', 'fp16', 'dynamic', 'int8'):
            paths[q + '.tflite'] = str(base / ('tiny_%s.tflite' % q))
            flags = ['--representative', photos] if q == 'int8' else []
            assert export_tflite.main(export_tflite.parse_arguments([tiny_pb, paths[q + '.tflite'], '--quantize', q]
                                                                    + flags)) == 0
        paths['fp32.onnx'], paths['int8.onnx'] = str(base / 'tiny.onnx'), str(base / 'tiny_int8.onnx')
        assert export_onnx.main(export_onnx.parse_arguments([tiny_pb, paths['fp32.onnx']])) == 0
        assert export_onnx.main(export_onnx.parse_arguments([tiny_pb, paths['int8.onnx'], '--quantize', 'int8',
                                                             '--representative', photos, '--max_images', '4'])) == 0
    assert 'int8, calibrated on 6 crops' in out.getvalue() and 'opset 17, int8 QDQ, calibrated on 4 crops' in out.getvalue()
    assert sorted(os.listdir(str(base))) == sorted(os.path.basename(p) for p in paths.values())  # nothing else left
    return paths


@pytest.fixture(scope='module')
def crops(photos):
    return export_tflite.representative_crops(photos, 160, 6)


def test_every_format_embeds_as_tensorflow(tiny_pb, exported, crops):
    """Each file opens in its runtime with its sizes, takes any batch size and gives TensorFlow's
    embeddings within its precision's tolerance."""
    with runtimes.open_model(tiny_pb) as ref:
        assert (ref.kind, ref.image_size, ref.embedding_size) == ('tensorflow', 160, 648)
        expected = ref.embed(crops)
    sizes = {name: os.path.getsize(path) for name, path in exported.items()}
    assert sizes['fp16.tflite'] < sizes['none.tflite'] and sizes['int8.tflite'] < sizes['none.tflite']
    for name, path in exported.items():
        with runtimes.open_model(path, image_size=160) as runner:
            assert (runner.kind, runner.image_size, runner.embedding_size) == (name.split('.')[1], 160, 648), name
            got = np.concatenate([runner.embed(crops[:2]), runner.embed(crops[2:5]), runner.embed(crops[5:])])
            assert runner.embed(crops[:0]).shape == (0, 648)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() < TOLERANCE[name], name
        if name in ('none.tflite', 'fp32.onnx'):
            assert np.abs(got - expected).max() < 1e-6


def _pairs_file(data_dir, path):
    """Two folds of pairs.txt's first two same and two different pairs each."""
    with open(os.path.join(data_dir, 'lfw_protocol', 'pairs.txt')) as f:
        lines = f.read().splitlines()[1:]
    chosen = lines[0:2] + lines[300:302] + lines[600:602] + lines[900:902]
    with open(path, 'w') as f:
        f.write('2\t2\n' + '\n'.join(chosen) + '\n')
    return path


def test_validate_reads_every_format(tiny_pb, exported, data_dir, tmp_path, capsys):
    """validate_on_lfw.py on 8 LFW pairs: the fp32 files print TensorFlow's result lines exactly; the
    int8 .tflite runs to its result lines; --precision bf16 is refused for a .tflite in one line."""
    from facenet_tf import validate
    pairs = _pairs_file(data_dir, str(tmp_path / 'pairs.txt'))
    base = [os.path.join(data_dir, LFW), '--lfw_pairs', pairs, '--lfw_nrof_folds', '2', '--lfw_batch_size', '6']

    def results(model):
        code, out, err = _command(validate, base[:1] + [model] + base[1:], capsys, 'validate_on_lfw.py')
        assert code == 0, err
        return [line for line in out.splitlines() if re.match(r'(Accuracy|Validation rate|Area|Equal)', line)]
    expected = results(tiny_pb)
    assert len(expected) == 4
    for name in ('none.tflite', 'int8.tflite', 'fp32.onnx'):
        got = results(exported[name])
        assert len(got) == 4, name
        if name in ('none.tflite', 'fp32.onnx'):
            assert got == expected, name
    code, _, err = _command(validate, base[:1] + [exported['none.tflite']] + base[1:] + ['--precision', 'bf16'],
                            capsys, 'validate_on_lfw.py')
    assert (code, err) == (2, 'validate_on_lfw.py: error: %s: --precision bf16 applies to TensorFlow models; a '
                              'TensorFlow Lite file runs at the precision it was exported with\n' % exported['none.tflite'])


def test_classifier_trains_on_one_format_and_classifies_with_another(exported, photos, tmp_path, capsys):
    """classifier.py TRAIN with the .tflite, CLASSIFY with the .onnx (the same embeddings space):
    a probability line per photo and the accuracy line."""
    from facenet_tf import classifier
    pkl = str(tmp_path / 'c.pkl')
    code, out, err = _command(classifier, ['TRAIN', photos, exported['none.tflite'], pkl], capsys, 'classifier.py')
    assert code == 0, err
    code, out, err = _command(classifier, ['CLASSIFY', photos, exported['fp32.onnx'], pkl], capsys, 'classifier.py')
    assert code == 0, err
    assert len([line for line in out.splitlines() if re.match(r'\s+\d+\s+\w+ \w+: [\d.]+$|Accuracy: ', line)]) == 7


def test_export_embeddings_and_api_read_the_formats(tiny_pb, exported, photos, tmp_path, capsys):
    """export_embeddings.py with the .onnx writes TensorFlow's rows (within 1e-6); the API's FaceNet
    opens the int8 .tflite and gives the same crops' embeddings as through the runtime."""
    from facenet_tf import api, embeddings_file
    from facenet_tf import export_embeddings
    rows = {}
    for name, model in (('tf', tiny_pb), ('onnx', exported['fp32.onnx'])):
        out = str(tmp_path / ('%s.h5' % name))
        code, _, err = _command(export_embeddings, [model, photos, out, '--batch_size', '4'], capsys,
                                'export_embeddings.py')
        assert code == 0, err
        rows[name] = embeddings_file.read(out)
    assert rows['tf'].paths == rows['onnx'].paths and len(rows['tf'].paths) == 6
    assert np.abs(rows['tf'].embeddings - rows['onnx'].embeddings).max() < 1e-6
    first = [os.path.join(photos, p) for p in rows['tf'].paths[:3]]
    with api.FaceNet(exported['int8.tflite'], batch_size=2) as model:
        assert (model.image_size, model.embedding_size) == (160, 648)
        from facenet_tf import images
        crops = np.stack([images.read_rgb(p)[45:205, 45:205] for p in first])
        emb = model.embed(crops)
    with runtimes.open_model(exported['int8.tflite']) as runner:
        direct = runner.embed(np.stack([images.prewhiten(c).astype(np.float32) for c in crops]))
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    assert emb.shape == (3, 648) and np.abs(emb - direct).max() < 1e-6


def test_compare_cluster_recognize_read_the_formats(exported, photos, tmp_path, capsys):
    """compare.py runs on the .onnx (a distance matrix of two photos), cluster.py (--aligned) and
    recognize.py (a gallery of one photo each) on .tflite files."""
    from facenet_tf import cluster, compare, recognize
    faces = [os.path.join(photos, p, sorted(os.listdir(os.path.join(photos, p)))[0]) for p in PEOPLE]
    code, out, err = _command(compare, [exported['fp32.onnx']] + faces, capsys, 'compare.py')
    assert code == 0, err
    assert 'Distance matrix' in out and out.count('0.0000') == 2
    gallery = tmp_path / 'gallery'
    for face, person in zip(faces, PEOPLE):
        os.makedirs(str(gallery / person))
        os.symlink(face, str(gallery / person / os.path.basename(face)))
    code, out, err = _command(cluster, [exported['fp16.tflite'], photos, tmp_path / 'clusters', '--aligned',
                                        '--min_samples', '2'], capsys, 'cluster.py')
    assert code == 0, err
    assert os.path.isdir(str(tmp_path / 'clusters'))
    jsonl = str(tmp_path / 'faces.jsonl')
    code, out, err = _command(recognize, [exported['dynamic.tflite'], faces[0], '--gallery', gallery,
                                          '--output_jsonl', jsonl], capsys, 'recognize.py')
    assert code == 0, err
    with open(jsonl) as f:
        text = f.read()
    assert '"name": "Aaron Peirsol"' in text or '"name": "Aaron_Peirsol"' in text


def _tflite_of_graph(tmp_path, input_shape, name):
    """A .tflite converted from a one-op graph with the given input shape (a wrong-shaped model)."""
    from facenet_tf import tf_setup
    tf = tf_setup.configure()
    tf1 = tf.compat.v1
    with tf1.Graph().as_default() as graph:
        x = tf1.placeholder(tf.float32, input_shape, name='input')
        y = tf.identity(x * 2.0, name='embeddings')
        data = tf1.lite.TFLiteConverter(graph.as_graph_def(), [x], [y]).convert()
    path = str(tmp_path / name)
    with open(path, 'wb') as f:
        f.write(data)
    return path


def _file_reading_tflite(tmp_path, secret):
    """A .tflite whose graph reads `secret` with TensorFlow's ReadFile (a Flex custom operator)."""
    from facenet_tf import tf_setup
    tf = tf_setup.configure()
    tf1 = tf.compat.v1
    with tf1.Graph().as_default() as graph:
        x = tf1.placeholder(tf.float32, [None, 160, 160, 3], name='input')
        size = tf.cast(tf.strings.length(tf.io.read_file(secret)), tf.float32)
        y = tf.identity(tf.reduce_mean(x, axis=[1, 2]) + size, name='embeddings')
        converter = tf1.lite.TFLiteConverter(graph.as_graph_def(), [x], [y])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        data = converter.convert()
    path = str(tmp_path / 'reads_a_file.tflite')
    with open(path, 'wb') as f:
        f.write(data)
    return path


def test_hostile_model_files(exported, tmp_path, monkeypatch):
    """Truncated, wrong magic, wrong shapes, a TensorFlow op that reads a file, external data outside
    the folder, onnxruntime absent: one-line FaceNetErrors naming the file, nothing run."""
    from facenet_tf.errors import FaceNetError

    def error(path, **kw):
        with pytest.raises(FaceNetError) as e:
            runtimes.open_model(path, **kw)
        message = str(e.value)
        assert '\n' not in message and path in message
        return message
    with open(exported['none.tflite'], 'rb') as f:
        data = f.read()
    truncated = str(tmp_path / 'truncated.tflite')
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 3])
    assert 'is not a TensorFlow Lite model' in error(truncated)
    garbage = str(tmp_path / 'garbage.onnx')
    with open(garbage, 'wb') as f:
        f.write(b'\xff\xfe not a protobuf' * 10)
    assert 'is not an ONNX model' in error(garbage)
    flat = _tflite_of_graph(tmp_path, [None, 128], 'flat.tflite')
    assert 'must map float32 [N, S, S, 3] crops to float32 [N, D] embeddings' in error(flat)
    assert 'takes 160x160 crops, not 182x182' in error(exported['fp32.onnx'], image_size=182)
    reader = _file_reading_tflite(tmp_path, str(tmp_path / 'secret.txt'))
    assert 'uses custom operators (FlexReadFile, FlexStringLength), which are not run' in error(reader)
    proto = onnx.load(exported['fp32.onnx'])
    tensor = proto.graph.initializer[0]
    tensor.ClearField('raw_data')
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key='location', value='../secret.bin')
    (tmp_path / 'secret.bin').write_bytes(b'\x00' * 4096)
    os.makedirs(str(tmp_path / 'm'))
    outside = str(tmp_path / 'm' / 'outside.onnx')
    onnx.save(proto, outside)
    assert "keeps its data in '../secret.bin', not a file inside the model's folder" in error(outside)
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    assert 'pip install onnxruntime onnx' in error(exported['fp32.onnx'])


def test_hostile_representative_folders(photos, tmp_path, capsys):
    """The calibration folder of an int8 export is user input: stray files are noted and counted,
    an unreadable or too small image and an empty or missing folder are one-line errors."""
    from PIL import Image

    from facenet_tf.errors import FaceNetError
    folder = tmp_path / 'calib' / 'person'
    folder.mkdir(parents=True)
    person = sorted(os.listdir(photos))[0]
    photo = os.path.join(photos, person, sorted(os.listdir(os.path.join(photos, person)))[0])
    with open(photo, 'rb') as src, open(str(folder / 'a.jpg'), 'wb') as dst:   # a 250x250 LFW photo
        dst.write(src.read())
    (folder / 'notes.txt').write_text('not an image\n')
    crops = export_tflite.representative_crops(str(tmp_path / 'calib'), 160, 4)
    assert crops.shape == (1, 160, 160, 3)
    assert capsys.readouterr().err.splitlines() == ['%s: not an image file: skipped' % (folder / 'notes.txt'),
                                                    'skipped: 1 file that is not an image']
    (folder / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)   # a PNG header and nothing after it
    with pytest.raises(FaceNetError, match=r'cannot read image .*b\.png'):
        export_tflite.representative_crops(str(tmp_path / 'calib'), 160, 4)
    (folder / 'b.png').unlink()
    Image.new('RGB', (40, 40)).save(str(folder / 'c.png'))
    with pytest.raises(FaceNetError, match=r'c\.png: 40x40, smaller than the 160x160 crops'):
        export_tflite.representative_crops(str(tmp_path / 'calib'), 160, 4)
    empty = tmp_path / 'empty'
    empty.mkdir()
    for where, message in ((empty, 'no images'), (tmp_path / 'missing', 'must be a folder of aligned images')):
        with pytest.raises(FaceNetError, match=message) as e:
            export_tflite.representative_crops(str(where), 160, 4)
        assert '\n' not in str(e.value)
