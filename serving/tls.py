"""TLS for the gRPC port: TF Serving's `--ssl_config_file`.

The file is TF Serving's `tensorflow.serving.SSLConfig` text proto
(tensorflow_serving/config/ssl_config.proto), whose fields hold PEM *text*,
not file names:

    server_key: "-----BEGIN PRIVATE KEY-----\\n..."
    server_cert: "-----BEGIN CERTIFICATE-----\\n..."
    custom_ca: "-----BEGIN CERTIFICATE-----\\n..."   # clients' CA
    client_verify: true                               # mutual TLS

As in TF Serving's `BuildServerCredentials`: `client_verify` requires and
verifies a client certificate signed by `custom_ca`; without it no client
certificate is requested.
"""

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from serving.text_protos import read_text_proto


def _ssl_config_class():
    """TF Serving's `SSLConfig` message (ssl_config.proto is not in the
    tensorflow-serving-api wheel, so it is declared here, field for field)."""
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    message = file.message_type.add(name="SSLConfig")
    for number, name in enumerate(("server_key", "server_cert", "custom_ca"), start=1):
        message.field.add(name=name, number=number, type=9, label=1)  # string
    message.field.add(name="client_verify", number=4, type=8, label=1)  # bool
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.SSLConfig")
    )


SSLConfig = _ssl_config_class()


def read_ssl_config(path):
    """Parses and checks an `SSLConfig` text file; returns the message."""
    config = read_text_proto(path, SSLConfig(), "SSL config")
    for field, kind in (("server_key", "PRIVATE KEY"), ("server_cert", "CERTIFICATE")):
        value = getattr(config, field)
        if not value:
            raise ValueError(
                f"{path}: {field} is empty (the PEM text of the server's {kind.lower()} is needed)"
            )
        if "-----BEGIN" not in value or kind not in value:
            raise ValueError(
                f"{path}: {field} must hold PEM text "
                f"('-----BEGIN ...{kind}-----'), as in TF "
                "Serving; it is not a file name"
            )
    if config.client_verify and not config.custom_ca:
        raise ValueError(
            f"{path}: client_verify needs custom_ca (the PEM "
            "text of the CA that signs client certificates)"
        )
    if config.custom_ca and "-----BEGIN CERTIFICATE" not in config.custom_ca:
        raise ValueError(f"{path}: custom_ca must hold PEM certificate text")
    return config


def server_credentials(config):
    """`grpc.ServerCredentials` of an `SSLConfig` (TF Serving's
    BuildServerCredentials)."""
    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() or None,
        require_client_auth=bool(config.client_verify),
    )


__all__ = ["SSLConfig", "read_ssl_config", "server_credentials"]
