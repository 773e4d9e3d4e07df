"""HEALTHCHECK of docker/Dockerfile.model-server: asks the server's
`grpc.health.v1.Health` service on 127.0.0.1:$GRPC_PORT for the overall
status ("" is SERVING once every configured model has a version AVAILABLE).
Exit 0 when SERVING, 1 otherwise, with one line saying why.

A server started with --ssl_config_file or
--enable_grpc_healthcheck_service=false needs another check (`docker run
--health-cmd ...`).
"""

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main():
    address = f"127.0.0.1:{os.environ.get('GRPC_PORT', '8500')}"
    try:
        with grpc.insecure_channel(address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
    except grpc.RpcError as error:
        print(f"unhealthy: {address}: {error.code().name}: {error.details()}")
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{address}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
