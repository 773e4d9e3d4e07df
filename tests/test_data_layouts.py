"""Dataset layout parsers on small fixture files, including malformed ones."""

import os
import pathlib

import pytest

from training.data.layouts import (
    AnnotationError,
    MissingVideoError,
    load_folder,
    load_hmdb51,
    load_kinetics,
    load_ucf101,
)


def touch(path):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return str(path)


# --------------------------------------------------------------------------
# UCF-101
# --------------------------------------------------------------------------
@pytest.fixture
def ucf(tmp_path):
    root, notes = tmp_path / "UCF-101", tmp_path / "lists"
    notes.mkdir()
    (notes / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Archery\r\n3 HandstandPushups\r\n")
    videos = {
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi": 1,
        "Archery/v_Archery_g08_c01.avi": 2,
        "HandstandPushups/v_HandStandPushups_g08_c01.avi": 3,
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi": 1,
        "Archery/v_Archery_g01_c01.avi": 2,
    }
    for name in videos:
        touch(root / name)
    (notes / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "Archery/v_Archery_g08_c01.avi 2\n"
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\n"
    )
    (notes / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n\nArchery/v_Archery_g01_c01.avi\n"
    )
    return root, notes


def test_ucf101_items_labels_and_subsets(ucf):
    root, notes = ucf
    dataset = load_ucf101(root, notes, split=1)
    assert dataset.class_names == ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    got = [(os.path.relpath(i.path, root), i.label, i.class_name, i.subset) for i in dataset.items]
    assert got == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0, "ApplyEyeMakeup", "train"),
        ("Archery/v_Archery_g08_c01.avi", 1, "Archery", "train"),
        ("HandstandPushups/v_HandStandPushups_g08_c01.avi", 2, "HandstandPushups", "train"),
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0, "ApplyEyeMakeup", "test"),
        ("Archery/v_Archery_g01_c01.avi", 1, "Archery", "test"),
    ]
    assert dataset.subsets() == ["train", "test"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("Archery/v_Archery_g08_c01.avi", "expected '<ClassName>/<video> <index>'"),
        ("Archery/v_Archery_g08_c01.avi two", "must be an integer"),
        ("Archery/v_Archery_g08_c01.avi 1", "does not match folder 'Archery'"),
        ("Boxing/v_Boxing_g08_c01.avi 2", "unknown class 'Boxing'"),
        ("v_Archery_g08_c01.avi 2", "expected a path '<ClassName>/<video>'"),
    ],
)
def test_ucf101_malformed_trainlist_names_file_and_line(ucf, line, message):
    root, notes = ucf
    (notes / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n" + line + "\n"
    )
    with pytest.raises(AnnotationError, match=message) as error:
        load_ucf101(root, notes)
    assert "trainlist01.txt, line 2" in str(error.value)
    assert error.value.line == 2


def test_ucf101_bad_class_index_and_missing_video(ucf):
    root, notes = ucf
    (notes / "classInd.txt").write_text("1 ApplyEyeMakeup\n3 Archery\n")
    with pytest.raises(AnnotationError, match=r"classInd.txt, line 2: .*expected 2, got 3"):
        load_ucf101(root, notes)
    (notes / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n3 HandstandPushups\n")
    os.remove(root / "Archery/v_Archery_g01_c01.avi")
    with pytest.raises(
        MissingVideoError,
        match=r"v_Archery_g01_c01.avi: no such video "
        r"file \(listed in .*testlist01.txt, line 3\)",
    ):
        load_ucf101(root, notes)
    dataset = load_ucf101(root, notes, missing="skip")
    assert len(dataset.items) == 4
    assert [m["path"].endswith("v_Archery_g01_c01.avi") for m in dataset.missing] == [True]
    assert dataset.missing[0]["subset"] == "test"


def test_ucf101_argument_errors(ucf, tmp_path):
    root, notes = ucf
    with pytest.raises(ValueError, match="Expected one of 1, 2, 3. Received: split=4"):
        load_ucf101(root, notes, split=4)
    with pytest.raises(FileNotFoundError, match="trainlist02.txt: no such annotation file"):
        load_ucf101(root, notes, split=2)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_ucf101(tmp_path / "nope", notes)


# --------------------------------------------------------------------------
# HMDB-51
# --------------------------------------------------------------------------
@pytest.fixture
def hmdb(tmp_path):
    root, splits = tmp_path / "hmdb51", tmp_path / "splits"
    splits.mkdir()
    for name in (
        "brush_hair/a.avi",
        "brush_hair/b.avi",
        "brush_hair/c.avi",
        "cartwheel/d.avi",
        "cartwheel/e.avi",
    ):
        touch(root / name)
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "cartwheel_test_split1.txt").write_text("d.avi 2\ne.avi 1\n")
    (splits / "cartwheel_test_split2.txt").write_text("d.avi 1\ne.avi 1\n")
    return root, splits


def test_hmdb51_ids_1_train_2_test_0_unused(hmdb):
    root, splits = hmdb
    dataset = load_hmdb51(root, splits, split=1)
    assert dataset.class_names == ["brush_hair", "cartwheel"]
    got = [(pathlib.Path(i.path).name, i.label, i.subset) for i in dataset.items]
    assert got == [
        ("a.avi", 0, "train"),
        ("b.avi", 0, "test"),
        ("d.avi", 1, "test"),
        ("e.avi", 1, "train"),
    ]


def test_hmdb51_malformed_and_missing(hmdb):
    root, splits = hmdb
    (splits / "cartwheel_test_split1.txt").write_text("d.avi 2\ne.avi 3\n")
    with pytest.raises(
        AnnotationError,
        match=r"cartwheel_test_split1.txt, line 2: "
        r"expected '<video file> <0\|1\|2>'",
    ):
        load_hmdb51(root, splits)
    (splits / "cartwheel_test_split1.txt").write_text("d.avi 2\nf.avi 1\n")
    with pytest.raises(MissingVideoError, match=r"f.avi: no such video file"):
        load_hmdb51(root, splits)
    with pytest.raises(FileNotFoundError, match="test_split3.txt' files found"):
        load_hmdb51(root, splits, split=3)


# --------------------------------------------------------------------------
# Kinetics
# --------------------------------------------------------------------------
def test_kinetics_csv_file_names_and_folder_arrangements(tmp_path):
    root = tmp_path / "k400"
    touch(root / "abseiling" / "aaa_000010_000020.mp4")  # root/label
    touch(root / "val" / "air drumming" / "bbb_000000_000010.mp4")  # root/split/label
    touch(root / "air_drumming" / "ccc_000005_000015.mp4")  # spaces -> _
    touch(root / "ddd_000001_000011.mp4")  # flat
    csv_path = tmp_path / "k.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,aaa,10,20,train,0\n"
        "air drumming,bbb,0,10,validate,0\n"
        "air drumming,ccc,5,15,train,0\n"
        "abseiling,ddd,1,11,test,0\n"
    )
    dataset = load_kinetics(root, csv_path)
    assert dataset.class_names == ["abseiling", "air drumming"]
    got = [(os.path.relpath(i.path, root), i.label, i.subset) for i in dataset.items]
    assert got == [
        ("abseiling/aaa_000010_000020.mp4", 0, "train"),
        ("val/air drumming/bbb_000000_000010.mp4", 1, "val"),
        ("air_drumming/ccc_000005_000015.mp4", 1, "train"),
        ("ddd_000001_000011.mp4", 0, "test"),
    ]


@pytest.mark.parametrize(
    "rows, message",
    [
        ("label,youtube_id,time_start,split\n", r"line 1: header lacks column\(s\) time_end"),
        (
            "label,youtube_id,time_start,time_end,split\nabseiling,aaa,10,train\n",
            r"line 2: expected 5 fields",
        ),
        (
            "label,youtube_id,time_start,time_end,split\nabseiling,aaa,ten,20,train\n",
            r"line 2: column 'time_start' must be a number",
        ),
        (
            "label,youtube_id,time_start,time_end,split\nabseiling,aaa,20,10,train\n",
            r"line 2: time_end \(10\) must be after time_start \(20\)",
        ),
        (
            "label,youtube_id,time_start,time_end,split\n\nabseiling,aaa,10,20,holdout\n",
            r"line 3: unknown split 'holdout'",
        ),
        (
            "label,youtube_id,time_start,time_end,split\nbaking,aaa,10,20,train\n",
            r"line 2: unknown class 'baking'",
        ),
    ],
)
def test_kinetics_malformed_rows(tmp_path, rows, message):
    touch(tmp_path / "abseiling" / "aaa_000010_000020.mp4")
    (tmp_path / "k.csv").write_text(rows)
    with pytest.raises(AnnotationError, match=message):
        load_kinetics(tmp_path, tmp_path / "k.csv", class_names=["abseiling"])


def test_kinetics_missing_clip(tmp_path):
    (tmp_path / "k.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,zzz,0,10,train\n"
    )
    with pytest.raises(
        MissingVideoError,
        match=r"zzz_000000_000010.mp4: no such video "
        r"file \(listed in .*k.csv, line 2\)",
    ):
        load_kinetics(tmp_path, tmp_path / "k.csv")
    dataset = load_kinetics(tmp_path, tmp_path / "k.csv", missing="skip")
    assert dataset.items == [] and len(dataset.missing) == 1


# --------------------------------------------------------------------------
# Folder
# --------------------------------------------------------------------------
def test_folder_split_is_per_class_seeded_and_complete(tmp_path):
    for c in ("b_walk", "a_run"):
        for i in range(10):
            touch(tmp_path / c / f"{i}.MP4")
    touch(tmp_path / "a_run" / "notes.txt")
    touch(tmp_path / "a_run" / "sub" / "deep.avi")
    dataset = load_folder(tmp_path, test_fraction=0.3, seed=1)
    assert dataset.class_names == ["a_run", "b_walk"]
    assert len(dataset) == 21  # the .txt is not a video; sub-folders are searched
    for label, name in enumerate(dataset.class_names):
        items = [i for i in dataset.items if i.label == label]
        assert all(i.class_name == name for i in items)
        tests = [i for i in items if i.subset == "test"]
        assert len(tests) == round(len(items) * 0.3)
    again = load_folder(tmp_path, test_fraction=0.3, seed=1)
    other = load_folder(tmp_path, test_fraction=0.3, seed=2)
    assert again.items == dataset.items
    assert [i.subset for i in other.items] != [i.subset for i in dataset.items]
    assert {i.subset for i in load_folder(tmp_path, test_fraction=0.0).items} == {"train"}


def test_folder_presplit_train_test_and_errors(tmp_path):
    touch(tmp_path / "train" / "jump" / "a.mp4")
    touch(tmp_path / "train" / "run" / "b.mp4")
    touch(tmp_path / "test" / "run" / "c.mp4")
    dataset = load_folder(tmp_path)
    assert dataset.class_names == ["jump", "run"]
    assert [(pathlib.Path(i.path).name, i.label, i.subset) for i in dataset.items] == [
        ("a.mp4", 0, "train"),
        ("b.mp4", 1, "train"),
        ("c.mp4", 1, "test"),
    ]
    with pytest.raises(
        ValueError,
        match=r"Expected a float in \[0, 1\). Received: "
        r"test_fraction=1.5",
    ):
        load_folder(tmp_path, test_fraction=1.5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no class folders found"):
        load_folder(tmp_path / "empty")
