import torch

# One thread: tiny models are many times slower with two threads on a shared 2-core machine.
torch.set_num_threads(1)
