"""Published Kinetics backbones into the zoo (`keras_classreg.pretrained`).

Checkpoints are written here, in the original formats, names and shapes,
with random weights (the published files cannot be downloaded on the test
machines):

- 3D-ResNets `.pth`: by `pretrained_files.write_pth` (no PyTorch) and, when
  PyTorch is installed, by `torch.save` itself from a reference PyTorch
  model written below from the published architecture facts; the converted
  Keras model must match its forward pass within 1e-4.
- DeepMind I3D: TensorFlow checkpoints holding exactly the variables (names,
  shapes) listed by kinetics-i3d's own `model.ckpt.index` files (copied in
  `tests/data/kinetics_i3d/`); the converted model must match a reference
  written below with `tf.nn` ops from `i3d.py`'s facts (TF "SAME" padding,
  Sonnet batch norm without scale, eps 1e-3, the logits' 2x7x7 average pool
  and mean over time).
"""

import collections
import os
import pickle
import shutil
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from pretrained_files import hara_shapes, hara_spec, random_state_dict, write_pth

from keras_classreg import models
from keras_classreg.models._common import conv_bn
from keras_classreg.pretrained import (
    PthFormatError,
    kinetics_class_names,
    load_3d_resnets_pth,
    load_kinetics_i3d,
    read_pth,
)

I3D_INDEXES = os.path.join(os.path.dirname(__file__), "data", "kinetics_i3d")
TINY_CLIPS = (16, 64, 64, 3)

try:
    import torch
except ImportError:  # the optional [torch-test] extra
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (extra [torch-test])")

# (family, depth, stage widths, stem filters, shortcut, cardinality): every
# family and depth the loader supports, at widths small enough for a test.
ARCHITECTURES = {
    "resnet18_A": ("resnet", 18, (8, 16, 32, 64), 8, "A", 32),
    "resnet34_B": ("resnet", 34, (8, 16, 32, 64), 8, "B", 32),
    "resnet50_B": ("resnet", 50, (8, 16, 32, 64), 8, "B", 32),
    "resnet50_A": ("resnet", 50, (8, 16, 32, 64), 8, "A", 32),
    "resnet101_B": ("resnet", 101, (8, 16, 32, 64), 8, "B", 32),
    "resnet152_B": ("resnet", 152, (8, 16, 32, 64), 8, "B", 32),
    "resnet200_B": ("resnet", 200, (8, 16, 32, 64), 8, "B", 32),
    "wideresnet50_B": ("wideresnet", 50, (16, 32, 64, 128), 8, "B", 32),
    "resnext101_B": ("resnext", 101, (32, 64, 128, 256), 8, "B", 8),
}
SLOW = {"resnet101_B", "resnet152_B", "resnet200_B", "resnext101_B"}
SLOW_AGAINST_TORCH = SLOW | {"resnet34_B", "resnet50_A", "wideresnet50_B"}


def _spec(key, num_classes=10, stem_t=7):
    family, depth, planes, stem, shortcut, cardinality = ARCHITECTURES[key]
    return hara_spec(
        family,
        depth,
        planes,
        stem_filters=stem,
        shortcut=shortcut,
        cardinality=cardinality,
        num_classes=num_classes,
        stem_t=stem_t,
    )


def _params(keys, slow=SLOW):
    return [pytest.param(k, marks=pytest.mark.slow) if k in slow else k for k in keys]


def _checkpoint(state_dict, release, arch):
    """The dict the 2018 (CVPR2018 train.py) / 2020 (main.py) code saves."""
    if release == "2018":
        return {
            "epoch": 200,
            "arch": arch,
            "state_dict": collections.OrderedDict(
                ("module." + name, value) for name, value in state_dict.items()
            ),
            "optimizer": {
                "state": {},
                "param_groups": [{"lr": 0.001, "momentum": 0.9, "params": [1, 2, 3]}],
            },
        }
    return {
        "epoch": 200,
        "arch": arch,
        "state_dict": state_dict,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [1]}]},
        "scheduler": {"milestones": collections.Counter({50: 1}), "last_epoch": 200},
    }


# ---------------------------------------------------------------------------
# .pth reading, without PyTorch
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layout, rebuild, location",
    [
        ("zip", "_rebuild_tensor_v2", "cpu"),
        ("legacy", "_rebuild_tensor_v2", "cuda:0"),
        ("legacy", "_rebuild_tensor", "cuda:0"),  # PyTorch 0.3
    ],
)
def test_read_pth_both_formats(tmp_path, layout, rebuild, location):
    rng = np.random.default_rng(0)
    obj = {
        "arch": "resnet-18",
        "epoch": 3,
        "state_dict": collections.OrderedDict(
            [
                ("conv1.weight", rng.normal(size=(4, 3, 7, 7, 7)).astype(np.float32)),
                ("bn1.num_batches_tracked", np.array(17, np.int64)),
                ("half", rng.normal(size=(2, 3)).astype(np.float16)),
            ]
        ),
        "optimizer": {"param_groups": [{"lr": 0.1, "nesterov": False, "params": [0]}]},
    }
    path = tmp_path / "model.pth"
    write_pth(path, obj, layout, rebuild, location)
    read = read_pth(path)
    assert list(read) == list(obj) and read["arch"] == "resnet-18"
    assert isinstance(read["state_dict"], collections.OrderedDict)
    assert list(read["state_dict"]) == list(obj["state_dict"])
    for name, value in obj["state_dict"].items():
        assert read["state_dict"][name].dtype == value.dtype
        np.testing.assert_array_equal(read["state_dict"][name], value)
    assert read["optimizer"] == obj["optimizer"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_read_pth_refuses_code(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"state_dict": _Evil(marker)}, protocol=2)
    for layout in ("zip", "legacy"):
        path = tmp_path / f"evil_{layout}.pth"
        if layout == "zip":
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("evil/data.pkl", payload)
        else:
            with open(path, "wb") as file:
                for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                    pickle.dump(header, file, protocol=2)
                file.write(payload)
        with pytest.raises(PthFormatError, match=r"refusing to load `(posix|os)\.system`"):
            read_pth(path)
    assert not marker.exists()


def test_read_pth_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_pth(tmp_path / "missing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(PthFormatError, match="not a PyTorch file"):
        read_pth(text)
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(PthFormatError, match="not a torch.save archive"):
        read_pth(other_zip)
    script = tmp_path / "script.pt"
    with zipfile.ZipFile(script, "w") as archive:
        archive.writestr("m/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("m/code/__torch__.py", "")
    with pytest.raises(PthFormatError, match="TorchScript"):
        read_pth(script)
    tar = tmp_path / "old.pth"
    import tarfile

    with tarfile.open(tar, "w") as archive:
        archive.add(text, arcname="pickle")
    with pytest.raises(PthFormatError, match="tar-format"):
        read_pth(tar)


# Damaged files: a file cut anywhere, a flipped byte, a zip whose pickle is
# cut, each read in-process (about a millisecond per file).
def _small_checkpoint():
    """Every kind of value a 3D-ResNets file pickles: tensors of three
    storage types (one a scalar), an OrderedDict, a Counter, nested dicts
    and lists, ints, floats, booleans and strings."""
    rng = np.random.default_rng(1)
    return {
        "epoch": 200,
        "arch": "resnet-18",
        "state_dict": collections.OrderedDict(
            [
                ("module.conv1.weight", rng.normal(size=(2, 3, 1, 1, 1)).astype(np.float32)),
                ("module.bn1.num_batches_tracked", np.array(5, np.int64)),
                ("module.fc.bias", rng.normal(size=3).astype(np.float16)),
            ]
        ),
        "optimizer": {"param_groups": [{"lr": 0.1, "nesterov": False, "params": [0, 1]}]},
        "scheduler": {"milestones": collections.Counter({50: 1}), "last_epoch": 200},
    }


def _same(a, b):
    if isinstance(a, dict):  # a Counter reads as a dict
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def _read_damaged(path):
    """`read_pth(path)`, or the `PthFormatError` it raised (one line naming
    the file); any other exception fails the test."""
    try:
        return read_pth(path)
    except PthFormatError as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        return error


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_read_pth_every_cut_is_a_format_error(tmp_path, layout):
    full, cut = tmp_path / "full.pth", tmp_path / "cut.pth"
    write_pth(full, _small_checkpoint(), layout)
    data = full.read_bytes()
    assert _same(read_pth(full), _small_checkpoint())
    for end in range(len(data)):
        cut.write_bytes(data[:end])
        assert isinstance(_read_damaged(cut), PthFormatError), f"cut at {end} of {len(data)}"


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_read_pth_every_flipped_byte(tmp_path, layout):
    """A zip archive's CRCs catch a flipped byte of its content: every flip
    is a format error or reads the same values (a flip in a field the
    reader ignores, e.g. a timestamp). The legacy format has no checksum:
    a flip in a weight or a name reads as a different value; anything else
    is a format error."""
    full, flipped = tmp_path / "full.pth", tmp_path / "flipped.pth"
    write_pth(full, _small_checkpoint(), layout)
    data = full.read_bytes()
    errors = 0
    for index in range(len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0xFF
        flipped.write_bytes(damaged)
        read = _read_damaged(flipped)
        errors += isinstance(read, PthFormatError)
        if layout == "zip" and not isinstance(read, PthFormatError):
            assert _same(read, _small_checkpoint()), f"flip at {index} read as other values"
    assert errors > len(data) // 2  # most bytes are structure


def test_read_pth_zip_with_a_cut_pickle(tmp_path):
    """A zip archive intact around a data.pkl that was cut (before zipping)."""
    full, cut = tmp_path / "full.pth", tmp_path / "cut.pth"
    write_pth(full, _small_checkpoint(), "zip")
    with zipfile.ZipFile(full) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    pickled = records["full/data.pkl"]
    for end in range(len(pickled)):
        with zipfile.ZipFile(cut, "w") as archive:
            for name, content in records.items():
                archive.writestr(name, pickled[:end] if name == "full/data.pkl" else content)
        error = _read_damaged(cut)
        assert isinstance(error, PthFormatError), f"data.pkl cut at {end} of {len(pickled)}"
        assert "full/data.pkl is truncated or damaged" in str(error)


@pytest.mark.slow
@needs_torch
def test_read_pth_matches_torch_load(tmp_path):
    """Files of `torch.save` (both formats) read like `torch.load`; files of
    `write_pth` load in `torch.load(weights_only=True)` unchanged."""
    module = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.BatchNorm3d(4))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    module(torch.rand(2, 3, 4, 4, 4)).sum().backward()
    optimizer.step()
    saved = {
        "arch": "resnet-18",
        "state_dict": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "view": torch.arange(20.0).reshape(4, 5)[1:, ::2],
        "bf16": torch.rand(5).bfloat16(),
    }
    for zip_format in (True, False):
        path = tmp_path / f"torch_{zip_format}.pth"
        torch.save(saved, path, _use_new_zipfile_serialization=zip_format)
        read = read_pth(path)
        for name, value in saved["state_dict"].items():
            np.testing.assert_array_equal(read["state_dict"][name], value.numpy())
        momentum = saved["optimizer"]["state"][0]["momentum_buffer"].numpy()
        np.testing.assert_array_equal(read["optimizer"]["state"][0]["momentum_buffer"], momentum)
        np.testing.assert_array_equal(read["view"], saved["view"].numpy())
        np.testing.assert_array_equal(read["bf16"], saved["bf16"].float().numpy())
    state = random_state_dict(hara_shapes(_spec("resnet18_A")))
    for layout, rebuild, location in [
        ("zip", "_rebuild_tensor_v2", "cpu"),
        ("legacy", "_rebuild_tensor_v2", "cuda:0"),
        ("legacy", "_rebuild_tensor", "cuda:0"),
    ]:
        path = tmp_path / f"ours_{layout}_{rebuild}.pth"
        write_pth(path, _checkpoint(state, "2018", "resnet-18"), layout, rebuild, location)
        loaded = torch.load(path, weights_only=True, map_location="cpu")
        assert loaded["arch"] == "resnet-18"
        for name, value in state.items():
            np.testing.assert_array_equal(loaded["state_dict"]["module." + name].numpy(), value)


# ---------------------------------------------------------------------------
# 3D-ResNets: names, shapes, the architecture read off them (no PyTorch)
# ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("key", _params(ARCHITECTURES))
@pytest.mark.parametrize("release", ["2018", "2020"])
def test_3d_resnets_every_weight_used_once(tmp_path, key, release):
    spec = _spec(key)
    shapes = hara_shapes(spec)
    state = random_state_dict(shapes, num_batches_tracked=(release == "2020"))
    arch = f"{spec['family']}-{spec['depth']}"
    path = tmp_path / "model.pth"
    write_pth(path, _checkpoint(state, release, arch), "legacy" if release == "2018" else "zip")
    loaded = load_3d_resnets_pth(path, input_shape=TINY_CLIPS)
    report = loaded.source["weights"]
    counters = [name for name in state if name.endswith("num_batches_tracked")]
    assert report["entries"] == len(state)
    assert report["loaded"] == len(state) - len(counters)
    assert sorted(report["ignored"]) == sorted(counters)
    assert loaded.source["release"] == release
    assert loaded.source["dataparallel_prefix"] == (release == "2018")
    assert loaded.source["architecture"]["shortcut"] == spec["shortcut"]
    expected_builder = {
        "resnet": f"resnet{spec['depth']}_3d",
        "wideresnet": "wide_resnet50_3d",
        "resnext": "resnext101_3d",
    }[spec["family"]]
    assert loaded.builder == expected_builder
    assert loaded.builder_options["padding"] == "symmetric"
    assert loaded.builder_options["batchnorm_epsilon"] == 1e-5
    # every weight landed where its name says, transposed to channels-last
    model = loaded.model
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").kernel.numpy(), state["conv1.weight"].transpose(2, 3, 4, 1, 0)
    )
    np.testing.assert_array_equal(
        model.get_layer("classifier").kernel.numpy(), state["fc.weight"].T
    )
    bn = model.get_layer("stage3_block2_1_bn")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state["layer3.1.bn1.running_var"])
    np.testing.assert_array_equal(bn.gamma.numpy(), state["layer3.1.bn1.weight"])
    if spec["shortcut"] == "B":
        np.testing.assert_array_equal(
            model.get_layer("stage2_block1_shortcut_conv").kernel.numpy(),
            state["layer2.0.downsample.0.weight"].transpose(2, 3, 4, 1, 0),
        )
    else:
        assert not any(".downsample." in name for name in state)
        assert model.get_layer("stage2_block1_shortcut").weights == []
    assert all(
        layer.epsilon == 1e-5
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    keras.backend.clear_session()


@pytest.mark.slow
def test_3d_resnets_conventions_and_class_names(tmp_path):
    state = random_state_dict(hara_shapes(_spec("resnet18_A", num_classes=400)))
    write_pth(tmp_path / "old.pth", _checkpoint(state, "2018", "resnet-18"), "legacy")
    old = load_3d_resnets_pth(tmp_path / "old.pth", input_shape=TINY_CLIPS)
    assert old.source["release"] == "2018"
    # their [0, 255] pixels minus the ActivityNet mean, std 1, as [0, 1] mean/std
    np.testing.assert_allclose(
        np.array(old.clip_format["mean"]) * 255, [114.7748, 107.7354, 99.4750]
    )
    np.testing.assert_allclose(np.array(old.clip_format["std"]) * 255, [1, 1, 1])
    assert old.clip_format["class_names"] == kinetics_class_names(400)
    assert (old.clip_format["short_side"], old.clip_format["crop_size"]) == (64, 64)
    assert old.clip_format["stride"] == 1 and old.clip_format["clip_length"] == 16

    state = random_state_dict(hara_shapes(_spec("resnet50_B", num_classes=700)))
    write_pth(tmp_path / "new.pth", _checkpoint(state, "2020", "resnet-50"))
    new = load_3d_resnets_pth(tmp_path / "new.pth", input_shape=TINY_CLIPS)
    assert new.source["release"] == "2020" and "scheduler" in new.source["release_evidence"]
    assert new.clip_format["mean"] == [0.4345, 0.4051, 0.3775]
    assert new.clip_format["std"] == [0.2768, 0.2713, 0.2737]
    assert new.clip_format["class_names"] == kinetics_class_names(700)

    # a bare state dict of 1039 classes (their KM files): no names shipped
    state = random_state_dict(hara_shapes(_spec("resnet18_A", num_classes=1039)))
    write_pth(tmp_path / "km.pth", state)
    km = load_3d_resnets_pth(tmp_path / "km.pth", input_shape=TINY_CLIPS, release="2020")
    assert km.clip_format["class_names"] is None and km.source["release_evidence"] == "given"
    names = [f"c{i}" for i in range(1039)]
    km = load_3d_resnets_pth(tmp_path / "km.pth", input_shape=TINY_CLIPS, class_names=names)
    assert km.clip_format["class_names"] == names
    with pytest.raises(ValueError, match="3 class names given for a model with 1039"):
        load_3d_resnets_pth(tmp_path / "km.pth", input_shape=TINY_CLIPS, class_names=["a"] * 3)
    keras.backend.clear_session()


@pytest.mark.slow
def test_3d_resnets_options_not_in_the_weights(tmp_path):
    spec = _spec("resnet18_A", stem_t=3)
    write_pth(tmp_path / "m.pth", random_state_dict(hara_shapes(spec)))
    loaded = load_3d_resnets_pth(
        tmp_path / "m.pth", input_shape=TINY_CLIPS, conv1_t_stride=2, no_max_pool=True
    )
    assert loaded.builder_options["stem_kernel_size"] == [3, 7, 7]
    assert loaded.builder_options["stem_strides"] == [2, 2, 2]
    assert loaded.builder_options["stem_pool"] is False
    assert "stem_pool" not in [layer.name for layer in loaded.model.layers]
    keras.backend.clear_session()


@pytest.mark.slow
def test_3d_resnets_errors(tmp_path):
    spec = _spec("resnet18_A")
    state = random_state_dict(hara_shapes(spec))

    def load(obj, **kwargs):
        path = tmp_path / "x.pth"
        write_pth(path, obj)
        return load_3d_resnets_pth(path, input_shape=TINY_CLIPS, **kwargs)

    extra = dict(state, **{"layer1.0.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"1 entries have no place.*layer1\.0\.extra\.weight"):
        load(extra)
    missing = {k: v for k, v in state.items() if k != "layer2.1.bn2.running_var"}
    with pytest.raises(ValueError, match="'layer2.1.bn2.running_var' is missing"):
        load(missing)
    wrong = dict(state, **{"layer4.1.conv2.weight": np.zeros((64, 64, 3, 3, 1), np.float32)})
    with pytest.raises(
        ValueError, match=r"layer4\.1\.conv2\.weight' has shape \(64, 64, 3, 3, 1\)"
    ):
        load(wrong)
    with pytest.raises(ValueError, match="arch says 'resnet-34'"):
        load({"arch": "resnet-34", "state_dict": state})
    with pytest.raises(
        ValueError, match="pre-activation ResNets are not in the keras_classreg zoo"
    ):
        load({"arch": "preresnet-200", "state_dict": state})
    with pytest.raises(ValueError, match="DenseNet"):
        load({"features.conv0.weight": np.zeros((64, 3, 7, 7, 7), np.float32)})
    flow = dict(state, **{"conv1.weight": np.zeros((8, 2, 7, 7, 7), np.float32)})
    with pytest.raises(ValueError, match="reads 2 input channels"):
        load(flow)
    mixed = collections.OrderedDict(state)
    mixed["module.fc.bias"] = mixed.pop("fc.bias")
    with pytest.raises(ValueError, match="some names start with 'module.'"):
        load(mixed)
    with pytest.raises(ValueError, match="Expected one of \\('2018', '2020'\\)"):
        load(state, release="2019")
    keras.backend.clear_session()


# ---------------------------------------------------------------------------
# Padding and batch-norm semantics, checked by hand (no PyTorch)
# ---------------------------------------------------------------------------
def test_symmetric_padding_by_hand():
    """A 3x3 all-ones kernel, stride 2, on a 4x4 ramp: PyTorch's padding 1 on
    both sides vs Keras "same" (0 before, 1 after)."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4, 1)
    outputs = {}
    for padding in ("symmetric", "same"):
        inputs = keras.Input((1, 4, 4, 1))
        y = conv_bn(inputs, 1, (1, 3, 3), (1, 2, 2), "unit", padding=padding, activation=False)
        model = keras.Model(inputs, y)
        model.get_layer("unit_conv").set_weights([np.ones((1, 3, 3, 1, 1), np.float32)])
        # BN as identity: (x - 0) / sqrt(1 - eps + eps) * 1 + 0
        model.get_layer("unit_bn").set_weights(
            [np.ones(1), np.zeros(1), np.zeros(1), np.ones(1) - 1e-5]
        )
        outputs[padding] = model(x, training=False).numpy()[0, 0, :, :, 0]
        if padding == "symmetric":
            assert [layer.name for layer in model.layers][1] == "unit_pad"
    # windows rows/cols -1..1 and 1..3 (zeros outside): 0+1+4+5, 1+2+3+5+6+7, ...
    np.testing.assert_allclose(outputs["symmetric"], [[10, 24], [51, 90]], rtol=1e-6)
    # Keras "same": windows rows/cols 0..2 and 2..4: 0+1+2+4+5+6+8+9+10, 2+3+6+7+10+11, ...
    np.testing.assert_allclose(outputs["same"], [[45, 39], [66, 50]], rtol=1e-6)


def test_batchnorm_epsilon_by_hand():
    """Zero variance isolates epsilon: y = x / sqrt(eps)."""
    for epsilon in (1e-5, 1e-3):
        inputs = keras.Input((1, 1, 1, 1))
        y = conv_bn(inputs, 1, 1, 1, "unit", activation=False, epsilon=epsilon)
        model = keras.Model(inputs, y)
        model.get_layer("unit_conv").set_weights([np.ones((1, 1, 1, 1, 1), np.float32)])
        model.get_layer("unit_bn").set_weights([np.ones(1), np.zeros(1), np.zeros(1), np.zeros(1)])
        out = model(np.full((1, 1, 1, 1, 1), 2.0, np.float32), training=False).numpy()
        np.testing.assert_allclose(out.ravel(), [2.0 / np.sqrt(epsilon)], rtol=1e-6)


@pytest.mark.slow
def test_symmetric_max_pool_equals_padding_with_minus_infinity():
    """The stem pool pads zeros; after the ReLU that equals PyTorch's -inf."""
    model = models.resnet3d(
        18,
        num_classes=3,
        input_shape=(8, 32, 32, 3),
        class_regularization=False,
        padding="symmetric",
    )
    pool = keras.Model(model.get_layer("stem_pool_pad").input, model.get_layer("stem_pool").output)
    x = np.maximum(np.random.default_rng(0).normal(size=(1, 8, 16, 16, 64)), 0).astype(np.float32)
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
    expected = np.stack(
        [
            np.stack(
                [
                    np.stack(
                        [
                            padded[:, 2 * t : 2 * t + 3, 2 * h : 2 * h + 3, 2 * w : 2 * w + 3].max(
                                axis=(1, 2, 3)
                            )
                            for w in range(8)
                        ],
                        axis=1,
                    )
                    for h in range(8)
                ],
                axis=1,
            )
            for t in range(4)
        ],
        axis=1,
    )
    np.testing.assert_array_equal(pool(x).numpy(), expected)


@pytest.mark.slow
def test_padding_option_keeps_layer_names_and_flops():
    same = models.resnet3d(18, num_classes=3, input_shape=(4, 16, 16, 3), widen_factor=0.125)
    symmetric = models.resnet3d(
        18, num_classes=3, input_shape=(4, 16, 16, 3), widen_factor=0.125, padding="symmetric"
    )

    def weighted(model):
        return [
            (layer.name, [tuple(w.shape) for w in layer.weights])
            for layer in model.layers
            if layer.weights
        ]

    assert weighted(same) == weighted(symmetric)
    added = {layer.name for layer in symmetric.layers} - {layer.name for layer in same.layers}
    assert added == {
        "stem_pad",
        "stem_pool_pad",
        "stage2_block1_1_pad",
        "stage3_block1_1_pad",
        "stage4_block1_1_pad",
    }
    from keras_classreg import flops

    assert flops(symmetric) == flops(same)
    with pytest.raises(ValueError, match="Invalid value for argument `padding`"):
        models.resnet3d(18, num_classes=3, input_shape=(8, 32, 32, 3), padding="torch")
    keras.backend.clear_session()


@pytest.mark.slow
def test_converted_model_saves_and_reloads(tmp_path):
    state = random_state_dict(hara_shapes(_spec("resnet18_A")))
    write_pth(tmp_path / "m.pth", state)
    loaded = load_3d_resnets_pth(tmp_path / "m.pth", input_shape=(8, 32, 32, 3))
    x = np.random.default_rng(0).normal(size=(2, 8, 32, 32, 3)).astype(np.float32)
    before = loaded.model.predict(x, verbose=0)
    loaded.model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), before)
    rebuilt = models.get(
        loaded.builder,
        num_classes=10,
        input_shape=(8, 32, 32, 3),
        class_regularization=False,
        **loaded.builder_options,
    )
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in again.layers]
    keras.backend.clear_session()


# ---------------------------------------------------------------------------
# 3D-ResNets against a PyTorch reference written from the published facts
# ---------------------------------------------------------------------------
def _torch_reference(spec, conv1_t_stride=1, no_max_pool=False):
    """Hara et al.'s ResNet / Wide ResNet / ResNeXt as their papers and
    `models/*.py` describe them: conv1 (t,7,7) stride (t_stride,2,2) padding
    (t//2,3,3), bn1, ReLU, max pool 3 stride 2 padding 1, layer1-4 (stride
    2 from layer2 on, in the first block's 3x3x3 convolution), global
    average, fc. Shortcut B: 1x1x1 conv (stride) + BN as `downsample`;
    A: 1x1x1 average pool with the stride, zero channels appended. BN eps
    1e-5 (PyTorch's default)."""
    nn, functional = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            expansion = spec["expansion"]
            self.out, self.stride = planes * expansion, stride
            self.basic = spec["block"] == "basic"
            if self.basic:
                self.conv1 = nn.Conv3d(in_planes, planes, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm3d(planes)
                self.conv2 = nn.Conv3d(planes, planes, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm3d(planes)
            else:
                groups = spec["cardinality"] if spec["family"] == "resnext" else 1
                mid = groups * (planes // 32) if spec["family"] == "resnext" else planes
                self.conv1 = nn.Conv3d(in_planes, mid, 1, bias=False)
                self.bn1 = nn.BatchNorm3d(mid)
                self.conv2 = nn.Conv3d(mid, mid, 3, stride, 1, groups=groups, bias=False)
                self.bn2 = nn.BatchNorm3d(mid)
                self.conv3 = nn.Conv3d(mid, self.out, 1, bias=False)
                self.bn3 = nn.BatchNorm3d(self.out)
            self.shortcut = None
            if stride != 1 or in_planes != self.out:
                self.shortcut = spec["shortcut"]
                if self.shortcut == "B":
                    self.downsample = nn.Sequential(
                        nn.Conv3d(in_planes, self.out, 1, stride, bias=False),
                        nn.BatchNorm3d(self.out),
                    )

        def forward(self, x):
            y = functional.relu(self.bn1(self.conv1(x)))
            if self.basic:
                y = self.bn2(self.conv2(y))
            else:
                y = self.bn3(self.conv3(functional.relu(self.bn2(self.conv2(y)))))
            if self.shortcut == "B":
                residual = self.downsample(x)
            elif self.shortcut == "A":
                residual = functional.avg_pool3d(x, kernel_size=1, stride=self.stride)
                zeros = residual.new_zeros(
                    residual.shape[0], self.out - residual.shape[1], *residual.shape[2:]
                )
                residual = torch.cat([residual, zeros], dim=1)
            else:
                residual = x
            return functional.relu(y + residual)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            t = spec["stem_t"]
            self.conv1 = nn.Conv3d(
                3,
                spec["stem_filters"],
                (t, 7, 7),
                (conv1_t_stride, 2, 2),
                (t // 2, 3, 3),
                bias=False,
            )
            self.bn1 = nn.BatchNorm3d(spec["stem_filters"])
            in_planes = spec["stem_filters"]
            for stage, (count, planes) in enumerate(zip(spec["blocks"], spec["planes"]), 1):
                blocks = []
                for index in range(count):
                    blocks.append(Block(in_planes, planes, 2 if stage > 1 and index == 0 else 1))
                    in_planes = planes * spec["expansion"]
                setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            self.fc = nn.Linear(in_planes, spec["num_classes"])

        def forward(self, x):
            x = functional.relu(self.bn1(self.conv1(x)))
            if not no_max_pool:
                x = functional.max_pool3d(x, kernel_size=3, stride=2, padding=1)
            for stage in range(1, 5):
                x = getattr(self, f"layer{stage}")(x)
            return self.fc(x.mean(dim=(2, 3, 4)))

    return ResNet().eval()


@pytest.mark.slow
@needs_torch
@pytest.mark.parametrize("key", _params(ARCHITECTURES, SLOW_AGAINST_TORCH))
def test_3d_resnets_match_pytorch(tmp_path, key):
    spec = _spec(key)
    reference = _torch_reference(spec)
    # the test's torch-free name/shape generator agrees with PyTorch's naming
    assert {k: tuple(v.shape) for k, v in reference.state_dict().items()} == dict(hara_shapes(spec))
    state = random_state_dict(hara_shapes(spec), seed=1)
    reference.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    arch = f"{spec['family']}-{spec['depth']}"
    x = np.random.default_rng(2).normal(size=(2, *TINY_CLIPS)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.transpose(0, 4, 1, 2, 3))).numpy()
    for release, zip_format in (("2018", False), ("2020", True)):
        path = tmp_path / f"{key}_{release}.pth"
        saved = reference.state_dict()
        if release == "2018":
            saved = collections.OrderedDict(("module." + k, v) for k, v in saved.items())
        checkpoint = {"epoch": 1, "arch": arch, "state_dict": saved}
        if release == "2020":
            checkpoint["scheduler"] = {"last_epoch": 1}
        torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
        loaded = load_3d_resnets_pth(path, input_shape=TINY_CLIPS, classifier_activation=None)
        assert loaded.source["release"] == release
        logits = loaded.model(x, training=False).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
        # and the Keras "same" padding is measurably another function
        if release == "2018" and key == "resnet18_A":
            options = dict(loaded.builder_options, padding="same")
            same = models.get(
                loaded.builder,
                num_classes=10,
                input_shape=TINY_CLIPS,
                class_regularization=False,
                classifier_activation=None,
                **options,
            )
            same.set_weights(loaded.model.get_weights())
            assert np.abs(same(x, training=False).numpy() - expected).max() > 1e-2
    keras.backend.clear_session()


@pytest.mark.slow
@needs_torch
def test_3d_resnets_stem_options_match_pytorch(tmp_path):
    spec = _spec("resnet18_A", stem_t=3)
    reference = _torch_reference(spec, conv1_t_stride=2, no_max_pool=True)
    state = random_state_dict(hara_shapes(spec), seed=3)
    reference.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    torch.save({"arch": "resnet-18", "state_dict": reference.state_dict()}, tmp_path / "m.pth")
    loaded = load_3d_resnets_pth(
        tmp_path / "m.pth",
        input_shape=TINY_CLIPS,
        conv1_t_stride=2,
        no_max_pool=True,
        classifier_activation=None,
    )
    x = np.random.default_rng(4).normal(size=(1, *TINY_CLIPS)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.transpose(0, 4, 1, 2, 3))).numpy()
    np.testing.assert_allclose(loaded.model(x, training=False).numpy(), expected, atol=1e-4, rtol=0)
    keras.backend.clear_session()


# ---------------------------------------------------------------------------
# DeepMind I3D: the variables of their published index files
# ---------------------------------------------------------------------------
# end point: Branch_0 1x1, Branch_1 1x1 -> 3x3, Branch_2 1x1 -> 3x3, Branch_3 pool -> 1x1
I3D_MIXED = [
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
]


def _published_i3d_variables(name, tmp_path):
    """`{variable: shape}` of a published checkpoint, from its index file."""
    folder = tmp_path / f"index_{name}"
    folder.mkdir()
    shutil.copy(os.path.join(I3D_INDEXES, name, "model.ckpt.index"), folder)
    (folder / "model.ckpt.data-00000-of-00001").touch()  # shapes come from the index
    return tf.train.load_checkpoint(str(folder / "model.ckpt")).get_variable_to_shape_map()


def _write_i3d_checkpoint(shapes, prefix, seed=0):
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in sorted(shapes.items()):
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("moving_mean", "beta", "/b")):
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, np.sqrt(2.0 / max(1, np.prod(shape[:-1]))), shape)
        values[name] = value.astype(np.float32)
    names = sorted(values)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(values[n]) for n in names],
    )
    return values


def _i3d_reference_logits(values, scope, clips):
    """kinetics-i3d's `InceptionI3d` up to 'Logits', from `i3d.py`'s facts."""

    def unit(x, name, stride=(1, 1, 1)):
        prefix = scope + name
        x = tf.nn.conv3d(x, values[prefix + "/conv_3d/w"], [1, *stride, 1], "SAME")
        channels = x.shape[-1]

        def stat(key):
            return tf.reshape(values[f"{prefix}/batch_norm/{key}"], [channels])

        x = tf.nn.batch_normalization(
            x,
            stat("moving_mean"),
            stat("moving_variance"),
            offset=stat("beta"),
            scale=None,
            variance_epsilon=1e-3,
        )
        return tf.nn.relu(x)

    x = unit(clips, "Conv3d_1a_7x7", (2, 2, 2))
    x = tf.nn.max_pool3d(x, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1], "SAME")
    x = unit(unit(x, "Conv3d_2b_1x1"), "Conv3d_2c_3x3")
    x = tf.nn.max_pool3d(x, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1], "SAME")
    for name, _ in I3D_MIXED:
        if name == "Mixed_4b":
            x = tf.nn.max_pool3d(x, [1, 3, 3, 3, 1], [1, 2, 2, 2, 1], "SAME")
        if name == "Mixed_5b":
            x = tf.nn.max_pool3d(x, [1, 2, 2, 2, 1], [1, 2, 2, 2, 1], "SAME")
        branch_2_second = "Conv3d_0a_3x3" if name == "Mixed_5b" else "Conv3d_0b_3x3"
        x = tf.concat(
            [
                unit(x, f"{name}/Branch_0/Conv3d_0a_1x1"),
                unit(unit(x, f"{name}/Branch_1/Conv3d_0a_1x1"), f"{name}/Branch_1/Conv3d_0b_3x3"),
                unit(
                    unit(x, f"{name}/Branch_2/Conv3d_0a_1x1"), f"{name}/Branch_2/{branch_2_second}"
                ),
                unit(
                    tf.nn.max_pool3d(x, [1, 3, 3, 3, 1], [1] * 5, "SAME"),
                    f"{name}/Branch_3/Conv3d_0b_1x1",
                ),
            ],
            axis=4,
        )
    x = tf.nn.avg_pool3d(x, [1, 2, 7, 7, 1], [1] * 5, "VALID")
    logits = tf.nn.conv3d(x, values[scope + "Logits/Conv3d_0c_1x1/conv_3d/w"], [1] * 5, "VALID")
    logits = tf.squeeze(logits + values[scope + "Logits/Conv3d_0c_1x1/conv_3d/b"], [2, 3])
    return tf.reduce_mean(logits, axis=1).numpy()


def test_i3d_reference_covers_the_published_variables(tmp_path):
    """The reference above reads every variable of the published index."""
    shapes = _published_i3d_variables("rgb_imagenet", tmp_path)
    read = set()
    for name, _ in I3D_MIXED:
        for branch, units in (
            ("Branch_0", ["Conv3d_0a_1x1"]),
            ("Branch_1", ["Conv3d_0a_1x1", "Conv3d_0b_3x3"]),
            (
                "Branch_2",
                ["Conv3d_0a_1x1", "Conv3d_0a_3x3" if name == "Mixed_5b" else "Conv3d_0b_3x3"],
            ),
            ("Branch_3", ["Conv3d_0b_1x1"]),
        ):
            read.update(f"{name}/{branch}/{unit}" for unit in units)
    read.update(["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"])
    expected = {
        f"RGB/inception_i3d/{unit}/{leaf}"
        for unit in read
        for leaf in (
            "conv_3d/w",
            "batch_norm/beta",
            "batch_norm/moving_mean",
            "batch_norm/moving_variance",
        )
    }
    expected |= {
        "RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/w",
        "RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b",
    }
    assert set(shapes) == expected
    for name, (b0, _b1a, _b1b, _b2a, _b2b, b3) in I3D_MIXED:
        assert shapes[f"RGB/inception_i3d/{name}/Branch_0/Conv3d_0a_1x1/conv_3d/w"][-1] == b0
        assert shapes[f"RGB/inception_i3d/{name}/Branch_3/Conv3d_0b_1x1/conv_3d/w"][-1] == b3


@pytest.mark.parametrize(
    "name, scope, classes, momentum",
    [
        ("rgb_imagenet", "RGB/inception_i3d/", 400, 0),
        ("rgb_scratch_kin600", "", 600, 116),
    ],
)
@pytest.mark.slow
def test_i3d_every_published_variable_used_once(tmp_path, name, scope, classes, momentum):
    shapes = _published_i3d_variables(name, tmp_path)
    prefix = tmp_path / name / "model.ckpt"
    values = _write_i3d_checkpoint(shapes, prefix)
    loaded = load_kinetics_i3d(prefix, input_shape=(16, 224, 224, 3))
    report = loaded.source["weights"]
    assert report["entries"] == len(shapes) and report["loaded"] == len(shapes) - momentum
    assert all(key.endswith("/Momentum") for key in report["ignored"])
    assert loaded.source["scope"] == scope
    model = loaded.model
    np.testing.assert_array_equal(
        model.get_layer("Mixed_5b_Branch_2_Conv3d_0b_3x3_conv").kernel.numpy(),
        values[scope + "Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"],
    )
    bn = model.get_layer("Mixed_4c_Branch_1_Conv3d_0b_3x3_bn")
    np.testing.assert_array_equal(
        bn.moving_mean.numpy(),
        values[scope + "Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/moving_mean"].reshape(-1),
    )
    np.testing.assert_array_equal(bn.gamma.numpy(), np.ones(224))  # Sonnet: no scale
    assert all(
        layer.epsilon == 1e-3
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    assert model.output_shape == (None, classes)
    assert loaded.clip_format["class_names"] == kinetics_class_names(classes)
    assert (loaded.clip_format["mean"], loaded.clip_format["std"]) == ([0.5] * 3, [0.5] * 3)
    assert (loaded.clip_format["crop_size"], loaded.clip_format["short_side"]) == (224, 256)
    keras.backend.clear_session()


@pytest.mark.slow
def test_i3d_matches_reference(tmp_path):
    shapes = _published_i3d_variables("rgb_imagenet", tmp_path)
    prefix = tmp_path / "rgb_imagenet" / "model.ckpt"
    values = _write_i3d_checkpoint(shapes, prefix, seed=5)
    loaded = load_kinetics_i3d(
        prefix.parent, input_shape=(16, 224, 224, 3), classifier_activation=None
    )
    clips = np.random.default_rng(6).uniform(-1, 1, (1, 16, 224, 224, 3)).astype(np.float32)
    expected = _i3d_reference_logits(values, "RGB/inception_i3d/", clips)
    np.testing.assert_allclose(
        loaded.model(clips, training=False).numpy(), expected, atol=1e-4, rtol=0
    )
    keras.backend.clear_session()


@pytest.mark.slow
def test_i3d_errors(tmp_path):
    flow = _published_i3d_variables("flow_imagenet", tmp_path)
    stem = "Flow/inception_i3d/Conv3d_1a_7x7/conv_3d/w"
    assert flow[stem][3] == 2
    _write_i3d_checkpoint({stem: flow[stem]}, tmp_path / "flow" / "model.ckpt")
    with pytest.raises(ValueError, match="flow checkpoint .* only the RGB stream"):
        load_kinetics_i3d(tmp_path / "flow" / "model.ckpt")
    with pytest.raises(ValueError, match="not a readable TensorFlow checkpoint"):
        load_kinetics_i3d(tmp_path / "nothing" / "model.ckpt")
    shapes = _published_i3d_variables("rgb_imagenet", tmp_path)
    extra = dict(shapes, **{"RGB/inception_i3d/Mixed_6a/Branch_0/Conv3d_0a_1x1/conv_3d/w": [1]})
    _write_i3d_checkpoint(extra, tmp_path / "extra" / "model.ckpt")
    with pytest.raises(ValueError, match="1 entries have no place.*Mixed_6a"):
        load_kinetics_i3d(tmp_path / "extra" / "model.ckpt", input_shape=(16, 64, 64, 3))
    missing = {k: v for k, v in shapes.items() if "Mixed_4d/Branch_3" not in k}
    _write_i3d_checkpoint(missing, tmp_path / "missing" / "model.ckpt")
    with pytest.raises(ValueError, match="Mixed_4d/Branch_3/Conv3d_0b_1x1/conv_3d/w' is missing"):
        load_kinetics_i3d(tmp_path / "missing" / "model.ckpt", input_shape=(16, 64, 64, 3))
    keras.backend.clear_session()


def test_kinetics_class_names():
    for count in (400, 600, 700):
        names = kinetics_class_names(count)
        assert len(names) == len(set(names)) == count
        assert names == sorted(names)  # byte order, as their CSV-derived indices
    assert "passing American football (in game)" in kinetics_class_names(700)
    with pytest.raises(ValueError, match="Expected one of \\(400, 600, 700\\)"):
        kinetics_class_names(101)
