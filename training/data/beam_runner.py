"""`prepare` on Apache Beam: one task per shard, on DirectRunner here or
Dataflow, Flink or Spark at scale (the `[beam]` extra).

The launching process plans the shards exactly as the local runner does
(`training.data.shard_writer.prepare_dataset`: listing, usability check,
finished shards skipped) and hands the shards still to write to a Beam
pipeline: `Create(shards) | Reshuffle | ParDo(write one shard)`. Each task
(`shard_writer.write_shard_task`) decodes its shard's videos in a child
process (a decoder crash costs only its video, as with the local runner)
and writes the shard with `shard_writer.write_shard`, the same function the
local runner calls, into the output folder through `tf.io.gfile` (so `gs://`
works from every worker). When the pipeline is done, the launching process reads the
shards' sidecars and writes the manifest.

A task the runner retries writes its shard again from the start: files
appear whole or not at all and the sidecar comes last, so a half-written
attempt is never taken for a finished shard; a rerun of the same command
skips the shards finished before.

Workers need this project and its `[train]` dependencies (PyAV,
TensorFlow): a container image with them (`--sdk_container_image`), or
`--setup_file=./pyproject.toml` with a `--requirements_file` naming PyAV
and Pillow (docs/data.md); and the videos at the same paths as the
launching process sees them.

Example:

>>> from training.data.shard_writer import prepare_dataset
>>> prepare_dataset(dataset, "gs://bucket/k400", runner="beam",
...                 beam_options=["--runner=DataflowRunner", "--project=p",
...                               "--region=us-central1",
...                               "--temp_location=gs://bucket/tmp",
...                               "--sdk_container_image=IMAGE"])
"""

import functools
import importlib.util

MISSING = (
    "--runner beam needs Apache Beam, which is not installed here: install the "
    "extra with `pip install 'keras-classreg[beam]'` (in an environment of its "
    "own: see docs/data.md)"
)


def available():
    """True when Apache Beam (the `[beam]` extra) can be imported."""
    return importlib.util.find_spec("apache_beam") is not None


def shard_runner(beam_options, write_one):
    """`run(out_dir, shards, settings)` that writes `shards` with a Beam
    pipeline built from the command-line words `beam_options` (none:
    DirectRunner, in this process), one task `write_one(out_dir, settings,
    shard)` per shard (a module-level function: Beam pickles it by name).

    Raises:
        ImportError: Apache Beam is not installed (the message names the extra).
    """
    if not available():
        raise ImportError(MISSING)
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(list(beam_options))

    def run(out_dir, shards, settings):
        with beam.Pipeline(options=options) as pipeline:
            _ = (
                pipeline
                | "shards" >> beam.Create(shards)
                | "spread" >> beam.Reshuffle()
                | "write" >> beam.ParDo(_write_shard_fn()(write_one, out_dir, settings))
            )
        return {"workers": 0}

    return run


@functools.cache
def _write_shard_fn():
    """The `DoFn` class (defined once Beam is imported; Beam pickles it with
    its `cloudpickle`)."""
    import apache_beam as beam

    class WriteShard(beam.DoFn):
        def __init__(self, write_one, out_dir, settings):
            super().__init__()
            self.write_one = write_one
            self.out_dir = out_dir
            self.settings = settings

        def process(self, shard):
            yield self.write_one(self.out_dir, self.settings, shard)

    return WriteShard
