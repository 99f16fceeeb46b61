"""fp32 GEMM kernels side by side on this CPU: ONNX Runtime (MLAS) MatMul against torch.mm, one
thread each, interleaved, best of 30 (one layer's FFN shape of roberta-large over 512 tokens).
Says how much of the onnx fp32 backend's distance to torch is the GEMM kernel itself.

    python benchmarks/gemm_ort_vs_torch.py
"""
import time

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

torch.set_num_threads(1)
M, K, N = 512, 1024, 4096
rng = np.random.default_rng(0)
A = rng.standard_normal((M, K), dtype=np.float32); W = rng.standard_normal((K, N), dtype=np.float32)
g = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "g",
                      [helper.make_tensor_value_info("a", TensorProto.FLOAT, [M, K])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])], [numpy_helper.from_array(W, "w")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
o = ort.SessionOptions(); o.intra_op_num_threads = 1
s = ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
ta, tw = torch.from_numpy(A), torch.from_numpy(W)
def t(f, n=5):
    f(); best = 1e9
    for _ in range(n):
        t0 = time.perf_counter(); f(); best = min(best, time.perf_counter() - t0)
    return best
res = {"ort": [], "torch": []}
for r in range(6):
    res["ort"].append(t(lambda: s.run(None, {"a": A})))
    res["torch"].append(t(lambda: torch.mm(ta, tw)))
fl = 2 * M * K * N
for k, v in res.items():
    print(k, f"{fl / min(v) / 1e9:.0f} GFLOP/s (best of 30, 1 thread)")
print("max diff", float(np.abs(s.run(None, {"a": A})[0] - torch.mm(ta, tw).numpy()).max()))
