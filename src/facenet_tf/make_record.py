"""Pack an aligned image folder into an insightface-format dataset (train.rec, train.idx, property),
or a pairs file and its aligned images into an insightface verification set (.bin).

Usage:
  python src/make_record.py ALIGNED_DIR OUTPUT_DIR [--jpeg_quality Q]
  python src/make_record.py ALIGNED_DIR OUTPUT.bin --pairs PAIRS_FILE [--jpeg_quality Q]
"""
import argparse
import contextlib
import io
import os
import sys

from PIL import Image, UnidentifiedImageError

from facenet_tf import pairs as pairs_io
from facenet_tf import encoded_images, record_writer, verification_sets
from facenet_tf.cli import ArgumentParser, int_between, command
from facenet_tf.errors import FaceNetError
from facenet_tf.dataset import get_dataset, note_skipped
from facenet_tf.files import add_overwrite_argument, atomic_path, check_new_output
from facenet_tf.images import ImageReadError, pil_to_rgb
from facenet_tf.progress import Progress

KEPT_FORMATS = ('JPEG', 'PNG')
MAX_FILE_BYTES = 64 << 20  # an image file larger than this is skipped unread (an aligned face is ~10 KB)
RECORD_FILES = ('train.rec', 'train.idx', 'property')


class Encoder(object):
    """Turns image files into the bytes to store: JPEG and PNG files as they are (other formats
    re-encoded as PNG so every reader decodes them), or everything re-encoded as JPEG with a quality.
    Checks that every image decodes and that all have the same size. A file over MAX_FILE_BYTES, or
    an image whose header declares more than encoded_images.MAX_IMAGE_PIXELS, is skipped before it is read
    or decoded, so memory stays bounded whatever the folder holds."""

    def __init__(self, jpeg_quality=None, note=None):
        self.jpeg_quality = jpeg_quality
        self.note = note or (lambda line: sys.stderr.write(line + '\n'))  # progress.write keeps a bar whole
        self.size = None
        self.first_path = None
        self.reencoded = 0

    def __call__(self, path):
        """Bytes to store for `path`, or None (after a note line) when it cannot be read."""
        try:
            with open(path, 'rb') as f:
                if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                    raise ValueError('file larger than %d MiB' % (MAX_FILE_BYTES >> 20))
                data = f.read(MAX_FILE_BYTES + 1)
            encoded_images.image_size(data)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                fmt, size = img.format, img.size
                if self.jpeg_quality is not None:
                    data = _encode(pil_to_rgb(img), 'JPEG', quality=self.jpeg_quality)
                elif fmt not in KEPT_FORMATS:
                    data = _encode(_png_ready(img), 'PNG')
                    self.reencoded += 1
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, ImageReadError,
                Image.DecompressionBombError) as e:
            reason = 'not an image file' if isinstance(e, UnidentifiedImageError) else \
                (str(e).strip().splitlines()[0] if str(e) else type(e).__name__)
            self.note('skipped %s: %s' % (path, reason))
            return None
        if self.size is None:
            self.size, self.first_path = size, path
        elif size != self.size:
            raise FaceNetError('%s is %dx%d but %s is %dx%d: a dataset holds images of one size '
                            '(align them with one --image_size)'
                            % (path, size[0], size[1], self.first_path, self.size[0], self.size[1]))
        return data


def _png_ready(img):
    return img if img.mode in ('L', 'RGB', 'RGBA', 'LA', 'P', 'I;16') else img.convert('RGB')


def _encode(image, fmt, **options):
    out = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(out, fmt, **options)
    return out.getvalue()


def pack_folder(input_dir, output_dir, jpeg_quality=None):
    """Write output_dir/train.rec, train.idx and property from a folder of identity folders.
    Returns (number of classes, number of images, number skipped); files that are not images get a
    note each on stderr and a count line (dataset.note_skipped)."""
    not_images = []
    dataset = [cls for cls in get_dataset(input_dir, skipped=not_images) if cls.image_paths]
    note_skipped(not_images, lambda line: sys.stderr.write(line + '\n'))
    total = sum(len(cls) for cls in dataset)
    if not total:
        raise FaceNetError('no images in %s (expected one sub-folder of images per identity)' % input_dir)
    os.makedirs(output_dir, exist_ok=True)
    names = RECORD_FILES
    progress = Progress(total, 'packing', 'img')
    encoder = Encoder(jpeg_quality, progress.write)
    with contextlib.ExitStack() as files:  # the three files are renamed into place together, or removed
        temps = [files.enter_context(atomic_path(os.path.join(output_dir, n))) for n in names]
        counts = record_writer.write_face_dataset(temps[0], temps[1], [cls.image_paths for cls in dataset],
                                             encoder, progress)
        if not sum(counts):
            raise FaceNetError('none of the %d files in %s could be read as an image' % (total, input_dir))
        empty = [cls.name for cls, n in zip(dataset, counts) if n == 0]
        if empty:
            raise FaceNetError('no readable image for %d identit%s (%s): remove %s'
                            % (len(empty), 'y' if len(empty) == 1 else 'ies', ', '.join(empty[:5]),
                               'its folder' if len(empty) == 1 else 'their folders'))
        width, height = encoder.size
        record_writer.write_property(temps[2], len(dataset), height, width)
    sys.stderr.write(progress.summary() + '\n')
    if encoder.reencoded:
        sys.stderr.write('%d images in formats other than JPEG/PNG were stored re-encoded as PNG\n' % encoder.reencoded)
    return len(dataset), sum(counts), total - sum(counts)


def write_pairs_bin(input_dir, pairs_file, output_file, jpeg_quality=None):
    """Write the images of a pairs file (two per pair, in pair order) and the issame list as an
    insightface `.bin`. Returns (pairs written, pairs left out)."""
    pairs = pairs_io.read_pairs(pairs_file)
    paths, issame, missing = pairs_io.get_paths_and_skipped(input_dir, pairs)
    for pair in missing:
        sys.stderr.write('skipped pair %s: image not found\n' % ' '.join(pair))
    if not issame:
        raise FaceNetError('none of the %d pairs of %s has both images in %s'
                        % (len(pairs), pairs_file, input_dir))
    progress = Progress(len(paths), 'packing', 'img')
    encoder = Encoder(jpeg_quality, progress.write)
    bins, kept = [], []
    for i, same in enumerate(issame):
        data = [encoder(paths[2 * i]), encoder(paths[2 * i + 1])]
        progress.update(2)
        if data[0] is None or data[1] is None:
            continue
        bins += data
        kept.append(bool(same))
    if not kept:
        raise FaceNetError('no pair of %s has two readable images' % pairs_file)
    folder = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(folder, exist_ok=True)
    with atomic_path(output_file) as tmp:
        verification_sets.write_bin(tmp, bins, kept)
    sys.stderr.write(progress.summary() + '\n')
    return len(kept), len(pairs) - len(kept)


def main(args):
    if not os.path.isdir(os.path.expanduser(args.input_dir)):
        raise FaceNetError('input folder not found: %s' % args.input_dir)
    input_dir = os.path.expanduser(args.input_dir)
    output = os.path.expanduser(args.output)
    if args.pairs:
        if not output.endswith('.bin'):
            raise FaceNetError('with --pairs the output is a .bin file, got %s' % args.output)
        check_new_output(output, args.overwrite)
        written, left_out = write_pairs_bin(input_dir, args.pairs, output, args.jpeg_quality)
        print('Wrote %d pairs (%d images) to %s; %d pairs left out'
              % (written, 2 * written, output, left_out))
    else:
        if os.path.isfile(output):
            raise FaceNetError('output must be a folder (train.rec, train.idx and property are written '
                            'in it), got the file %s' % args.output)
        for name in RECORD_FILES:
            check_new_output(os.path.join(output, name), args.overwrite)
        nrof_classes, nrof_images, skipped = pack_folder(input_dir, output, args.jpeg_quality)
        print('Wrote %d images of %d identities to %s (train.rec, train.idx, property); %d files skipped'
              % (nrof_images, nrof_classes, output, skipped))


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('input_dir', type=str,
                        help='Aligned images: one sub-folder per identity (or the LFW layout with --pairs).')
    parser.add_argument('output', type=str,
                        help='Output folder for train.rec/train.idx/property, or the .bin file with --pairs.')
    parser.add_argument('--pairs', type=str, default=None,
                        help='A pairs file (LFW pairs.txt format): write a verification set (.bin) '
                             'of its pairs.')
    parser.add_argument('--jpeg_quality', type=int_between(1, 100), default=None,
                        help='Re-encode every image as JPEG with this quality (1-100) instead of storing '
                             'the files as they are.')
    add_overwrite_argument(parser, 'the .bin file, or train.rec/train.idx/property in the output folder,')
    return parser.parse_args(argv)



def console_main():
    """The `facenet-make-record` command (also `python -m facenet_tf.make_record`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
