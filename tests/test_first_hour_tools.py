"""A new user's first hour with the tools: the aligner on a flat folder and on a run that aligned
nothing, unknown and abbreviated flags named, --help answered before TensorFlow loads, recognize's
exit code when nothing was read, its warm-up kept out of the time summary, and its gallery cache key.
A tiny frozen model keeps recognize in-process and fast; the faces are LFW photos."""
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facenet_tf import gallery as gallery_lib, recognize, validate
from facenet_tf.align import align_dataset_mtcnn
from hostile import assert_one_line_error, copy_file, lfw_photo, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ('align.align_dataset_mtcnn', 'validate', 'compare', 'recognize', 'cluster', 'classifier', 'freeze',
         'import_model', 'export_embeddings', 'export_tflite', 'make_record', 'generate_pairs', 'train_triplet',
         'train_softmax', 'calibrate', 'evaluate_identification', 'export_onnx', 'export_mtcnn')


def test_a_flat_folder_is_refused_before_anything_is_written(data_dir, tmp_path):
    flat = tmp_path / 'photos'
    for i in (1, 2):
        copy_file(lfw_photo(data_dir, 'Colin_Powell', i), flat / ('%d.jpg' % i))
    for out in (tmp_path / 'aligned', flat / 'aligned'):   # the output folder inside it is no person
        if out.parent == flat:
            out.mkdir()
        result = run_main(align_dataset_mtcnn, [flat, out])
        line = assert_one_line_error(result, code=2)
        assert line == ('align_dataset_mtcnn.py: error: %s holds images but no per-person folders: the aligner '
                        'expects %s/<person>/<image>; move them into one folder per person (or one folder, '
                        'e.g. %s/all/) and run again' % (flat, flat, flat))
        assert os.path.exists(str(out)) == (out.parent == flat) and 'tensorflow' not in result.err
    assert sorted(os.listdir(str(flat))) == ['1.jpg', '2.jpg', 'aligned'] and not os.listdir(str(flat / 'aligned'))


def test_a_run_that_aligned_nothing_fails_and_removes_the_folder_it_created(tmp_path):
    blank = tmp_path / 'in' / 'Nobody' / 'blank.png'
    blank.parent.mkdir(parents=True)
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    out = tmp_path / 'out'
    result = run_main(align_dataset_mtcnn, [tmp_path / 'in', out])
    assert result.code == 1, result
    assert 'No face found in any of 1 images in %s' % (tmp_path / 'in') in result.out
    assert 'Removed the output folder this run created: %s' % out in result.out
    assert not os.path.lexists(str(out))
    out.mkdir()   # a folder the user made is kept, with what the run wrote in it
    result = run_main(align_dataset_mtcnn, [tmp_path / 'in', out])
    assert result.code == 1 and 'Removed' not in result.out, result
    assert 'revision_info.txt' in os.listdir(str(out))


def test_unknown_and_abbreviated_flags_are_named_first(capsys):
    for argv, unknown in ((['m.pb', 'a.jpg', '--galery', 'people'], '--galery'),
                          (['m.pb', 'a.jpg', '--gallery', 'people', '--max_sid', '640'], '--max_sid 640')):
        with pytest.raises(SystemExit) as e:
            recognize.parse_arguments(argv)
        assert e.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith('error: unrecognized arguments: %s' % unknown)
    with pytest.raises(SystemExit):
        validate.parse_arguments(['lfw', 'm.pb', '--lfw_pair', 'pairs.txt'])
    assert capsys.readouterr().err.splitlines()[-1].endswith('error: unrecognized arguments: --lfw_pair pairs.txt')
    with pytest.raises(SystemExit):   # with every flag known, the missing choice is the error
        recognize.parse_arguments(['m.pb', 'a.jpg'])
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        'error: one of the arguments --classifier --gallery is required')
    assert recognize.parse_arguments(['m.pb', 'a.jpg', '--gallery=people', '--max_side=640']).max_detect_side == 640


def test_every_tool_answers_help_before_tensorflow_loads():
    """One process imports every tool and asks for --help: none loads TensorFlow (nor scikit-learn);
    each prints its usage."""
    code = ('import importlib, io, contextlib, sys\n'
            'for tool in sys.argv[1:]:\n'
            '    out = io.StringIO()\n'
            '    with contextlib.redirect_stdout(out):\n'
            '        try:\n'
            '            importlib.import_module("facenet_tf." + tool).parse_arguments(["--help"])\n'
            '        except SystemExit as e:\n'
            '            assert e.code == 0, tool\n'
            '    assert out.getvalue().startswith("usage:"), tool\n'
            '    print(tool, "tensorflow" in sys.modules or "sklearn" in sys.modules)\n')
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src'))
    done = subprocess.run([sys.executable, '-c', code] + list(TOOLS), capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [w for tool in TOOLS for w in (tool, 'False')]


def test_recognize_fails_when_no_frame_was_read(tiny_pb, gallery, tmp_path):
    result = run_main(recognize, [tiny_pb, '9', '--gallery', gallery])   # no camera 9 here
    assert_one_line_error(result, 'nothing read: every source was skipped (1 skipped)', code=2)
    assert 'camera 9: cannot open as a video camera: skipped' in result.err


def _seconds(pattern, text):
    return float(re.search(pattern, text).group(1))


def test_warm_up_is_not_counted_and_the_cache_follows_max_side(published_model, gallery, data_dir, tmp_path):
    """With the gallery read from its cache, the first session runs of the published model (about
    1.2 s on 2 cores, 4x the photo's own time) are the warm-up line, not the time summary's."""
    photo = copy_file(lfw_photo(data_dir, 'Colin_Powell', 6), tmp_path / 'in' / 'a.jpg')
    cache = gallery / gallery_lib.GALLERY_CACHE
    first = run_main(recognize, [published_model[1], photo, '--gallery', gallery])
    assert first.code == 0 and 'embedded, cached in %s' % cache in first.err, first
    again = run_main(recognize, [published_model[1], photo, '--gallery', gallery])
    assert again.code == 0 and 'gallery: 2 faces of 2 people from the cache %s' % cache in again.err, again
    assert 'names: Colin Powell 1' in again.err
    warm_up, total = _seconds(r'warm-up: ([\d.]+) s ', again.err), _seconds(r'\ntime: ([\d.]+) s,', again.err)
    assert 0 < total < warm_up, again.err
    smaller = run_main(recognize, [published_model[1], photo, '--gallery', gallery, '--max_side', '120'])
    assert smaller.code == 0 and 'embedded, cached in %s' % cache in smaller.err, smaller


def test_the_gallery_key_is_the_model_files_and_the_crop_settings(tiny_pb, gallery, tmp_path):
    people = gallery_lib.gallery_people(str(gallery))
    settings = {'image_size': 160, 'margin': 32, 'standardize': 'prewhiten', 'max_detect_side': 0}
    key = gallery_lib._gallery_key(str(gallery), people, tiny_pb, settings)
    assert key == gallery_lib._gallery_key(str(gallery), people, tiny_pb, dict(settings))
    assert key != gallery_lib._gallery_key(str(gallery), people, tiny_pb, dict(settings, max_detect_side=640))
    folder = tmp_path / 'model'   # the folder of a model is keyed apart from its .pb (docs/recognize.md)
    folder.mkdir()
    shutil.copyfile(tiny_pb, str(folder / 'tiny.pb'))
    os.utime(str(folder / 'tiny.pb'), ns=(os.stat(tiny_pb).st_mtime_ns,) * 2)
    assert key != gallery_lib._gallery_key(str(gallery), people, str(folder), settings)
