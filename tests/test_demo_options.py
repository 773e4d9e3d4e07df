"""The demo's model width: a quarter of the published widths by default for
builders that have a `widen_factor`, the model's own widths for those that
do not, and a clear error (before any work) for a width they cannot take."""

import pytest
from test_train_support import TINY_SPEC

from demo import walkthrough as demo_module
from demo.walkthrough import DEFAULT_WIDEN_FACTOR, Demo, _model_options


def test_default_width_applies_where_the_builder_has_one(tmp_path):
    assert _model_options(Demo(out=str(tmp_path))) == {"widen_factor": DEFAULT_WIDEN_FACTOR}
    assert _model_options(Demo(out=str(tmp_path), widen_factor=1.0)) == {"widen_factor": 1.0}
    # i3d and the tests' tiny builder have no widen_factor: their own widths
    assert _model_options(Demo(out=str(tmp_path), model="i3d")) == {}
    assert _model_options(Demo(out=str(tmp_path), model=TINY_SPEC)) == {}


def test_a_width_for_a_builder_without_one_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match="'i3d' has no widen_factor"):
        _model_options(Demo(out=str(tmp_path), model="i3d", widen_factor=0.5))
    out = tmp_path / "demo_out"
    assert demo_module.main(["--out", str(out), "--model", "i3d", "--widen-factor", "0.5"]) == 2
    assert "has no widen_factor argument" in capsys.readouterr().err
    assert not out.exists()  # nothing synthesized


def test_a_non_positive_width_is_a_usage_error(tmp_path, capsys):
    assert demo_module.main(["--out", str(tmp_path / "o"), "--widen-factor", "0"]) == 2
    assert "--widen-factor must be > 0" in capsys.readouterr().err
