"""Sums a profile by op family (the profile tables of docs/benchmarks.md), one table per
process (`afan bench` runs each method in its own child process):

    perf record -e cpu-clock -F 499 -o perf.data -- target/release/afan bench --task detect ...
    perf script -i perf.data -F pid,ip,sym 2>/dev/null | python3 xtask/reference/perf_families.py

(`perf report --pid` loses most samples of a re-executed child; `perf script` keeps them.)

Each symbol goes to the first family whose pattern it matches (order matters: the kernels'
closures carry their module path); what matches none is "other" and its largest symbols are
listed, so that a new hot spot is seen rather than hidden.
"""
import re
import sys
from collections import defaultdict

FAMILIES = [
    ("depthwise convolution", r"conv::depthwise"),
    ("convolution gemm (dense, dilated, grouped)", r"gemm|microkernel|V4::vectorize|pack_(lhs|rhs)"),
    ("convolution im2col / col2im", r"conv::patches|im2col|col2im"),
    ("convolution other (scratch, dispatch)", r"afan_models::conv::"),
    ("RoIAlign", r"roi_align"),
    ("host NMS, proposals, anchors, sampling", r"detection::(nms|sampler|rpn|anchors|box_coder|boxes|faster_rcnn)|sort|select_nth"),
    ("setup: weight init, random data", r"rand::|ElementRandom|TensorData::random|chacha|Distribution::sampler"),
    ("bilinear upsampling", r"upsample"),
    ("batch norm (+ add + ReLU)", r"afan_models::norm::|batch_norm"),
    ("memory copies", r"memmove|memcpy|memset"),
    ("allocation and page faults", r"malloc|_int_free|free|cfree|realloc|clear_page|page_fault|mmap|munmap|alloc::|do_anonymous_page|__handle_mm_fault|zap_pte"),
    ("max-pool", r"max_pool|pool2d"),
    ("Burn element-wise and reductions", r"macerator|burn_flex|burn_backend|burn_tensor|burn_autodiff|binary|unary|reduce|slice_write"),
    ("threads (rayon, idle spinning, scheduling)", r"rayon|crossbeam|sched_yield|futex|__schedule|syscall|finish_task_switch|irqentry|_raw_spin|softirq"),
]


def table(samples):
    totals = defaultdict(int)
    other = defaultdict(int)
    for symbol, n in samples.items():
        for name, pattern in FAMILIES:
            if re.search(pattern, symbol):
                totals[name] += n
                break
        else:
            totals["other"] += n
            other[symbol] += n
    all_ = sum(samples.values())
    print("| share | family |")
    print("|---|---|")
    for name, n in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {100 * n / all_:.1f}% | {name} |")
    top = sorted(other.items(), key=lambda kv: -kv[1])[:6]
    if top:
        print("\nlargest unclassified:", "; ".join(f"{100 * n / all_:.1f}% {s[:70]}" for s, n in top))


def main():
    processes = defaultdict(lambda: defaultdict(int))
    for line in sys.stdin:
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        pid, symbol = parts[0], parts[2].strip() if len(parts) > 2 else "[unknown]"
        processes[pid][symbol] += 1
    for pid, samples in sorted(processes.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(samples.values())
        if n < 50:
            continue
        print(f"\n### process {pid}: {n} samples")
        table(samples)


if __name__ == "__main__":
    main()
