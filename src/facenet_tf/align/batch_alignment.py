"""The worker pipeline of a dataset alignment run (facenet_tf.align.dataset_alignment): batches of
images bounded by count and pixels, decoded and turned into pyramids ahead in threads, detected in one
batched MTCNN call per batch, and their crops written (atomically, as PNG) in threads while the next
batch is detected; in this process or in `num_workers` processes."""
import multiprocessing
import os
from collections import deque, namedtuple
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

from facenet_tf.align import aligner
from facenet_tf.align.alignment_plan import printable
from facenet_tf.files import atomic_path
from facenet_tf.images import ImageReadError, image_size, read_rgb

BATCH_SIZE = 32
BATCH_PIXELS = 1 << 25        # 33.5 million pixels (32 one-megapixel photos) per batch
IN_FLIGHT_PIXELS = 96 << 20   # pixels of the batches being read or detected at once (two 48 MP photos)
WORKER_THREADS = 2  # reading + pyramids, writing crops
DETECT_THREADS = 2  # batches in detection at once
PNG_COMPRESSION = 1  # zlib level: 4x faster to write than the default 6, files ~10% larger

# max_detect_side: 0 = detect on the full image (classic), N > 0 = on a copy reduced to N px;
# gpu_memory_fraction, allow_growth: the detector session's GPU memory (per process);
# detector: 'tf', 'onnx' or 'tflite' (align.mtcnn_runtimes.make_detector)
Options = namedtuple('Options', 'image_size margin detect_multiple_faces landmark_alignment max_detect_side '
                     'gpu_memory_fraction allow_growth detector', defaults=(0, None, False, 'tf'))
Result = namedtuple('Result', 'status lines message')  # status: aligned / noface / unreadable


def write_png_atomic(path, img):
    """Save an RGB uint8 array as PNG at `path` through a temporary file and a rename (the rename
    replaces a symbolic link at `path` rather than writing through it; the temporary file is
    never opened through one either)."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
        with open(fd, 'wb') as f:
            Image.fromarray(img).save(f, format='PNG', compress_level=PNG_COMPRESSION)


def _faces_to_write(boxes, img_shape, multiple):
    if boxes.shape[0] == 0:
        return []
    if multiple:
        return list(range(boxes.shape[0]))
    return [aligner.choose_face(boxes, img_shape)]


def write_faces(job, img, boxes, points, opts):
    """Crop, save and describe the chosen faces of one image: a Result."""
    crops = []
    for index in _faces_to_write(boxes, img.shape, opts.detect_multiple_faces):
        if opts.landmark_alignment:
            face = aligner.align_face(img, points, index, opts.image_size)
            bb = aligner.margin_box(boxes[index], 0, img.shape)
        else:
            face, bb = aligner.crop_face(img, boxes[index], opts.image_size, opts.margin)
        if face is not None:
            crops.append((face, bb))
    if not crops:
        return Result('noface', [job.base + '.png'], 'no face: %s' % printable(job.src))
    if opts.detect_multiple_faces:
        names = ['%s_%d.png' % (job.base, i) for i in range(len(crops))]
    else:
        names = [job.base + '.png']
    for name, (face, _) in reversed(list(zip(names, crops))):
        write_png_atomic(name, face)
    lines = ['%s %d %d %d %d' % (name, bb[0], bb[1], bb[2], bb[3]) for name, (_, bb) in zip(names, crops)]
    return Result('aligned', lines, None)


class BatchAligner(object):
    """Aligns batches of images: decoding and pyramids run ahead in threads, detection is one
    batched call per batch, and crops are written in threads while the next batch is detected."""

    def __init__(self, opts, threads=None):
        from facenet_tf.align.mtcnn_runtimes import make_detector
        self.opts = opts
        self.detector = make_detector(opts.detector, threads=threads, gpu_memory_fraction=opts.gpu_memory_fraction,
                                      allow_growth=opts.allow_growth)
        self.pool = ThreadPoolExecutor(WORKER_THREADS)

    def _load(self, job):
        """(image, prepared detector input, None) or (None, None, reason)."""
        try:
            img = read_rgb(job.src)
        except ImageReadError as e:
            return None, None, str(e)
        except MemoryError:
            return None, None, 'out of memory while decoding'
        return img, aligner.prepare(self.detector, img, self.opts.max_detect_side), None

    def read(self, jobs):
        """Futures of the decoded images of `jobs`."""
        return [self.pool.submit(self._load, job) for job in jobs]

    def align(self, jobs, reads):
        """Futures of the Results of `jobs`, given their read futures."""
        loaded = [f.result() for f in reads]
        ok = [i for i, (img, _, _) in enumerate(loaded) if img is not None]
        found = dict(zip(ok, aligner.detect_prepared(self.detector, [loaded[i][1] for i in ok])))
        futures = []
        for i, (job, (img, _, error)) in enumerate(zip(jobs, loaded)):
            if img is None:
                note = 'unreadable: %s: %s' % (printable(job.src), error)
                futures.append(_done(Result('unreadable', [], note)))
            else:
                futures.append(self.pool.submit(write_faces, job, img, found[i][0], found[i][1], self.opts))
        return futures

    def align_now(self, jobs, reads):
        """Results of `jobs` (detected, crops written)."""
        return [f.result() for f in self.align(jobs, reads)]

    def run(self, jobs, batch_size=BATCH_SIZE, batch_pixels=BATCH_PIXELS, in_flight_pixels=IN_FLIGHT_PIXELS):
        """Yield result lists in batch order. DETECT_THREADS batches are detected at once (the
        session runs concurrent calls; Python steps of one overlap network time of the other)
        while the following batches are read ahead, as long as the pixels of the batches in flight
        stay under `in_flight_pixels` (one batch is always let through)."""
        in_flight = deque()
        with ThreadPoolExecutor(DETECT_THREADS) as detect_pool:
            for batch, pixels in batches(jobs, batch_size, batch_pixels):
                while in_flight and (len(in_flight) > DETECT_THREADS or
                                     sum(n for _, n in in_flight) + pixels > in_flight_pixels):
                    yield in_flight.popleft()[0].result()
                in_flight.append((detect_pool.submit(self.align_now, batch, self.read(batch)), pixels))
            while in_flight:
                yield in_flight.popleft()[0].result()

    def close(self):
        self.pool.shutdown()
        self.detector.close()


def batches(jobs, batch_size=BATCH_SIZE, batch_pixels=BATCH_PIXELS):
    """Yield (jobs, pixels): consecutive jobs, at most `batch_size` of them and `batch_pixels` pixels
    by their files' headers (an image larger than that is a batch alone)."""
    batch, pixels = [], 0
    for job in jobs:
        size = image_size(job.src)
        n = size[0] * size[1] if size else 0
        if batch and (len(batch) == batch_size or pixels + n > batch_pixels):
            yield batch, pixels
            batch, pixels = [], 0
        batch.append(job)
        pixels += n
    if batch:
        yield batch, pixels


def _done(value):
    future = Future()
    future.set_result(value)
    return future


_WORKER = {}


def _worker_init(opts, threads):
    _WORKER['aligner'] = BatchAligner(opts, threads)


def _worker_align(jobs):
    batch_aligner = _WORKER['aligner']
    return batch_aligner.align_now(jobs, batch_aligner.read(jobs))


def results_of(jobs, opts, num_workers):
    """Result lists in batches, from this process or from `num_workers` processes."""
    if num_workers <= 1:
        batch_aligner = BatchAligner(opts)
        try:
            for results in batch_aligner.run(jobs):
                yield results
        finally:
            batch_aligner.close()
        return
    from facenet_tf.align.detect_face import cpu_count
    threads = max(1, cpu_count() // num_workers)
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(num_workers, initializer=_worker_init, initargs=(opts, threads)) as pool:
        for results in pool.imap(_worker_align, (batch for batch, _ in batches(jobs))):
            yield results
