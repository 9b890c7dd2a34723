"""pgrun: policy-gradient reinforcement learning on JAX, one command to train, sweep and compare."""
