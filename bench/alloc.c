/* bench/alloc.c: touches memory in steps of STEP KiB (default 64) and reports the total held after
 * each step, in KiB, to stdout, unbuffered, until it is killed: the last number printed is how much
 * it held when the memory limit struck. Usage: alloc [MAX_MIB [STEP_KIB]] (stops at MAX_MIB,
 * default 4096). Built static at bench time (gcc -static), in the bench image as /bin/alloc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long max_kib = (argc > 1 ? atol(argv[1]) : 4096) * 1024;
    long step = argc > 2 ? atol(argv[2]) : 64;
    char line[32];
    if (step <= 0) return 2;
    for (long kib = step; kib <= max_kib; kib += step) {
        char *p = malloc((size_t)step * 1024);
        if (!p) { (void)!write(2, "malloc failed\n", 14); return 2; }
        memset(p, 0x5a, (size_t)step * 1024); /* touch every page */
        int n = snprintf(line, sizeof line, "%ld\n", kib);
        if (write(1, line, (size_t)n) != n) return 3;
    }
    (void)!write(2, "no limit hit\n", 13);
    return 0;
}
