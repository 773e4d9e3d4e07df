"""Request metrics in Prometheus' text format (TF Serving's
`--monitoring_config_file` with `prometheus_config { enable: true }`).

Two of TF Serving's metrics, with its names and labels:
`:tensorflow:serving:request_count{model_name, status}` (counter) and
`:tensorflow:serving:request_latency{model_name, API, entrypoint}`
(histogram, microseconds).

>>> metrics = Metrics()
>>> metrics.observe("half_plus_two", "predict", "REST", "OK", 1200.0)
>>> print(metrics.render().splitlines()[1])
# TYPE :tensorflow:serving:request_count counter
"""

import bisect
import collections
import threading

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from serving.text_protos import read_text_proto

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# Microseconds: 10 us to ~ 30 min, x1.8 per bucket (TF Serving's buckets).
BUCKETS = tuple(10 * 1.8**i for i in range(33))


def _monitoring_config_class():
    """TF Serving's `tensorflow.serving.MonitoringConfig` message
    (monitoring_config.proto is not in the tensorflow-serving-api wheel, so
    its two messages are declared here, field for field)."""
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=8, label=1)  # bool
    prometheus.field.add(name="path", number=2, type=9, label=1)  # string
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=11,
        label=1,
        type_name=".tensorflow.serving.PrometheusConfig",
    )
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    )


MonitoringConfig = _monitoring_config_class()


def read_monitoring_config(path):
    """Parses TF Serving's `MonitoringConfig` text file; returns the HTTP
    path of the Prometheus page, or `None` when Prometheus is not enabled."""
    config = read_text_proto(path, MonitoringConfig(), "monitoring config")
    if not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_PATH


class Metrics:
    """Thread-safe request counters and latency histograms."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = collections.Counter()  # (model, status)
        self._latency = {}  # (model, api, entry) -> [counts]
        self._latency_sum = collections.Counter()

    def observe(self, model_name, api, entrypoint, status, micros):
        with self._lock:
            self._counts[(model_name, status)] += 1
            key = (model_name, api, entrypoint)
            buckets = self._latency.setdefault(key, [0] * (len(BUCKETS) + 1))
            buckets[bisect.bisect_left(BUCKETS, micros)] += 1
            self._latency_sum[key] += micros

    def render(self):
        """The Prometheus text exposition of every metric."""
        with self._lock:
            counts = dict(self._counts)
            latency = {k: list(v) for k, v in self._latency.items()}
            sums = dict(self._latency_sum)
        lines = [
            f"# HELP {REQUEST_COUNT} The total number of requests.",
            f"# TYPE {REQUEST_COUNT} counter",
        ]
        for (model, status), value in sorted(counts.items()):
            lines.append(
                f'{REQUEST_COUNT}{{model_name="{_escape(model)}",'
                f'status="{_escape(status)}"}} {value}'
            )
        lines += [
            f"# HELP {REQUEST_LATENCY} Distribution of wall time (in "
            "microseconds) for Tensorflow Serving request.",
            f"# TYPE {REQUEST_LATENCY} histogram",
        ]
        for (model, api, entry), buckets in sorted(latency.items()):
            labels = (
                f'model_name="{_escape(model)}",API="{_escape(api)}",entrypoint="{_escape(entry)}"'
            )
            total = 0
            for bound, count in zip(BUCKETS, buckets):
                total += count
                lines.append(f'{REQUEST_LATENCY}_bucket{{{labels},le="{bound:g}"}} {total}')
            total += buckets[-1]
            lines.append(f'{REQUEST_LATENCY}_bucket{{{labels},le="+Inf"}} {total}')
            lines.append(f"{REQUEST_LATENCY}_sum{{{labels}}} {sums[(model, api, entry)]:g}")
            lines.append(f"{REQUEST_LATENCY}_count{{{labels}}} {total}")
        return "\n".join(lines) + "\n"


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


__all__ = ["DEFAULT_PATH", "Metrics", "read_monitoring_config"]
