"""The classifier stage's labels (`hf_bpt3c.training.scripts`, as run_classification.py reads them): single-label
classes, multi-label names (one separated column or 0/1 columns) and regression values, read from the data; bad
arguments and bad values raise errors naming the argument or the row."""

from __future__ import annotations

import datasets
import pytest

from hf_bpt3c.training.scripts import ClassifierArguments, fit_targets, label_columns


def arguments(**overrides) -> ClassifierArguments:
    return ClassifierArguments(model_name_or_path="lm", **overrides)


def data(**columns) -> datasets.Dataset:
    return datasets.Dataset.from_dict(columns)


def test_single_label_classes_are_sorted_names():
    targets = fit_targets(arguments(), data(label=["pos", "neg", "pos"]))
    assert targets.names == ("neg", "pos")
    assert targets.encode(data(label=["pos", "neg"]), "validation") == [1, 0]


def test_multi_label_from_a_separated_column_and_from_indicator_columns():
    args = arguments(problem_type="multi_label_classification", label_column="tags", label_delimiter=";")
    targets = fit_targets(args, data(tags=["b;a", "c", " a ; c "]))
    assert targets.names == ("a", "b", "c")
    assert targets.encode(data(tags=["c;b"]), "validation") == [[0.0, 1.0, 1.0]]
    args = arguments(problem_type="multi_label_classification", label_column="x, y")
    targets = fit_targets(args, data(x=[1, 0], y=["true", "0"]))
    assert targets.names == ("x", "y")
    assert targets.encode(data(x=[1, 0], y=["true", "0"]), "train") == [[1.0, 1.0], [0.0, 0.0]]


def test_regression_values():
    targets = fit_targets(arguments(problem_type="regression", label_column="score"), data(score=[0.5, 2, -1]))
    assert targets.names == ("score",)
    assert targets.encode(data(score=[0.5, 2, -1]), "train") == [0.5, 2.0, -1.0]
    assert targets.encode(data(score=["0.5", " 3 "]), "validation") == [0.5, 3.0]  # a CSV column read as text


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(problem_type="multi_class"), "--problem_type must be one of"),
        (dict(label_column="a,b"), "only multi_label_classification takes several"),
        (dict(label_column="a,,b", problem_type="multi_label_classification"), "distinct columns"),
        (dict(problem_type="regression", label_delimiter=";"), "--label_delimiter is for"),
        (dict(problem_type="multi_label_classification"), "needs --label_delimiter or several 0/1"),
        (dict(problem_type="multi_label_classification", label_column="a,b", label_delimiter=";"), "splits one"),
        (dict(problem_type="multi_label_classification", label_delimiter=" "), "visible separator"),
    ],
)
def test_bad_label_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        label_columns(arguments(**overrides))


def test_bad_label_values_name_the_row():
    single = fit_targets(arguments(), data(label=["pos", "neg"]))
    with pytest.raises(ValueError, match=r"validation row 1: label 'meh' in column 'label' is not one of the "):
        single.encode(data(label=["pos", "meh"]), "validation")
    with pytest.raises(ValueError, match=r"train row 1: empty label in column 'label'"):
        fit_targets(arguments(), data(label=["pos", None, "neg"]))
    with pytest.raises(ValueError, match=r"test row 0: empty label in column 'label'"):
        single.encode(data(label=["  "]), "test")
    with pytest.raises(ValueError, match=r"has 1 class\(es\) in 'label'"):
        fit_targets(arguments(), data(label=["pos", "pos"]))
    with pytest.raises(ValueError, match=r"has no column 'label'"):
        single.encode(data(text=["good"]), "validation")

    args = arguments(problem_type="multi_label_classification", label_column="tags", label_delimiter=";")
    tags = fit_targets(args, data(tags=["a;b", "b"]))
    with pytest.raises(ValueError, match=r"validation row 1: label 'z' in column 'tags'"):
        tags.encode(data(tags=["a", "b;z"]), "validation")
    with pytest.raises(ValueError, match=r"train row 1: empty label between the ';' separators"):
        fit_targets(args, data(tags=["a", "a;;b"]))
    columns = fit_targets(arguments(problem_type="multi_label_classification", label_column="x,y"), data(x=[1], y=[0]))
    with pytest.raises(ValueError, match=r"validation row 1: column 'y' must hold 0 or 1"):
        columns.encode(data(x=[1, 0], y=[0, 2]), "validation")

    regression = arguments(problem_type="regression", label_column="score")
    for bad in ("high", "nan", "inf", None):
        with pytest.raises(ValueError, match=r"train row 1: (column 'score' must hold a finite number|empty label)"):
            fit_targets(regression, data(score=["1.5", bad])).encode(data(score=["1.5", bad]), "train")
