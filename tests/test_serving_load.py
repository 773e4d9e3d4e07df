"""A reduced load test: 4 clients x 50 requests, 5 % malformed, through the
local server with batching on; every answer is checked."""

import numpy as np
import pytest
import tiny_exports as testing

from serving import loadtest
from serving.client import ServingClient
from serving.launch import LocalServer

SHAPE = (4, 16, 16, 3)


# A server process under load.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    model, _ = testing.export_tiny(root, "load", seed=31)
    batching = root / "batching_parameters.txt"
    batching.write_text("max_batch_size { value: 8 }\nnum_batch_threads { value: 2 }\n")
    with LocalServer(
        [
            "--model_name=load",
            f"--model_base_path={root / 'load'}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
        ]
    ) as server:
        with ServingClient(server.address) as client:
            client.wait_until_available("load")
        yield server, model


def test_reduced_load(server):
    server, model = server
    clips = [testing.random_clips(1, SHAPE, seed=i) for i in range(6)]
    expected = [testing.reference_probabilities(model, clip) for clip in clips]
    rss_before = loadtest.process_rss_mb(server.pid)
    report = loadtest.run_load(
        server.address, "load", clips, expected, clients=4, requests=50, malformed_share=0.05
    )
    assert report.requests == 200 and report.malformed == 10
    assert report.unexpected_errors == []
    assert report.wrong_answers == 0
    assert report.ok == 190
    assert sum(report.errors_by_code.values()) == 10
    assert set(report.errors_by_code) <= {code.name for code in loadtest.MALFORMED_KINDS.values()}
    assert np.isfinite(report.p99_ms) and report.p99_ms >= report.p50_ms > 0
    # The server is still healthy and has not ballooned.
    assert loadtest.process_rss_mb(server.pid) < rss_before + 500
    with ServingClient(server.address) as client:
        assert client.status("load")[0][1] == "AVAILABLE"


def test_malformed_requests_are_what_they_claim():
    clip = testing.random_clips(1, SHAPE)
    assert (
        loadtest.malformed_request("wrong_dtype", "m", clip).inputs["clips"].dtype
        != loadtest.predict_request("m", clip).inputs["clips"].dtype
    )
    assert not loadtest.malformed_request("missing_input", "m", clip).inputs
    with pytest.raises(ValueError, match="Unknown malformed kind"):
        loadtest.malformed_request("nonsense", "m", clip)
