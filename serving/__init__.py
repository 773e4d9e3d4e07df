"""Serving exported models over TensorFlow Serving's gRPC API.

- `serving.server`: `python -m serving.server`, a gRPC server implementing
  `PredictionService` and `ModelService` from `tensorflow-serving-api`.
- `serving.models`: version folders → loaded SavedModels, hot swap, the
  request handlers; `serving.batching`: server-side batching.
- `serving.client`: `ServingClient` (timeouts, retries) and
  `python -m serving.client` for video files.
- `serving.launch`, `serving.loadtest`, `serving.testing`: a child-process
  server, load testing, and small models for tests and benchmarks.

Modules are imported on use (`import serving.client`), so that the client
does not load the server's code.
"""
