"""Where PyTorch's time goes in the benchmark's dense workload (one thread): runs the DenseVAE of
bench/pytorch_workloads.py under torch.profiler and prints the top operators.
Usage: .venv-torch/bin/python bench/torch_mlp_profile.py [path/to/pytorch_workloads.py]
The share of aten::mm + aten::addmm in "Self CPU" is the step's GEMM share."""
import sys, time
import torch
from torch.profiler import profile, ProfilerActivity

import os, runpy

script = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "pytorch_workloads.py")
# Not run as __main__: only the model definitions are loaded.
ns = runpy.run_path(script)
torch.manual_seed(0)
torch.set_num_threads(1)
m = ns["DenseVAE"]()
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.randn(128, 500)
for _ in range(5):
    opt.zero_grad(); m(x).backward(); opt.step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    t = time.perf_counter()
    for _ in range(30):
        opt.zero_grad(); m(x).backward(); opt.step()
    el = time.perf_counter() - t
print(f"samples/s under the profiler: {30 * 128 / el:.0f}")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
