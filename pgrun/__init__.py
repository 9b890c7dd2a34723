"""pgrun: policy-gradient experiments on JAX, from one command to a sweep."""

from pgrun.parallel import keep_operations_single_threaded

keep_operations_single_threaded()  # before any JAX backend starts: see its docstring
