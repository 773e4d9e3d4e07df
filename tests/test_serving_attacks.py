"""The gRPC front end under attack and faults: slow clients, health and
readiness, deadlines, errors that stay small and quiet, TLS and mutual TLS
(`--ssl_config_file`), and a client channel that reconnects promptly after
a server restart."""

import datetime
import logging
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tf_serving_models
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from serving import client as client_cli
from serving import server as server_cli
from serving.client import ServingClient
from serving.grpc_front import create_server
from serving.handlers import Handlers
from serving.launch import LocalServer
from serving.manager import ModelManager
from serving.model_config import single_model_config
from serving.tls import read_ssl_config, server_credentials

STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    tf_serving_models.half_plus_two_tf2(root / "hp2" / "1")
    tf_serving_models.slow_loop_tf2(root / "slow" / "1")
    return root


@pytest.fixture(scope="module")
def served(models):
    config = single_model_config("hp2", models / "hp2")
    slow = config.model_config_list.config.add()
    slow.name, slow.base_path = "slow", str(models / "slow")
    manager = ModelManager(config, poll_wait_seconds=0).start()
    server, port = create_server(Handlers(manager), "127.0.0.1", 0, workers=4)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield manager, port, channel
    channel.close()
    server.stop(0)
    manager.stop()


def _status_request(name):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return request


def _x_request(model, values, dtype=types_pb2.DT_FLOAT):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(values, np.float32)))
    return request


@pytest.mark.slow
def test_health_and_status_answer_while_64_slow_streams_are_open(served):
    _, port, channel = served
    attacker = grpc.insecure_channel(f"127.0.0.1:{port}")
    hold = threading.Event()

    def never():  # headers sent, the request message never comes
        hold.wait(60)
        return
        yield  # unreachable: makes this function a generator

    slow = attacker.stream_unary(
        STATUS_METHOD,
        request_serializer=get_model_status_pb2.GetModelStatusRequest.SerializeToString,
        response_deserializer=get_model_status_pb2.GetModelStatusResponse.FromString,
    )
    calls = [slow.future(never(), timeout=60) for _ in range(64)]
    try:
        time.sleep(1.0)  # let every stream open
        health = health_pb2_grpc.HealthStub(channel)
        status = channel.unary_unary(
            STATUS_METHOD,
            request_serializer=get_model_status_pb2.GetModelStatusRequest.SerializeToString,
            response_deserializer=get_model_status_pb2.GetModelStatusResponse.FromString,
        )
        for _ in range(3):
            started = time.monotonic()
            answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            assert status(_status_request("hp2"), timeout=5).model_version_status
            assert time.monotonic() - started < 1.0
        assert not any(call.done() for call in calls)  # still open
    finally:
        hold.set()
        for call in calls:
            call.cancel()
        attacker.close()


def test_health_names_models_and_the_server(served):
    _, _, channel = served
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for name in ("", "hp2", "slow", "tensorflow.serving.PredictionService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == serving
        )
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_expired_heavy_calls_do_not_delay_the_next_one(served):
    """20 s of loop each, 0.5 s deadlines: answered DEADLINE_EXCEEDED at the
    deadline, the loops cancelled, and a quick call right after is quick."""
    _, _, channel = served
    predict = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=predict_pb2.PredictRequest.SerializeToString,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    heavy = [predict.future(_x_request("slow", [20_000.0]), timeout=0.5) for _ in range(6)]
    for call in heavy:
        assert call.exception(10).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.5)
    started = time.monotonic()
    answer = predict(_x_request("slow", [1.0]), timeout=10)
    assert list(answer.outputs["y"].float_val) == [1.0]
    assert time.monotonic() - started < 1.5
    # a cancelled call is dropped too
    call = predict.future(_x_request("slow", [20_000.0]), timeout=30)
    time.sleep(0.3)
    call.cancel()
    time.sleep(0.3)
    started = time.monotonic()
    predict(_x_request("slow", [1.0]), timeout=10)
    assert time.monotonic() - started < 1.5


def test_out_of_range_and_huge_names_are_small_quiet_errors(served, caplog):
    _, _, channel = served
    predict = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=predict_pb2.PredictRequest.SerializeToString,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hp2"
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, int_val=[300])
    proto.tensor_shape.dim.add().size = 1
    request.inputs["x"].CopyFrom(proto)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(grpc.RpcError) as caught:
            predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "out of range for uint8" in caught.value.details()
    lines = [r for r in caplog.records if "out of range" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not any(r.exc_info for r in caplog.records)
    request = _x_request("n" * 1_000_000, [1.0])
    with pytest.raises(grpc.RpcError) as caught:
        predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details().endswith("...TRUNCATED")
    assert len(caught.value.details()) < 1100


# ----------------------------------------------------------------------
# TLS
# ----------------------------------------------------------------------
def _certificates(folder):
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a
    client certificate, as PEM files in `folder`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def issue(subject, key, issuer, issuer_key, ca=False, sans=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key):
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def pem_cert(cert):
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = issue("test CA", ca_key, "test CA", ca_key, ca=True)
    server = issue(
        "localhost",
        server_key,
        "test CA",
        ca_key,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = issue("client", client_key, "test CA", ca_key)
    files = {
        "ca.pem": pem_cert(ca),
        "server.pem": pem_cert(server),
        "server.key": pem_key(server_key),
        "client.pem": pem_cert(client),
        "client.key": pem_key(client_key),
    }
    for file, text in files.items():
        (folder / file).write_text(text)
    return {k: folder / k for k in files}


def _ssl_config(path, files, client_verify):
    def quoted(file):
        return '"' + file.read_text().replace("\n", "\\n") + '"'

    text = (
        f"server_key: {quoted(files['server.key'])}\nserver_cert: {quoted(files['server.pem'])}\n"
    )
    if client_verify:
        text += f"custom_ca: {quoted(files['ca.pem'])}\nclient_verify: true\n"
    path.write_text(text)
    return path


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_and_mutual_tls(served, tmp_path, mutual):
    manager = served[0]
    files = _certificates(tmp_path)
    config = read_ssl_config(_ssl_config(tmp_path / "ssl.config", files, mutual))
    server, port = create_server(
        Handlers(manager), "127.0.0.1", 0, workers=2, credentials=server_credentials(config)
    )
    address = f"localhost:{port}"
    try:
        options = dict(ssl_ca=str(files["ca.pem"]))
        if mutual:
            options.update(ssl_cert=str(files["client.pem"]), ssl_key=str(files["client.key"]))
        with ServingClient(address, timeout=10, retries=0, **options) as client:
            assert client.predict("hp2", {"x": np.array([1.0], np.float32)})["y"].tolist() == [2.5]
        refused = [ServingClient(address, timeout=3, retries=0)]  # plaintext
        if mutual:  # TLS without a client certificate
            refused.append(
                ServingClient(address, timeout=3, retries=0, ssl_ca=str(files["ca.pem"]))
            )
        for client in refused:
            with client, pytest.raises(grpc.RpcError) as caught:
                client.status("hp2")
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_ssl_config_file_flags(tmp_path):
    files = _certificates(tmp_path)
    path = _ssl_config(tmp_path / "ssl.config", files, True)
    args = server_cli.build_parser().parse_args(
        ["--model_base_path=/m", f"--ssl_config_file={path}"]
    )
    settings = server_cli.settings_from_args(args)
    assert settings.ssl_config.client_verify
    bad = tmp_path / "bad.config"
    bad.write_text(f'server_key: "{files["server.key"]}"\nserver_cert: "x"\n')
    with pytest.raises(ValueError, match="must hold PEM text"):
        server_cli.settings_from_args(
            server_cli.build_parser().parse_args(
                ["--model_base_path=/m", f"--ssl_config_file={bad}"]
            )
        )
    no_ca = tmp_path / "no_ca.config"
    no_ca.write_text(path.read_text().split("custom_ca")[0] + "client_verify: true\n")
    with pytest.raises(ValueError, match="client_verify needs custom_ca"):
        read_ssl_config(no_ca)
    parsed = client_cli.build_parser().parse_args(
        ["--model", "m", "--ssl-ca", "ca.pem", "--ssl-cert", "c.pem", "--ssl-key", "c.key", "v.mp4"]
    )
    assert (parsed.ssl_ca, parsed.ssl_cert, parsed.ssl_key) == ("ca.pem", "c.pem", "c.key")
    with pytest.raises(ValueError, match="both `ssl_cert` and `ssl_key`"):
        ServingClient("localhost:1", ssl_cert="c.pem")


# ----------------------------------------------------------------------
# Restart
# ----------------------------------------------------------------------
@pytest.mark.slow
def test_client_channel_reconnects_promptly_after_a_restart(models):
    server = LocalServer(
        [
            f"--model_base_path={models / 'hp2'}",
            "--model_name=hp2",
            "--file_system_poll_wait_seconds=0",
        ]
    )
    server.start()
    try:
        with ServingClient(server.address, timeout=2, retries=0) as client:
            assert client.status("hp2")[0][1] == "AVAILABLE"
            server.kill()
            failures = 0
            for _ in range(2):  # the channel sees the server gone
                try:
                    client.status("hp2")
                except grpc.RpcError:
                    failures += 1
                time.sleep(0.2)
            assert failures == 2
            server.start(same_ports=True)
            back = time.monotonic()
            while True:
                try:
                    client.status("hp2")
                    break
                except grpc.RpcError:
                    time.sleep(0.05)
            assert time.monotonic() - back < 1.5
    finally:
        server.stop()


def test_health_follows_the_models(models, tmp_path):
    """NOT_SERVING for a model without an AVAILABLE version and for the
    server as a whole; SERVING again once it has one."""
    manager = ModelManager(single_model_config("hp2", models / "hp2"), poll_wait_seconds=0).start()
    server, port = create_server(Handlers(manager), "127.0.0.1", 0, workers=2)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)

    def status(name):
        return health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status

    try:
        config = single_model_config("hp2", models / "hp2")
        late = config.model_config_list.config.add()
        late.name, late.base_path = "late", str(tmp_path / "late")
        manager.reload(config)
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        serving = health_pb2.HealthCheckResponse.SERVING
        assert (status(""), status("late"), status("hp2")) == (not_serving, not_serving, serving)
        tf_serving_models.half_plus_two_tf2(tmp_path / "late" / "1")
        manager.poll()
        assert (status(""), status("late")) == (serving, serving)
    finally:
        channel.close()
        server.stop(0)
        manager.stop()
