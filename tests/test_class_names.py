"""`--class-names`: one reader, one rule, for export, explain and convert
(`training/class_names.py`)."""

import pytest

from training.class_names import read_class_names


def test_a_file_of_lines_a_json_list_or_names_separated_by_commas(tmp_path):
    lines = tmp_path / "classes.txt"
    lines.write_text("cat\n dog \n\n\n")  # blank lines at the end are ignored
    listed = tmp_path / "classes.json"
    listed.write_text('["cat", "dog"]')
    assert read_class_names(lines) == ["cat", "dog"]
    assert read_class_names(str(listed)) == ["cat", "dog"]
    assert read_class_names("cat, dog") == ["cat", "dog"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("cat\n\ndog\n", "classes.txt, line 2: empty class name"),
        ("", "classes.txt: no class names in it"),
        ("cat\ncat\n", "Received duplicates: ['cat']"),
    ],
)
def test_a_bad_file_names_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "classes.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_class_names(path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a,,b", "name 2 is empty"),
        ("a,b,", "name 3 is empty"),
        ("a, a", "Received duplicates"),
        ("clases.txt", "clases.txt: no such file"),  # a typo is not a class name
    ],
)
def test_a_bad_list_or_a_missing_file_is_refused(value, message):
    with pytest.raises(ValueError, match=message):
        read_class_names(value)


def test_a_json_file_that_is_not_a_list_of_strings(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text('{"cat": 0}')
    with pytest.raises(ValueError, match="expected a JSON list of class-name strings"):
        read_class_names(path)


def test_export_and_explain_read_the_value_the_same_way():
    from training import explain
    from training.export import from_run

    assert explain.read_class_names is from_run.read_class_names is read_class_names
