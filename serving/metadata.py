"""GetModelMetadata on a loaded version: TF Serving's
`servables/tensorflow/get_model_metadata_impl.cc` (the request's
`metadata_field` checked before the model is looked up; the answer holds
the version's `signature_def` map packed in an `Any`)."""

from tensorflow_serving.apis import get_model_metadata_pb2

from serving.errors import invalid_argument

SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef


def check_metadata_request(request):
    """GetModelMetadata's request checks (before the model is looked up)."""
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")


def model_metadata(servable, request=None):
    """`GetModelMetadataResponse` of `servable` with the `signature_def` map
    (the request's `metadata_field` is checked by `check_metadata_request`
    before the model is looked up, as TF Serving does)."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature_def)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response


__all__ = ["SIGNATURE_DEF_FIELD", "check_metadata_request", "model_metadata"]
