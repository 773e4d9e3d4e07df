"""What an exported SavedModel of this project offers its clients: signature
names, input/output names and files. The export writes them, the serving
client reads them; TensorFlow's standard names come from `tf.saved_model`.

- `serving_default` (`tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY`):
  uint8 `clips` `[N, T', H', W', 3]` of any size → `probabilities`,
  `top_k_indices`, `top_k_scores`, `top_k_classes`.
- `predict_normalized`: float32 `clips` at the model's size, normalised.
- `class_names`: int32 `class_index` `[N]` → string `class_name` `[N]`.
- `clip_format`: int32 `query` `[N]` (values ignored) → string
  `clip_format` `[N]`: the model's `ClipFormat` as JSON, once per query
  entry, so clients cut clips as the model was trained. It has an input
  because TF Serving's REST API calls no signature without one:
  `{"signature_name": "clip_format", "instances": [0]}`. Exports of
  keras-classreg < 0.3 have no input and a scalar output; gRPC clients
  still read them.
- `classify` (method `tensorflow/serving/classify`): serialized
  `tf.train.Example`s whose bytes feature `image/encoded` holds the frames.
- `explain` / `explain_class`: per-block class-evidence maps.
"""

SERVING = "serving_default"  # == tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
PREDICT_NORMALIZED = "predict_normalized"
CLASS_NAMES = "class_names"
CLIP_FORMAT = "clip_format"
CLASSIFY = "classify"
EXPLAIN = "explain"
EXPLAIN_CLASS = "explain_class"

CLIPS_INPUT = "clips"
CLASS_INDEX_INPUT = "class_index"
CLIP_FORMAT_QUERY_INPUT = "query"
FRAMES_FEATURE = "image/encoded"

# How many classes `serving_default`'s `top_k_*` outputs hold unless the
# export says otherwise (`python -m training.export --top-k`).
DEFAULT_TOP_K = 5

CLASS_NAMES_ASSET = "class_names.txt"
CLIP_FORMAT_ASSET = "clip_format.json"
# TF Serving's warm-up file (SavedModel warm-up, `assets.extra/`).
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"

# Output names of the signatures (the export writes them, clients read them).
PROBABILITIES_OUTPUT = "probabilities"  # serving_default, predict_normalized, explain
TOP_K_INDICES_OUTPUT = "top_k_indices"
TOP_K_SCORES_OUTPUT = "top_k_scores"
TOP_K_CLASSES_OUTPUT = "top_k_classes"
CLASS_NAME_OUTPUT = "class_name"  # class_names; explain: the explained class's name
CLIP_FORMAT_OUTPUT = "clip_format"
# explain / explain_class: the outputs of `keras_classreg.explanations.
# evidence_maps` (`maps`, `class_index`, `predicted_class`, `probabilities`,
# `block_classes`, `block_confidences`) and these, added by the export.
BLOCK_NAMES_OUTPUT = "block_names"
BLOCK_CLASS_NAMES_OUTPUT = "block_class_names"
MAPS_OUTPUT = "maps"
