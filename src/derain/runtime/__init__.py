"""Run-time settings of a process: launcher ranks and run names, the allocator switch, activation memory."""
