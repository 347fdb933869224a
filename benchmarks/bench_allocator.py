"""Micro-benchmarks for zray._native.

Run from the repository root:  python -m benchmarks.bench_allocator

Prints:
  * alloc+free pairs per second of the C Allocator (steady state, with a
    population of live blocks so the free tree and hash table are non-trivial),
  * GB/s of parallel_copy vs a plain memoryview slice assignment for 100 MB.
"""
import argparse
import os
import random
import time

from zray._native import Allocator, parallel_copy


def bench_alloc_free(n_pairs, live, seed=0):
    rng = random.Random(seed)
    # Region big enough never to fill up here (sizes are <= 1 MiB).
    a = Allocator(max(64 << 30, (live + 2048) << 21), alignment=64)
    sizes = [rng.randint(1, 1 << 20) for _ in range(4096)]
    # Fragmented steady state: `live` blocks, every other one freed
    # (live=0: one big free region, allocations carve its start).
    pool = [a.alloc(s) for s in sizes[:live % 4096] + sizes * (live // 4096)]
    for off in pool[::2]:
        a.free(off)
    alloc, free = a.alloc, a.free
    results = {}

    # 1) LIFO: alloc then immediately free (best case, hot path).
    t0 = time.perf_counter()
    for i in range(n_pairs):
        free(alloc(sizes[i & 4095]))
    results["alloc+free (LIFO)"] = n_pairs / (time.perf_counter() - t0)

    # 2) Random order: keep a window of 1024 live blocks, free a random one.
    window = [alloc(s) for s in sizes[:1024]]
    idx = [rng.randrange(1024) for _ in range(4096)]
    t0 = time.perf_counter()
    for i in range(n_pairs):
        j = idx[i & 4095]
        free(window[j])
        window[j] = alloc(sizes[i & 4095])
    results["alloc+free (random window)"] = n_pairs / (time.perf_counter() - t0)

    # Python-call overhead floor for comparison: a trivial C method pair.
    d = {}
    t0 = time.perf_counter()
    for i in range(n_pairs):
        d.get(i)
        d.get(i)
    results["(floor: 2x dict.get)"] = n_pairs / (time.perf_counter() - t0)
    a._check()
    return results


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_copy(nbytes, repeat, threads_list):
    src = bytearray(os.urandom(1 << 20)) * (nbytes >> 20)
    src += bytes(nbytes - len(src))
    dst = bytearray(nbytes)
    # Touch dst once so page faults are not measured.
    dst[:] = src
    msrc, mdst = memoryview(src), memoryview(dst)
    results = {}

    def slice_assign():
        mdst[:] = msrc

    results["memoryview slice assignment"] = nbytes / best_of(slice_assign, repeat) / 1e9
    for t in threads_list:
        label = "parallel_copy threads=%s" % ("auto" if t == 0 else t)
        results[label] = nbytes / best_of(lambda: parallel_copy(dst, src, t), repeat) / 1e9
    assert dst == src
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--live", type=int, default=20_000, help="live blocks before timing")
    ap.add_argument("--mb", type=int, default=100, help="copy size in MB (10^6 bytes)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    print("CPUs online: %d" % os.cpu_count())
    for live in sorted({0, args.live}):
        print("\nAllocator, %d pairs, %d blocks pre-populated then every other freed:"
              % (args.pairs, live))
        for k, v in bench_alloc_free(args.pairs, live).items():
            print("  %-30s %8.2f M pairs/s  (%6.0f ns/pair)" % (k, v / 1e6, 1e9 / v))

    nbytes = args.mb * 1_000_000
    print("\nCopy of %d MB (best of %d):" % (args.mb, args.repeat))
    for k, v in bench_copy(nbytes, args.repeat, [0, 1, 2, 4]).items():
        print("  %-30s %8.2f GB/s" % (k, v))


if __name__ == "__main__":
    main()
