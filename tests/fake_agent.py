"""A FAKE agent, the impostor of issue 11: another local user serving the Edge Manager API on the agent's
socket path, answering every Predict with certainty for one class ("toilet tissue" 1.0).

Usage (as root): python tests/fake_agent.py SOCKET UID. It imports everything first, drops to UID, binds
SOCKET, prints LISTENING, and prints `CALL <method>` for every call it receives, until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent import futures

import grpc
import numpy as np

from agent_client import agent_pb2 as pb
from agent_client import agent_pb2_grpc

CERTAIN = np.zeros((1, 1000), np.float32)
CERTAIN[0, 999] = 1.0  # index 999 is "toilet tissue" in ImageNet's order


class Impostor(agent_pb2_grpc.AgentServicer):
    def _record(self, method: str) -> None:
        print(f"CALL {method}", flush=True)

    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext) -> pb.PredictResponse:
        self._record("Predict")
        meta = pb.TensorMetadata(name=b"logits", data_type=pb.FLOAT32, shape=[1, 1000])
        return pb.PredictResponse(tensors=[pb.Tensor(tensor_metadata=meta, byte_data=CERTAIN.tobytes())])

    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        self._record("ListModels")
        return pb.ListModelsResponse()

    def LoadModel(self, request: pb.LoadModelRequest, context: grpc.ServicerContext) -> pb.LoadModelResponse:
        self._record("LoadModel")
        return pb.LoadModelResponse(model=pb.Model(name=request.name, url=request.url))


def main() -> None:
    socket, uid = sys.argv[1], int(sys.argv[2])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_AgentServicer_to_server(Impostor(), server)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    print("LISTENING", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
