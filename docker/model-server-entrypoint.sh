#!/bin/sh
# Entrypoint of docker/Dockerfile.model-server, as the official
# tensorflow/serving image's tf_serving_entrypoint.sh: the model
# $MODEL_BASE_PATH/$MODEL_NAME, gRPC on $GRPC_PORT, REST on $PORT, and the
# container's arguments appended (a later flag wins, so they may override
# these; with --model_config_file the model flags are ignored). --host binds
# every interface inside the container (this server's default is 127.0.0.1,
# which a published port cannot reach). `exec`: the server itself gets
# SIGTERM and drains in-flight requests.
exec classreg-model-server \
    --host=0.0.0.0 \
    --port="${GRPC_PORT}" \
    --rest_api_port="${PORT}" \
    --model_name="${MODEL_NAME}" \
    --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" \
    "$@"
