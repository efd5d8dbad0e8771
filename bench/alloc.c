/* bench/alloc.c: touches memory in 1 MiB steps and reports each step (to stdout, unbuffered) until
 * it is killed: the last number printed is how many MiB it held when the memory limit struck.
 * Built static at bench time (gcc -static) and put in the bench image as /bin/alloc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long max = argc > 1 ? atol(argv[1]) : 1024; /* safety stop, MiB */
    char line[32];
    for (long mib = 1; mib <= max; mib++) {
        char *p = malloc(1 << 20);
        if (!p) { write(2, "malloc failed\n", 14); return 2; }
        memset(p, (int)mib, 1 << 20); /* touch every page */
        int n = snprintf(line, sizeof line, "%ld\n", mib);
        if (write(1, line, (size_t)n) != n) return 3;
    }
    write(2, "no limit hit\n", 13);
    return 0;
}
