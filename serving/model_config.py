"""The served models' configuration, as TF Serving's `ModelServerConfig`
(`--model_config_file`, or `--model_name` / `--model_base_path`), and the
version policy that picks a model's aspired versions (TF Serving's
`model_servers/server_core.cc` config checks and the storage path source's
`latest` / `all` / `specific` policies).

>>> config = single_model_config("tiny", "/models/tiny")
>>> aspired_versions(config.model_config_list.config[0], [1, 2, 3])
{3}
"""

import os

from tensorflow_serving.config import model_server_config_pb2

from serving.text_protos import read_text_proto


def single_model_config(name, base_path):
    """A `ModelServerConfig` with one model (TF Serving's `--model_name`,
    `--model_base_path`)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = os.fspath(base_path)
    model.model_platform = "tensorflow"
    return config


def read_model_config_file(path):
    """Parses a `models.config` file (TF Serving's `ModelServerConfig` text
    format) and checks it; relative base paths are taken from the file's
    folder."""
    config = read_text_proto(
        path,
        model_server_config_pb2.ModelServerConfig(),
        "model config",
        hint=" (expected TF Serving's ModelServerConfig text format: "
        "model_config_list { config { name: '...' base_path: '...' "
        "model_platform: 'tensorflow' } })",
    )
    folder = os.path.dirname(os.path.abspath(path))
    for model in config.model_config_list.config:
        if model.base_path and not os.path.isabs(model.base_path):
            model.base_path = os.path.join(folder, model.base_path)
    check_model_config(config, path)
    return config


def check_model_config(config, source="model config"):
    """Raises ValueError naming the problem if `config` cannot be served."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ValueError(f"{source}: custom_model_config is not supported; use model_config_list.")
    names = set()
    for index, model in enumerate(config.model_config_list.config):
        where = f"{source}: config #{index + 1}"
        if not model.name:
            raise ValueError(f"{where} has no name.")
        if model.name in names:
            raise ValueError(f"{where}: model name {model.name!r} repeats.")
        names.add(model.name)
        if not model.base_path:
            raise ValueError(f"{where} ({model.name}) has no base_path.")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"{where} ({model.name}): model_platform "
                f"{model.model_platform!r} is not supported; expected "
                "'tensorflow'."
            )
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "latest" and policy.latest.num_versions < 0:
            raise ValueError(f"{where} ({model.name}): latest.num_versions must be positive.")
    if not names:
        raise ValueError(f"{source}: no models (model_config_list is empty).")
    return config


def aspired_versions(model_config, found):
    """The versions of `found` (sorted ints) the version policy wants."""
    policy = model_config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(found)
    if choice == "specific":
        return set(found) & set(policy.specific.versions)
    count = policy.latest.num_versions if choice == "latest" else 1
    return set(sorted(found)[-max(count, 1) :])


__all__ = [
    "aspired_versions",
    "check_model_config",
    "read_model_config_file",
    "single_model_config",
]
