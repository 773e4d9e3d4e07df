"""Hara et al.'s 3D ResNets (`kenshohara/3D-ResNets-PyTorch`) into the zoo.

Their `.pth` files hold `{'arch': 'resnet-50', 'state_dict': ..., ...}`
(`epoch`, `optimizer`, and since their 2020 update `scheduler`). The state
dict names follow their PyTorch modules: `conv1`, `bn1`,
`layer{1-4}.{i}.conv{1-3}` / `bn{1-3}`, `layer{s}.0.downsample.0` (conv) and
`.1` (batch norm) for projection shortcuts, `fc`. Files saved from
`nn.DataParallel` prefix every name with `module.` (their 2018 release).

Two releases, two input conventions (their code, `mean.py` / `opts.py` /
`main.py` of each version):

- 2018 (branch CVPR2018; ResNet-18/34/50/101/152/200, Wide ResNet-50,
  ResNeXt-101 on Kinetics-400): pixels in [0, 255] minus the ActivityNet
  mean (114.7748, 107.7354, 99.4750), no division (`--norm_value 1`,
  `--mean_dataset activitynet`, `--std_norm` off).
- 2020 (master; ResNet-18...200 on Kinetics-700, Moments in Time, ...):
  pixels in [0, 1], mean (0.4345, 0.4051, 0.3775), std (0.2768, 0.2713,
  0.2737) (`--mean_dataset kinetics`, `--value_scale 1`).

Both: 16 consecutive frames, short side resized to 112, centre crop 112.
"""

import re

from keras_classreg import models
from keras_classreg.models.resnet3d import _widths
from keras_classreg.pretrained._common import Pretrained, WeightSource, set_layer_weights
from keras_classreg.pretrained.class_names import kinetics_class_names
from keras_classreg.pretrained.pth import read_pth

RELEASES = ("2018", "2020")
ACTIVITYNET_MEAN_255 = (114.7748, 107.7354, 99.4750)
KINETICS_MEAN_2020 = (0.4345, 0.4051, 0.3775)
KINETICS_STD_2020 = (0.2768, 0.2713, 0.2737)

_RESNET_DEPTHS = {
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
    ("bottleneck", (3, 24, 36, 3)): 200,
}
_UNSUPPORTED = {
    "preresnet": "pre-activation ResNets",
    "densenet": "DenseNets",
    "resnet2p1d": "R(2+1)D networks",
}


def load_3d_resnets_pth(
    path,
    input_shape=(16, 112, 112, 3),
    conv1_t_stride=1,
    no_max_pool=False,
    release=None,
    class_names=None,
    classifier_activation="softmax",
):
    """Loads a `kenshohara/3D-ResNets-PyTorch` `.pth` file into the zoo.

    The file is read without PyTorch (`keras_classreg.pretrained.read_pth`).
    The architecture is read off the weights' names and shapes: family
    (ResNet, Wide ResNet, ResNeXt), depth, widths, cardinality, shortcut
    type (B when there are `downsample` weights, else A), the stem's
    filters and temporal kernel size, the number of classes. Two options of
    theirs leave no trace in the weights: give them as they were trained.

    Args:
        path: the `.pth` file (zip or pre-1.6 format), or a state dict file.
        input_shape: `(T, H, W, 3)` of the Keras model; default their
            16 x 112 x 112 clips.
        conv1_t_stride: their `--conv1_t_stride` (default 1, as every
            published model).
        no_max_pool: their `--no_max_pool` (default False, as every
            published model).
        release: `"2018"` or `"2020"`, which fixes the input convention
            (see the module docstring); default: detected (a `scheduler`
            entry means 2020; DataParallel `module.` names or 400 classes
            mean 2018; otherwise 2020).
        class_names: the class names in index order; default: Kinetics-400
            for the 2018 400-class files, Kinetics-700 for the 2020
            700-class files, otherwise none (`clip_format['class_names']`
            is then `None`).
        classifier_activation: `"softmax"` (default) or `None` for logits.

    Returns:
        a `Pretrained` record (model, zoo builder and options, clip format,
        source).
    """
    return convert_3d_resnets_checkpoint(
        read_pth(path),
        str(path),
        input_shape=input_shape,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        release=release,
        class_names=class_names,
        classifier_activation=classifier_activation,
    )


def convert_3d_resnets_checkpoint(
    checkpoint,
    origin="checkpoint",
    input_shape=(16, 112, 112, 3),
    conv1_t_stride=1,
    no_max_pool=False,
    release=None,
    class_names=None,
    classifier_activation="softmax",
):
    """`load_3d_resnets_pth` for a checkpoint already read (a dict with
    `state_dict`, or a state dict) of NumPy arrays."""
    if release is not None and release not in RELEASES:
        raise ValueError(
            f"Invalid value for argument `release`. Expected one of {RELEASES}. "
            f"Received: release={release!r}"
        )
    if (
        isinstance(conv1_t_stride, bool)
        or not isinstance(conv1_t_stride, int)
        or conv1_t_stride < 1
    ):
        raise ValueError(
            "Invalid value for argument `conv1_t_stride`. Expected a positive "
            f"int. Received: conv1_t_stride={conv1_t_stride!r}"
        )
    state_dict, arch, extras = _state_dict_of(checkpoint, origin)
    state_dict, prefixed = _strip_module_prefix(state_dict, origin)
    spec = infer_architecture(state_dict, arch, origin)
    builder, options = _builder_for(spec, conv1_t_stride, no_max_pool, origin)
    model = models.get(
        builder,
        num_classes=spec["num_classes"],
        input_shape=tuple(input_shape),
        class_regularization=False,
        classifier_activation=classifier_activation,
        **options,
    )
    weights = WeightSource(state_dict, origin)
    _set_weights(model, weights, origin)
    weights.check_all_used()

    release, evidence = _detect_release(release, extras, prefixed, spec["num_classes"])
    names, names_source = _class_names(class_names, release, spec["num_classes"])
    if release == "2018":
        mean = [m / 255.0 for m in ACTIVITYNET_MEAN_255]
        std = [1.0 / 255.0] * 3
        convention = (
            "pixels in [0, 255] minus the ActivityNet mean "
            f"{list(ACTIVITYNET_MEAN_255)}, not divided (CVPR2018 "
            "code: --norm_value 1, --mean_dataset activitynet)"
        )
    else:
        mean, std = list(KINETICS_MEAN_2020), list(KINETICS_STD_2020)
        convention = (
            "pixels in [0, 1], Kinetics mean/std of mean.py "
            "(2020 code: --mean_dataset kinetics, --value_scale 1)"
        )
    clip_format = {
        "clip_length": int(input_shape[0]),
        "stride": 1,
        "crop_size": int(input_shape[1]),
        "short_side": int(input_shape[1]),
        "num_clips": 10,
        "num_crops": 1,
        "mean": mean,
        "std": std,
        "class_names": names,
    }
    source = {
        "source": "3d-resnets",
        "file": origin,
        "format": "3D-ResNets-PyTorch .pth",
        "arch": arch,
        "architecture": spec,
        "release": release,
        "release_evidence": evidence,
        "input_convention": convention,
        "class_names_source": names_source,
        "dataparallel_prefix": prefixed,
        "weights": weights.report(),
        "other_entries": sorted(extras),
    }
    return Pretrained(model, builder, options, clip_format, source)


def _state_dict_of(checkpoint, origin):
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{origin}: expected a dict (a 3D-ResNets checkpoint or a state "
            f"dict). Received: {type(checkpoint).__name__}"
        )
    if "state_dict" in checkpoint:
        state_dict = checkpoint["state_dict"]
        arch = checkpoint.get("arch")
        extras = {k for k in checkpoint if k != "state_dict"}
    else:
        state_dict, arch, extras = checkpoint, None, set()
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"{origin}: the state dict is empty or not a dict.")
    if arch is not None and not isinstance(arch, str):
        raise ValueError(f"{origin}: 'arch' is {arch!r}, expected a string such as 'resnet-50'.")
    return state_dict, arch, extras


def _strip_module_prefix(state_dict, origin):
    prefixed = [key.startswith("module.") for key in state_dict]
    if any(prefixed) and not all(prefixed):
        raise ValueError(
            f"{origin}: some names start with 'module.' (nn.DataParallel) and "
            "others do not; cannot tell the model's own names."
        )
    if all(prefixed):
        return {key[len("module.") :]: value for key, value in state_dict.items()}, True
    return dict(state_dict), False


def infer_architecture(state_dict, arch=None, origin="checkpoint"):
    """The architecture of a 3D-ResNets state dict (without `module.`),
    read off its names and shapes; `arch` (`'resnet-50'`, ...) is checked
    against it.

    Returns:
        dict: `family` (`resnet`, `wideresnet`, `resnext`), `depth`,
        `block` (`basic` / `bottleneck`), `blocks` (per stage), `planes`
        (per stage), `stem_filters`, `stem_t_size`, `cardinality`,
        `shortcut` (`A` / `B`), `num_classes`, `features`.
    """
    family_from_arch = depth_from_arch = None
    if arch:
        match = re.fullmatch(r"([a-z0-9]+)-(\d+)", arch)
        if not match:
            raise ValueError(f"{origin}: unrecognised arch {arch!r} (expected e.g. 'resnet-50').")
        family_from_arch, depth_from_arch = match.group(1), int(match.group(2))
        if family_from_arch in _UNSUPPORTED:
            raise ValueError(
                f"{origin}: arch {arch!r}: {_UNSUPPORTED[family_from_arch]} are "
                "not in the keras_classreg zoo; supported: resnet-18/34/50/101/"
                "152/200, wideresnet-50, resnext-101."
            )
        if family_from_arch not in ("resnet", "wideresnet", "resnext"):
            raise ValueError(f"{origin}: unknown 3D-ResNets model family in arch {arch!r}.")
    if any(key.startswith("features.") for key in state_dict):
        raise ValueError(f"{origin}: a DenseNet state dict; DenseNets are not in the zoo.")
    if "conv1_s.weight" in state_dict:
        raise ValueError(f"{origin}: an R(2+1)D state dict; R(2+1)D is not in the zoo.")
    if "conv1.weight" not in state_dict or "fc.weight" not in state_dict:
        raise ValueError(
            f"{origin}: not a 3D-ResNets ResNet state dict (no conv1.weight / fc.weight)."
        )

    def shape(name):
        if name not in state_dict:
            raise ValueError(f"{origin}: the entry '{name}' is missing.")
        return tuple(getattr(state_dict[name], "shape", ()))

    stem = shape("conv1.weight")
    if len(stem) != 5 or stem[3:] != (7, 7):
        raise ValueError(f"{origin}: conv1.weight has shape {stem}; expected (C, 3, t, 7, 7).")
    if stem[1] != 3:
        raise ValueError(
            f"{origin}: conv1 reads {stem[1]} input channels; only RGB models "
            "(3 channels) are supported (flow models read 2)."
        )
    blocks = []
    for stage in range(1, 5):
        count = 0
        while f"layer{stage}.{count}.conv1.weight" in state_dict:
            count += 1
        if count == 0:
            raise ValueError(f"{origin}: no blocks in layer{stage}.")
        blocks.append(count)
    block = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    planes, groups = [], 1
    family = "resnet"
    for stage in range(1, 5):
        first = shape(f"layer{stage}.0.conv1.weight")[0]
        if block == "basic":
            planes.append(first)
            continue
        conv2 = shape(f"layer{stage}.0.conv2.weight")
        out = shape(f"layer{stage}.0.conv3.weight")[0]
        groups = conv2[0] // conv2[1]
        if groups > 1:
            family = "resnext"
            planes.append(out // 2)
        elif out == 4 * first:
            planes.append(first)
        elif out == 2 * first:
            family = "wideresnet"
            planes.append(first)
        else:
            raise ValueError(
                f"{origin}: layer{stage}.0 widens {first} to {out} channels; "
                "neither a ResNet (x4) nor a Wide ResNet / ResNeXt (x2) bottleneck."
            )
    depth = _RESNET_DEPTHS.get((block, tuple(blocks)))
    if depth is None:
        raise ValueError(
            f"{origin}: {block} blocks per stage {tuple(blocks)} match no depth "
            "of the zoo (ResNet-18/34: basic (2,2,2,2)/(3,4,6,3); 50/101/152/"
            "200: bottleneck (3,4,6,3)/(3,4,23,3)/(3,8,36,3)/(3,24,36,3))."
        )
    if family_from_arch is not None and (family_from_arch, depth_from_arch) != (family, depth):
        raise ValueError(f"{origin}: arch says {arch!r} but the weights are of a {family}-{depth}.")
    fc = shape("fc.weight")
    return {
        "family": family,
        "depth": depth,
        "block": block,
        "blocks": blocks,
        "planes": planes,
        "stem_filters": stem[0],
        "stem_t_size": stem[2],
        "cardinality": groups,
        "shortcut": "B" if any(".downsample." in key for key in state_dict) else "A",
        "num_classes": fc[0],
        "features": fc[1],
    }


def _builder_for(spec, conv1_t_stride, no_max_pool, origin):
    family, depth, planes = spec["family"], spec["depth"], tuple(spec["planes"])
    options = {
        "stem_filters": spec["stem_filters"],
        "stem_kernel_size": [spec["stem_t_size"], 7, 7],
        "stem_strides": [conv1_t_stride, 2, 2],
        "stem_pool": not no_max_pool,
        "shortcut": spec["shortcut"],
        "padding": "symmetric",
        "batchnorm_epsilon": 1e-5,
    }
    if family == "resnet":
        builder, base = f"resnet{depth}_3d", (64, 128, 256, 512)
    elif family == "wideresnet":
        if depth != 50:
            raise ValueError(f"{origin}: Wide ResNet-{depth}; the zoo has Wide ResNet-50 only.")
        builder, base = "wide_resnet50_3d", (64, 128, 256, 512)
    else:
        if depth != 101:
            raise ValueError(f"{origin}: ResNeXt-{depth}; the zoo has ResNeXt-101 only.")
        builder, base = "resnext101_3d", (128, 256, 512, 1024)
        options["cardinality"] = spec["cardinality"]
    widen = planes[0] / base[0]
    if _widths(base, widen) != planes:
        raise ValueError(
            f"{origin}: stage widths {planes} are not {base} times one factor; "
            "the zoo cannot build them."
        )
    options["widen_factor"] = int(widen) if widen == int(widen) else widen
    return builder, options


def _set_weights(model, weights, origin):
    for layer in model.layers:
        if not layer.weights:
            continue
        name = layer.name
        if name == "classifier":
            kernel, bias = layer.weights
            fc = weights.take("fc.weight", tuple(kernel.shape)[::-1], name)
            set_layer_weights(layer, [fc.T, weights.take("fc.bias", bias.shape, name)], origin)
            continue
        torch_name = _torch_name(name)
        if torch_name is None:
            raise ValueError(f"{origin}: the Keras layer '{name}' has no 3D-ResNets counterpart.")
        if name.endswith("_conv"):
            (kernel,) = layer.weights
            t, h, w, cin, cout = kernel.shape
            value = weights.take(f"{torch_name}.weight", (cout, cin, t, h, w), name)
            set_layer_weights(layer, [value.transpose(2, 3, 4, 1, 0)], origin)
        else:  # batch norm: gamma, beta, moving mean, moving variance
            size = (layer.weights[0].shape[0],)
            values = [
                weights.take(f"{torch_name}.{key}", size, name)
                for key in ("weight", "bias", "running_mean", "running_var")
            ]
            set_layer_weights(layer, values, origin)
            counter = f"{torch_name}.num_batches_tracked"
            if counter in weights.values:
                weights.ignore(counter, "BatchNorm step counter; not used at inference")


def _torch_name(keras_name):
    """`stage2_block1_shortcut_bn` → `layer2.0.downsample.1`, ..."""
    if keras_name in ("stem_conv", "stem_bn"):
        return "conv1" if keras_name == "stem_conv" else "bn1"
    match = re.fullmatch(r"stage(\d)_block(\d+)_(\d|shortcut)_(conv|bn)", keras_name)
    if not match:
        return None
    stage, block, part, kind = match.groups()
    prefix = f"layer{stage}.{int(block) - 1}."
    if part == "shortcut":
        return prefix + ("downsample.0" if kind == "conv" else "downsample.1")
    return prefix + f"{kind}{part}"


def _detect_release(release, extras, prefixed, num_classes):
    if release is not None:
        return release, "given"
    if "scheduler" in extras:
        return "2020", (
            "the file has a 'scheduler' entry, which only the 2020 code's save_checkpoint writes"
        )
    if prefixed:
        return "2018", (
            "DataParallel 'module.' names: the 2018 code saved the "
            "wrapped model's state dict (the 2020 code unwraps it)"
        )
    if num_classes == 400:
        return "2018", (
            "400 classes: the 2018 release is Kinetics-400; no 2020 model has 400 classes"
        )
    return "2020", (
        f"{num_classes} classes, no 'module.' names: the 2020 "
        "release (Kinetics-700, Moments in Time, ...)"
    )


def _class_names(class_names, release, num_classes):
    if class_names is not None:
        names = [str(name) for name in class_names]
        if len(names) != num_classes:
            raise ValueError(
                f"{len(names)} class names given for a model with {num_classes} classes."
            )
        return names, "given"
    if release == "2018" and num_classes == 400:
        return kinetics_class_names(400), (
            "Kinetics-400 (kinetics-i3d label_map.txt, identical to the "
            "authors' class_names_list of video-classification-3d-cnn-pytorch)"
        )
    if release == "2020" and num_classes == 700:
        return kinetics_class_names(700), (
            "Kinetics-700 in sorted order (assumed: the 2020 code numbers "
            "classes by first appearance in the training CSV; not verified "
            "against the published weights)"
        )
    return None, f"none shipped for {num_classes} classes of the {release} release"
