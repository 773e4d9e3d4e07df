"""Reading TF Serving's text-format config files (`models.config`,
`--ssl_config_file`, `--monitoring_config_file`) with the errors
`tensorflow_model_server` gives."""

from google.protobuf import text_format


def read_text_proto(path, message, what, hint=""):
    """Parses the text-format file `path` into `message` (a new, empty
    message of the file's type) and returns it.

    Raises:
        ValueError: "Cannot read the WHAT file PATH: ..." or "Error parsing
            text-format FULL.NAME: PATH:ERROR" (+ `hint`).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ValueError(f"Cannot read the {what} file {path}: {error}") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ValueError(
            f"Error parsing text-format {message.DESCRIPTOR.full_name}: {path}:{error}{hint}"
        ) from None
    return message
