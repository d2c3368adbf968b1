"""The typed configuration of a training run, built once from the parsed flags at the script boundary
(`train_triplet.main`, `train_softmax.main`): the training modules read its fields, never the flags.

Each field is named after its flag (so a field is documented by the flag's help); a script's own
flags are the fields of its subclass (TripletConfig, SoftmaxConfig). `flags` keeps every parsed flag,
as given, for the run's `arguments.txt`."""
import argparse
import dataclasses
import math
from typing import Optional

OPTIMIZERS = ('ADAGRAD', 'ADADELTA', 'ADAM', 'RMSPROP', 'MOM')  # the classic --optimizer choices
LOSSES = ('softmax', 'arcface', 'cosface', 'combined')
MARGIN_DEFAULTS = {             # (m1, m2, m3)
    'arcface': (1.0, 0.5, 0.0),
    'cosface': (1.0, 0.0, 0.35),
    'combined': (1.0, 0.3, 0.2),
}


def margin_parameters(loss, m1=None, m2=None, m3=None):
    """(m1, m2, m3) for a margin loss: the loss's defaults for the values not given.
    Raises ValueError for values out of range (m1 > 0, 0 <= m2 < pi, m3 >= 0)."""
    defaults = MARGIN_DEFAULTS[loss]
    m1, m2, m3 = (d if v is None else float(v) for v, d in zip((m1, m2, m3), defaults))
    if m1 <= 0.0:
        raise ValueError('margin m1 must be > 0, got %g' % m1)
    if not 0.0 <= m2 < math.pi:
        raise ValueError('margin m2 must be in [0, pi), got %g' % m2)
    if m3 < 0.0:
        raise ValueError('margin m3 must be >= 0, got %g' % m3)
    return m1, m2, m3


@dataclasses.dataclass(kw_only=True)
class TrainingConfig:
    """What the shared training code reads (see training/flags.py for each flag)."""
    # the run: folders, devices, cluster
    logs_base_dir: str
    models_base_dir: str
    gpu_memory_fraction: float
    allow_growth: bool
    num_gpus: int
    precision: str                  # fp32, bf16, fp16 (with loss scaling) or auto
    run_name: Optional[str]
    resume: bool
    cluster_wait_timeout: float
    replica_updates: str
    replica_step_timeout: float
    pretrained_model: Optional[str]
    data_dir: str
    model_def: str
    # images and the network
    max_nrof_epochs: int
    batch_size: int
    image_size: int
    epoch_size: int
    embedding_size: int
    random_crop: bool
    random_flip: bool
    random_rotate: bool
    random_erase: bool
    use_fixed_image_standardization: bool
    # optimisation
    keep_probability: float
    weight_decay: float
    optimizer: str
    learning_rate: float
    learning_rate_decay_epochs: int
    learning_rate_decay_factor: float
    moving_average_decay: float
    seed: int
    nrof_preprocess_threads: int
    learning_rate_schedule_file: str
    # the per-epoch verification check
    lfw_pairs: str
    lfw_dir: str
    lfw_nrof_folds: int
    lfw_distance_metric: int
    lfw_use_flipped_images: bool
    lfw_subtract_mean: bool
    lfw_use_moving_averages: bool
    val_set: Optional[list]         # 'NAME=PATH' or 'NAME=FOLDER,PAIRS_FILE' targets after the LFW one
    lfw_every_n_epochs: int
    flags: dict = dataclasses.field(default_factory=dict, repr=False)   # every parsed flag, for arguments.txt

    @classmethod
    def from_args(cls, args, **derived):
        """The config of parsed flags `args` (an argparse.Namespace); `derived` gives the fields
        that are no flag (computed from them by the script)."""
        values = vars(args)
        names = [f.name for f in dataclasses.fields(cls) if f.name != 'flags' and f.name not in derived]
        missing = [name for name in names if name not in values]
        if missing:
            raise TypeError('%s needs the flags %s' % (cls.__name__, ', '.join(missing)))
        return cls(flags=dict(values), **{name: values[name] for name in names}, **derived)

    def flag_namespace(self):
        """The parsed flags as a Namespace (the classic arguments.txt lists them in parse order)."""
        return argparse.Namespace(**self.flags)
