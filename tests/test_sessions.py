"""Inference sessions come from the shared flags (tf_setup.add_inference_arguments and
inference_session): every tool that runs a model takes --precision, --gpu_memory_fraction and
--allow_growth, and the sessions it opens (the model's, and the MTCNN detector's where it builds one)
carry them. recognize, cluster, classifier, validate and export_embeddings run in-process on LFW photos
with a tiny frozen model; the settings are read from the sessions the runs really opened."""
import os
import shutil

import pytest

from facenet_tf import classifier, cluster, export_embeddings, recognize, tf_setup, validate
from facenet_tf.align import detect_face
from hostile import run_main

GPU_FLAGS = ['--gpu_memory_fraction', '0.25', '--allow_growth']




@pytest.fixture
def opened(monkeypatch):
    """The configs of the sessions the run opens: ('model', ConfigProto) for inference_session,
    ('detector', ConfigProto) for an MTCNN that owns its session."""
    seen = []
    original = tf_setup.inference_session

    def recording_session(*args, **kwargs):
        sess = original(*args, **kwargs)
        seen.append(('model', sess._config))
        return sess

    class RecordingMTCNN(detect_face.MTCNN):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(('detector', self.session_config))

    monkeypatch.setattr(tf_setup, 'inference_session', recording_session)
    monkeypatch.setattr(detect_face, 'MTCNN', RecordingMTCNN)
    return seen


def _lfw(data_dir, person, number, dst):
    os.makedirs(os.path.dirname(str(dst)), exist_ok=True)
    shutil.copyfile(os.path.join(data_dir, 'lfw_deepfunneled', person, '%s_%04d.jpg' % (person, number)), str(dst))
    return str(dst)


def _assert_gpu_flags(configs, kinds):
    assert [kind for kind, _ in configs] == kinds
    for _, config in configs:
        assert config.gpu_options.per_process_gpu_memory_fraction == pytest.approx(0.25)
        assert config.gpu_options.allow_growth is True


def test_recognize_sessions_carry_the_gpu_flags(tiny_pb, data_dir, tmp_path, opened):
    gallery = tmp_path / 'gallery'
    _lfw(data_dir, 'Colin_Powell', 2, gallery / 'Colin_Powell' / 'c.jpg')
    _lfw(data_dir, 'Serena_Williams', 2, gallery / 'Serena_Williams' / 's.jpg')
    photo = _lfw(data_dir, 'Colin_Powell', 3, tmp_path / 'in' / 'photo.jpg')
    out = tmp_path / 'faces.jsonl'
    result = run_main(recognize, [tiny_pb, photo, '--gallery', gallery, '--output_jsonl', out] + GPU_FLAGS)
    assert result.code == 0, result.err
    assert out.read_text().count('\n') >= 1
    _assert_gpu_flags(opened, ['model', 'detector'])


def test_cluster_sessions_carry_the_gpu_flags(tiny_pb, data_dir, tmp_path, opened):
    photos = tmp_path / 'photos'
    for i in (1, 2, 3):
        _lfw(data_dir, 'Colin_Powell', i, photos / 'Colin_Powell' / ('%d.jpg' % i))
    result = run_main(cluster, [tiny_pb, photos, tmp_path / 'out', '--min_samples', '2'] + GPU_FLAGS)
    assert result.code == 0, result.err
    assert (tmp_path / 'out' / 'clusters.csv').is_file()
    _assert_gpu_flags(opened, ['model', 'detector'])


def test_cluster_of_aligned_crops_builds_no_detector(tiny_pb, data_dir, tmp_path, opened):
    crops = tmp_path / 'crops'
    for i in (1, 2):
        _lfw(data_dir, 'Colin_Powell', i, crops / 'Colin_Powell' / ('%d.jpg' % i))
    result = run_main(cluster, [tiny_pb, crops, tmp_path / 'out', '--aligned', '--min_samples', '2'] + GPU_FLAGS)
    assert result.code == 0, result.err
    _assert_gpu_flags(opened, ['model'])


def test_export_embeddings_session_carries_the_gpu_flags(tiny_pb, data_dir, tmp_path, opened):
    aligned = tmp_path / 'aligned'
    _lfw(data_dir, 'Colin_Powell', 1, aligned / 'Colin_Powell' / 'a.jpg')
    _lfw(data_dir, 'Serena_Williams', 1, aligned / 'Serena_Williams' / 'b.jpg')
    output = tmp_path / 'emb.h5'
    result = run_main(export_embeddings, [tiny_pb, aligned, output] + GPU_FLAGS)
    assert result.code == 0, result.err
    assert output.is_file()
    _assert_gpu_flags(opened, ['model'])


def _aligned(data_dir, base, per_person=2):
    """A folder of LFW photos as the aligned-folder tools read it (one sub-folder per person)."""
    for person in ('Colin_Powell', 'Serena_Williams'):
        for i in range(1, per_person + 1):
            _lfw(data_dir, person, i, base / person / ('%s_%04d.jpg' % (person, i)))
    return base


def test_classifier_session_carries_the_gpu_flags(tiny_pb, data_dir, tmp_path, opened):
    aligned = _aligned(data_dir, tmp_path / 'aligned', 3)
    pkl = tmp_path / 'people.pkl'
    result = run_main(classifier, ['TRAIN', aligned, tiny_pb, pkl] + GPU_FLAGS)
    assert result.code == 0, result.err
    assert pkl.is_file()
    _assert_gpu_flags(opened, ['model'])


def test_validate_session_carries_the_gpu_flags(tiny_pb, data_dir, tmp_path, opened):
    aligned = _aligned(data_dir, tmp_path / 'aligned')
    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('2\nColin_Powell\t1\t2\nSerena_Williams\t1\t2\n'
                     'Colin_Powell\t1\tSerena_Williams\t1\nColin_Powell\t2\tSerena_Williams\t2\n')
    result = run_main(validate, [aligned, tiny_pb, '--lfw_pairs', pairs, '--lfw_nrof_folds', '2'] + GPU_FLAGS)
    assert result.code == 0, result.err
    assert 'Accuracy:' in result.out
    _assert_gpu_flags(opened, ['model'])


@pytest.mark.parametrize('module, positional, precision', [
    (recognize, ['model.pb', 'photo.jpg', '--gallery', 'people'], 'auto'),   # bulk tools: bf16 where native
    (cluster, ['model.pb', 'photos', 'out'], 'auto'),
    (validate, ['lfw', 'model.pb'], 'fp32'),                                 # classic tools: classic numbers
    (classifier, ['TRAIN', 'aligned', 'model.pb', 'c.pkl'], 'fp32'),
    (export_embeddings, ['model.pb', 'aligned', 'emb.h5'], 'fp32'),
])
def test_every_inference_tool_takes_the_shared_flags(module, positional, precision):
    args = module.parse_arguments(positional + GPU_FLAGS + ['--precision', 'fp32'])
    assert (args.gpu_memory_fraction, args.allow_growth, args.precision) == (0.25, True, 'fp32')
    defaults = module.parse_arguments(positional)
    assert (defaults.gpu_memory_fraction, defaults.allow_growth, defaults.precision) == (1.0, False, precision)


@pytest.mark.parametrize('value', ['0', '1.5', 'half'])
def test_a_bad_memory_fraction_is_an_argparse_error(value, capsys):
    with pytest.raises(SystemExit) as stop:
        recognize.parse_arguments(['model.pb', 'photo.jpg', '--gallery', 'people', '--gpu_memory_fraction', value])
    assert stop.value.code == 2
    assert 'argument --gpu_memory_fraction' in capsys.readouterr().err


def test_inference_session_precision_overrides_the_flag_and_keeps_the_gpu_settings():
    args = cluster.parse_arguments(['model.pb', 'photos', 'out'] + GPU_FLAGS)
    tf1 = tf_setup.configure().compat.v1
    with tf1.Graph().as_default() as graph:
        with tf_setup.inference_session(args, precision='fp32') as sess:
            assert sess.graph is graph
            _assert_gpu_flags([('model', sess._config)], ['model'])
    with tf_setup.inference_session(graph=graph) as sess:
        assert sess.graph is graph
        assert sess._config.gpu_options.allow_growth is False
