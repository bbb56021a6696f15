/* What one CPUID costs on this machine (bench/README.md, "The event read
 * into batches"). zstd runs CPUID (leaves 0, 1 and 7) each time it makes a
 * compression or decompression context, and parquet-rs makes one of each
 * per column chunk it writes. On bare metal CPUID takes tens to hundreds of
 * nanoseconds; in a VM (Firecracker, as Lambda's x86_64 functions) it traps
 * to the hypervisor. x86_64 only.
 *
 *   cc -O2 -o /tmp/cpuid bench/cpuid.c && /tmp/cpuid
 */
#include <cpuid.h>
#include <stdio.h>
#include <time.h>

int main(void) {
    const int n = 20000;
    unsigned a, b, c, d, sink = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        __cpuid(1, a, b, c, d);
        sink += a;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("CPUID: %.2f us each (%d calls; %u)\n", ns / n / 1000.0, n, sink & 1);
    return 0;
}
