"""The CPU speed of training, apart from what the networks compute: fast copies of plain layers used in
CPU training while the plain forward is unchanged (kernels.py, winograd.py), the malloc a CPU run is
launched on (allocator.py, launch.py) and heap trimming under glibc (memory.py). Only CPU training imports
this package (models/runtime.py); a GPU run never does. Measurements: studies/performance.md."""
