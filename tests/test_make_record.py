"""make_record.py: packing aligned folders into train.rec/train.idx/property and LFW pairs into a
`.bin` verification set, read back bit for bit."""
import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from facenet_tf import make_record
from facenet_tf import recordio, verification_sets
from facenet_tf.cli import run
from facenet_tf.errors import FaceNetError
from facenet_tf.images import read_rgb

NROF_IDS = 6


@pytest.fixture(scope='module')
def glint_subset(tmp_path_factory, data_dir):
    """The first 6 identities of the 112x112 crops, linked into a folder of their own."""
    src = os.path.join(data_dir, 'glint_celebrity_24id_112')
    folder = tmp_path_factory.mktemp('glint6')
    for name in sorted(os.listdir(src))[:NROF_IDS]:
        os.symlink(os.path.join(src, name), str(folder / name))
    return str(folder)


def _sorted_files(folder):
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))]


def test_pack_folder_round_trip(glint_subset, tmp_path, capsys):
    out = str(tmp_path / 'rec')
    assert run(make_record.main, make_record.parse_arguments([glint_subset, out])) == 0
    printed = capsys.readouterr()
    assert 'packing: ' in printed.err and 'img/s' in printed.err
    names = sorted(os.listdir(glint_subset))
    files = [_sorted_files(os.path.join(glint_subset, n)) for n in names]
    nrof_images = sum(len(f) for f in files)
    assert printed.out.strip().startswith('Wrote %d images of %d identities' % (nrof_images, NROF_IDS))
    assert sorted(os.listdir(out)) == ['property', 'train.idx', 'train.rec']
    assert open(os.path.join(out, 'property')).read() == '%d,112,112\n' % NROF_IDS

    ds = recordio.RecordDataset(out)
    assert ds.num_classes == NROF_IDS and len(ds) == nrof_images
    assert ds.header == (nrof_images + 1, nrof_images + 1 + NROF_IDS)
    key = 1
    for label, paths in enumerate(files):
        assert ds.ranges[label] == (key, key + len(paths))
        for path in paths:
            header, data = ds.read_record(key)
            assert data == open(path, 'rb').read()
            assert header.flag == 0 and header.label == label and header.id == key
            assert ds.labels[key - 1] == label
            key += 1
    np.testing.assert_array_equal(ds.read_image(1), read_rgb(files[0][0]))
    assert [len(c) for c in ds.classes()] == [len(f) for f in files]


def test_pack_reencoded_as_jpeg(glint_subset, tmp_path):
    src = tmp_path / 'src'
    for name in sorted(os.listdir(glint_subset))[:2]:
        (src / name).mkdir(parents=True)
        for f in sorted(os.listdir(os.path.join(glint_subset, name)))[:3]:
            os.symlink(os.path.join(glint_subset, name, f), str(src / name / f))
    (src / 'empty_person').mkdir()
    first = sorted(os.listdir(str(src)))[0]
    Image.fromarray(np.full((112, 112), 90, np.uint8)).save(str(src / first / 'gray.bmp'))
    (src / sorted(os.listdir(str(src)))[1] / 'broken.png').write_bytes(b'not an image')
    out = str(tmp_path / 'out')
    classes, images, skipped = make_record.pack_folder(str(src), out, jpeg_quality=95)
    assert (classes, images, skipped) == (2, 7, 1)
    ds = recordio.RecordDataset(out)
    assert ds.num_classes == 2 and len(ds) == 7
    originals = [p for c in sorted(os.listdir(str(src))) if c != 'empty_person'
                 for p in _sorted_files(str(src / c)) if not p.endswith('broken.png')]
    for key, path in zip(ds.keys, originals):
        data = ds.read_bytes(key)
        assert data[:3] == b'\xff\xd8\xff'                 # JPEG
        diff = np.abs(ds.read_image(key).astype(int) - read_rgb(path).astype(int))
        assert diff.mean() < 3.0


def test_pack_keeps_png_jpeg_and_reencodes_others_as_png(tmp_path):
    src = tmp_path / 'src'
    (src / 'a').mkdir(parents=True)
    (src / 'b').mkdir()
    rng = np.random.RandomState(0)
    img = rng.randint(0, 255, (20, 16, 3)).astype(np.uint8)
    Image.fromarray(img).save(str(src / 'a' / '1.bmp'))
    Image.fromarray(img).save(str(src / 'b' / '1.jpg'), quality=80)
    out = str(tmp_path / 'out')
    assert make_record.pack_folder(str(src), out) == (2, 2, 0)
    ds = recordio.RecordDataset(out)
    assert ds.image_size == (20, 16)
    assert ds.read_bytes(1)[:8] == b'\x89PNG\r\n\x1a\n'
    np.testing.assert_array_equal(ds.read_image(1), img)
    assert ds.read_bytes(2) == (src / 'b' / '1.jpg').read_bytes()


def test_pack_errors_leave_no_files(tmp_path):
    src = tmp_path / 'src'
    (src / 'a').mkdir(parents=True)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(str(src / 'a' / '1.png'))
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(str(src / 'a' / '2.png'))
    out = tmp_path / 'out'
    with pytest.raises(FaceNetError, match='2.png is 10x12 but .*1.png is 10x10'):
        make_record.pack_folder(str(src), str(out))
    assert os.listdir(str(out)) == []
    (tmp_path / 'none' / 'x').mkdir(parents=True)
    with pytest.raises(FaceNetError, match='no images in'):
        make_record.pack_folder(str(tmp_path / 'none'), str(out))


@pytest.mark.parametrize('argv, message', [
    (['{missing}', '{out}'], 'input folder not found'),
    (['{src}', '{file}'], 'output must be a folder'),
    (['{src}', '{out}', '--pairs', '{file}'], 'with --pairs the output is a .bin file'),
])
def test_cli_errors(tmp_path, capsys, argv, message):
    (tmp_path / 'src').mkdir()
    (tmp_path / 'file').write_text('x')
    names = {'missing': str(tmp_path / 'missing'), 'out': str(tmp_path / 'out'),
             'src': str(tmp_path / 'src'), 'file': str(tmp_path / 'file')}
    args = make_record.parse_arguments([a.format(**names) for a in argv])
    code = run(make_record.main, args, 'make_record.py')
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize('quality', ['0', '101', 'high'])
def test_jpeg_quality_is_checked_by_argparse(capsys, quality):
    with pytest.raises(SystemExit) as exit_info:
        make_record.parse_arguments(['in', 'out', '--jpeg_quality', quality])
    assert exit_info.value.code == 2
    assert 'error: argument --jpeg_quality: ' in capsys.readouterr().err


def test_pairs_bin_is_insightface_readable(data_dir, tmp_path):
    lfw_dir = os.path.join(data_dir, 'lfw_deepfunneled')
    with open(os.path.join(data_dir, 'lfw_protocol', 'pairsDevTest.txt')) as f:
        lines = f.read().splitlines()
    chosen = lines[1:4] + lines[501:504] + ['Nobody_Here\t1\t2']
    pairs_file = tmp_path / 'pairs.txt'
    pairs_file.write_text('3\n' + '\n'.join(chosen) + '\n')
    out = str(tmp_path / 'lfw.bin')
    written, left_out = make_record.write_pairs_bin(lfw_dir, str(pairs_file), out)
    assert (written, left_out) == (6, 1)
    assert not os.path.exists(out + '.tmp')
    with open(out, 'rb') as f:
        bins, issame = pickle.load(f, encoding='bytes')     # as insightface readers load it
    assert issame == [True] * 3 + [False] * 3
    assert len(bins) == 12 and all(isinstance(b, bytes) for b in bins)
    images, same = verification_sets.read_bin(out)
    assert images == bins and same.tolist() == issame
    for i, line in enumerate(chosen[:6]):
        fields = line.split()
        if len(fields) == 3:
            names = [(fields[0], fields[1]), (fields[0], fields[2])]
        else:
            names = [(fields[0], fields[1]), (fields[2], fields[3])]
        for j, (name, num) in enumerate(names):
            path = os.path.join(lfw_dir, name, '%s_%04d.jpg' % (name, int(num)))
            assert bins[2 * i + j] == open(path, 'rb').read()
            decoded = np.asarray(Image.open(io.BytesIO(bins[2 * i + j])).convert('RGB'))
            np.testing.assert_array_equal(decoded, read_rgb(path))
