"""The Kinetics class lists shipped as package data (see data/SOURCES.md)."""

import importlib.resources

KINETICS_CLASS_COUNTS = (400, 600, 700)


def kinetics_class_names(num_classes):
    """The Kinetics-400/600/700 class names in class-index order.

    Args:
        num_classes: 400, 600 or 700.

    Returns:
        a list of `num_classes` names.

    Example:

    >>> names = kinetics_class_names(400)
    >>> len(names), names[0], names[-1]
    (400, 'abseiling', 'zumba')
    """
    if num_classes not in KINETICS_CLASS_COUNTS:
        raise ValueError(
            "Invalid value for argument `num_classes`. Expected one of "
            f"{KINETICS_CLASS_COUNTS} (Kinetics-400/600/700). "
            f"Received: num_classes={num_classes!r}"
        )
    text = (
        importlib.resources.files("keras_classreg.pretrained")
        / "data"
        / f"kinetics{num_classes}.txt"
    ).read_text(encoding="utf-8")
    names = text.splitlines()
    if len(names) != num_classes:
        raise RuntimeError(
            f"The packaged Kinetics-{num_classes} class list has {len(names)} "
            "lines; the installation is damaged."
        )
    return names
