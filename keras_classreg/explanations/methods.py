"""The built-in explanation methods.

- `class_evidence` (default): the block's own projected class weights
  applied to its input activations, `E[t, h, w] = sum_c A[t, h, w, c] W_l[k, c]`
  — where in the clip this stage sees class `k` (Saliency Tubes at every
  block, with the block's class weights).
- `activation`: the mean absolute activation over the channels, the same
  for every class — a class-agnostic baseline: where `class_evidence`
  differs from it, the class weights (not mere activity) make the map.
"""

from keras import ops

from keras_classreg.explanations.registry import register


@register(
    "class_evidence",
    "sum_c A[..., c] W_l[k, c]: where the block sees class k (its own projected class weights)",
)
def class_evidence(block, activations, class_index):
    return block.class_evidence(activations, class_index)


@register(
    "activation",
    "mean |A| over the channels: where the block is "
    "active, whatever the class (a class-agnostic baseline)",
)
def activation(block, activations, class_index):
    del block, class_index  # class-agnostic
    return ops.mean(ops.abs(ops.cast(activations, "float32")), axis=-1)
