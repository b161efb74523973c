"""Measuring: what perf_analyzer sends (workload), one perf_analyzer call (perf_analyzer), the
windows and sweeps sized from the model (sizing), the offline and online sweeps (perf), the serving
floor (floor), the in-process baseline (native) and the open-loop capacity search (capacity)."""
