"""Encoded image bytes (JPEG, PNG, ...) from files that come from anywhere (record files, .bin
verification sets): the size an image declares is read from its header and checked before anything
is decoded, so no decoder allocates for a decompression bomb (MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE)."""
import io

from PIL import Image, UnidentifiedImageError

from facenet_tf.images import ImageReadError, pil_to_rgb

MAX_IMAGE_SIDE = 1 << 14        # pixels: a stored face image is far smaller
MAX_IMAGE_PIXELS = 1 << 24      # 16 M pixels (48 MiB as RGB): the most a stored image may decode to


def image_size(encoded, strict=True):
    """(width, height) an encoded image declares, read from its header only (nothing decoded), or
    ImageReadError when it declares more than MAX_IMAGE_PIXELS pixels, so no decoder ever allocates
    for a decompression bomb. Bytes that are not an image are an ImageReadError too, or, with
    strict=False, None (left to the decoder, which refuses them without allocating)."""
    try:
        with Image.open(io.BytesIO(encoded)) as img:
            width, height = img.size
    except UnidentifiedImageError:
        if not strict:
            return None
        raise ImageReadError('not an image')
    except Image.DecompressionBombError:
        raise ImageReadError('image too large (over %d pixels)' % MAX_IMAGE_PIXELS)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageReadError('cannot decode image (%s)' % str(e).strip().splitlines()[0]
                             if str(e) else 'cannot decode image')
    if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
        raise ImageReadError('image of %dx%d pixels is too large (at most %d pixels, %d per side)'
                             % (width, height, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE))
    return width, height


def decode_image(encoded):
    """Encoded image bytes (JPEG, PNG, ...) to an HxWx3 uint8 RGB array, or ImageReadError (also for
    an image larger than MAX_IMAGE_PIXELS, refused before decoding)."""
    image_size(encoded)
    try:
        with Image.open(io.BytesIO(encoded)) as img:
            img.load()
            return pil_to_rgb(img)
    except UnidentifiedImageError:
        raise ImageReadError('not an image')
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError('cannot decode image (%s)' % str(e).strip().splitlines()[0]
                             if str(e) else 'cannot decode image')
