"""Reading images robustly as RGB uint8, and the classic per-image preprocessing.

Every odd file a user may hold (grayscale, palette, RGBA, 16-bit, CMYK, EXIF-rotated, truncated,
not an image at all) either becomes an HxWx3 uint8 array or raises ImageReadError with one line.
Only regular files are opened (a FIFO or a device named `a.jpg` is refused, never waited on), and
an image whose header declares more than twice PIL's `Image.MAX_IMAGE_PIXELS` (179 million pixels
by default; PIL's DecompressionBombError) is refused before it is decoded.
"""
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EXIF_ORIENTATION = 0x0112
# Between MAX_IMAGE_PIXELS and twice that PIL only warns, in two lines on stderr: the refusal above
# twice it is the one limit, so the warning is silenced.
warnings.simplefilter('ignore', Image.DecompressionBombWarning)


class ImageReadError(Exception):
    """The file cannot be read as an image; str() is a one-line reason."""


def _to_uint8(arr):
    """High bit-depth or float arrays to 0..255 uint8 (16-bit: divide by 257)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == 'f':
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.size and arr.max() > 255:
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def pil_to_rgb(img):
    """A PIL image of any mode to an HxWx3 uint8 array (alpha dropped as the classic tools did)."""
    mode = img.mode
    if mode == 'RGB':
        arr = np.asarray(img)
    elif mode in ('RGBA', 'RGBX', 'RGBa'):
        arr = np.asarray(img)[:, :, :3]
    elif mode in ('L', 'LA', 'La', '1'):
        arr = np.asarray(img.convert('L'))
    elif mode == 'P' or mode == 'PA':
        arr = np.asarray(img.convert('RGBA'))[:, :, :3]
    elif mode.startswith('I') or mode == 'F':
        arr = _to_uint8(np.asarray(img))
    else:  # CMYK, YCbCr, LAB, HSV, ...
        arr = np.asarray(img.convert('RGB'))
    if arr.ndim == 2:
        arr = to_rgb(arr)
    return np.ascontiguousarray(arr, dtype=np.uint8)


def open_regular(path):
    """`path` opened for reading in binary, only if it is a regular file (a FIFO, socket or device
    would block or never end): ImageReadError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0))
    except FileNotFoundError:
        raise ImageReadError('no such file')
    except IsADirectoryError:
        raise ImageReadError('not a regular file')
    except OSError as e:
        raise ImageReadError('cannot open (%s)' % (e.strerror or e))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageReadError('not a regular file')
    return os.fdopen(fd, 'rb')


def image_size(path):
    """(width, height) from the file's header, without decoding it; None if it is not a readable image."""
    try:
        with open_regular(path) as f, Image.open(f) as img:
            return img.size
    except (ImageReadError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


UNALIGNED_SAMPLE = 20   # images whose header unaligned_warning reads


def unaligned_warning(paths, size, folder, sample=UNALIGNED_SAMPLE):
    """One warning line when some of the first `sample` images are not size x size
    (read from their headers only, nothing decoded): photos that were never aligned would be
    centre-cropped (or padded) in silence. None when all of them have the size (or none can be read)."""
    sizes = [image_size(path) for path in paths[:sample]]
    sizes = [s for s in sizes if s is not None]
    wrong = sum(s != (size, size) for s in sizes) if sizes else 0
    if not wrong:
        return None
    align = '%s ALIGNED_FOLDER --image_size %d --margin 32' % (folder, size)
    return ('warning: %d of the first %d images in %s are not %dx%d pixels (not aligned? they would only '
            'be centre-cropped or padded): align them first: facenet-align %s (python src/align/align_dataset_mtcnn.py %s)'
            % (wrong, len(sizes), folder, size, size, align, align))


def _upright(img):
    """The image turned by a valid EXIF orientation (2-8); a missing or garbage tag leaves it as is
    (and costs no copy)."""
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION)
    except Exception:  # a malformed EXIF block: read the pixels as stored
        return img
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return img
    return ImageOps.exif_transpose(img)


def read_rgb(path, exif_transpose=True):
    """Read `path` as an HxWx3 uint8 RGB array, turned upright by its EXIF orientation."""
    try:
        with open_regular(path) as f, Image.open(f) as img:
            img.load()
            if exif_transpose:
                img = _upright(img)
            arr = pil_to_rgb(img)
    except UnidentifiedImageError:
        raise ImageReadError('not an image file')
    except Image.DecompressionBombError as e:
        raise ImageReadError('image too large (%s)' % e)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageReadError('cannot decode image (%s)' % str(e).strip().splitlines()[0] if str(e) else
                             'cannot decode image')
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError('empty image')
    return arr


def to_rgb(img):
    """Grayscale HxW to HxWx3 by repeating the channel (classic name)."""
    return np.repeat(np.asarray(img)[:, :, None], 3, axis=2)


def prewhiten(x):
    """Classic per-image whitening: (x - mean) / max(std, 1/sqrt(x.size))."""
    x = np.asarray(x)
    mean = np.mean(x)
    std = np.std(x)
    std_adj = np.maximum(std, 1.0 / np.sqrt(x.size))
    return np.multiply(np.subtract(x, mean), 1.0 / std_adj)


def fixed_standardize(x):
    """Fixed image standardisation used by the 2018 models: (x - 127.5) / 128."""
    return (np.asarray(x, dtype=np.float32) - 127.5) / 128.0


def crop(image, random_crop, image_size):
    """Central (or random) image_size square crop of a larger image, as the classic facenet.crop."""
    if image.shape[1] > image_size:
        sz1 = int(image.shape[1] // 2)
        sz2 = int(image_size // 2)
        if random_crop:
            diff = sz1 - sz2
            (h, v) = (np.random.randint(-diff, diff + 1), np.random.randint(-diff, diff + 1))
        else:
            (h, v) = (0, 0)
        image = image[(sz1 - sz2 + v):(sz1 + sz2 + v), (sz1 - sz2 + h):(sz1 + sz2 + h), :]
    return image


def flip(image, random_flip):
    """Horizontal flip with probability 1/2 when random_flip (classic name)."""
    if random_flip and np.random.choice([True, False]):
        image = np.fliplr(image)
    return image


def load_data(image_paths, do_random_crop, do_random_flip, image_size, do_prewhiten=True):
    """Read, prewhiten, crop and flip images into an [N, size, size, 3] float array (classic name)."""
    images = np.zeros((len(image_paths), image_size, image_size, 3))
    for i, path in enumerate(image_paths):
        img = read_rgb(path)
        if do_prewhiten:
            img = prewhiten(img)
        img = crop(img, do_random_crop, image_size)
        img = flip(img, do_random_flip)
        images[i, :, :, :] = img
    return images
