"""Progress lines of a training epoch, printed by the project's one progress printer
(facenet_tf.progress.Progress) with the classic epoch format:

    Epoch: [e][b/epoch_size]  step s  loss l  lr r  n img/s  ETA m:ss
"""
import sys
import time

import numpy as np

from facenet_tf.progress import Progress


class EpochProgress(Progress):
    """Counts the steps of an epoch (and their images and losses); prints a line on the first step,
    at most every `interval` seconds after it, and on the last step, on a terminal too (the classic
    training log)."""

    live_bar = False
    log_steps = None

    def __init__(self, epoch, epoch_size, interval=5.0, stream=None):
        super().__init__(epoch_size, 'Epoch %d' % epoch, 'img', interval,
                         stream if stream is not None else sys.stdout)
        self.epoch = epoch
        self.images = 0
        self.losses = []
        self.step = 0
        self.learning_rate = 0.0
        self.step_seconds = 0.0         # time inside the training steps' session runs, when given
        self.first_step_seconds = 0.0   # the first step's share (its executor and kernels are prepared in it)

    def update(self, step, images, loss, learning_rate, seconds=0.0):
        """One training step done: global step, images in it, its loss and learning rate, and the
        seconds it took (the epoch's summary gives their sum beside the epoch's time)."""
        self.step, self.learning_rate = step, learning_rate
        if not self.done:
            self.first_step_seconds = seconds
        self.step_seconds += seconds
        self.images += images
        self.losses.append(loss)
        super().update(1)

    def rate(self):
        elapsed = self.elapsed()
        return self.images / elapsed if elapsed > 0 else 0.0

    def line(self):
        elapsed = self.elapsed()
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return ('Epoch: [%d][%d/%d]\tstep %d\tloss %.4f\tlr %g\t%.1f img/s\tETA %d:%02d'
                % (self.epoch, self.done, self.total, self.step, self.losses[-1], self.learning_rate, self.rate(),
                   eta // 60, eta % 60))

    def summary(self):
        elapsed = time.time() - self.start
        steps = (', %.1f s in training steps (%.1f s the first)' % (self.step_seconds, self.first_step_seconds)
                 if self.step_seconds > 0 else '')
        return ('Epoch %d: %d steps, %d images in %.1f s (%.1f img/s)%s, mean loss %.4f'
                % (self.epoch, self.done, self.images, elapsed, self.images / max(elapsed, 1e-9), steps,
                   float(np.mean(self.losses)) if self.losses else float('nan')))
