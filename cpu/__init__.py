"""The CPU speed of training, apart from what the networks compute: fast copies of plain layers used in
CPU training while the plain forward is unchanged (kernels.py, winograd.py), the malloc a CPU run is
launched on (allocator.py, launch.py), heap trimming under glibc (memory.py), and their flags (options.py,
which options/ adds to every parser). Only CPU training imports the machinery (models/runtime.py); a GPU run
imports the flag definitions alone. Measurements: studies/performance.md."""
