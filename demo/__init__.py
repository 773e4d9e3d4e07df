"""The end-to-end demo (`python -m demo`, `make demo`): synthetic videos →
shards → training → evaluation → export → gRPC serving → explanation, on CPU.
It sits on top of `training` and `serving`."""
