"""Published Kinetics backbones in the zoo: the paper's starting points.

- `load_3d_resnets_pth(path)`: Hara et al.'s 3D ResNets
  (`kenshohara/3D-ResNets-PyTorch`: ResNet-18...200, Wide ResNet-50,
  ResNeXt-101; their 2018 Kinetics-400 and 2020 Kinetics-700 releases), read
  from the `.pth` file without PyTorch (`read_pth`).
- `load_kinetics_i3d(prefix)`: DeepMind's I3D RGB checkpoints
  (`deepmind/kinetics-i3d`: `rgb_imagenet`, `rgb_scratch`,
  `rgb_scratch_kin600`).

Each returns a `Pretrained` record: the Keras model, which computes the
original network's function (same padding and batch-norm epsilon as the
original, every stored weight used exactly once), the zoo builder and
options that rebuild its architecture, and the clip format the weights
expect (frames, stride, crop, short side, mean/std, class names).

This module reads weight files; it is the only part of the library that
does file I/O.
"""

from keras_classreg.pretrained._common import Pretrained
from keras_classreg.pretrained.class_names import kinetics_class_names
from keras_classreg.pretrained.kinetics_i3d import (
    convert_kinetics_i3d_variables,
    load_kinetics_i3d,
)
from keras_classreg.pretrained.pth import PthFormatError, read_pth
from keras_classreg.pretrained.resnets import (
    convert_3d_resnets_checkpoint,
    infer_architecture,
    load_3d_resnets_pth,
)

__all__ = [
    "Pretrained",
    "PthFormatError",
    "convert_3d_resnets_checkpoint",
    "convert_kinetics_i3d_variables",
    "infer_architecture",
    "kinetics_class_names",
    "load_3d_resnets_pth",
    "load_kinetics_i3d",
    "read_pth",
]
