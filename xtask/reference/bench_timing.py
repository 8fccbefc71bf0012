"""Step timing shared by the PyTorch reference benches (torch_step_bench.py, torch_detect_bench.py,
torch_segment_bench.py), so that every script times a step the way `afan bench` does: `warmup`
untimed calls, then `iters` timed ones, each recording wall-clock seconds and the process's CPU
seconds over all threads (`afan bench`'s `cpu_s`: at one thread, the step's work whatever else ran
on the machine).
"""
import time


def timed(fn, warmup, iters):
    """Runs `fn` `warmup` times untimed, then `iters` times; returns (wall seconds, CPU seconds),
    one entry per timed call."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(iters):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu
