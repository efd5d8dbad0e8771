/* For tests/tests/security.rs (CVE-2021-30465): in a volume shared with containers that are
 * starting, swaps DIR/x between a directory and a symlink to TARGET (renameat2 RENAME_EXCHANGE),
 * as fast as it can, until DIR/stop exists. Prints the number of swaps. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    char x[4096], y[4096], stop[4096];
    snprintf(x, sizeof x, "%s/x", argv[1]);
    snprintf(y, sizeof y, "%s/y", argv[1]);
    snprintf(stop, sizeof stop, "%s/stop", argv[1]);
    mkdir(x, 0755);
    if (symlink(argv[2], y) != 0) return 3;
    long n = 0;
    struct stat st;
    while (stat(stop, &st) != 0) {
        for (int i = 0; i < 1000; i++, n++)
            if (renameat2(AT_FDCWD, x, AT_FDCWD, y, RENAME_EXCHANGE) != 0) return 4;
    }
    printf("swaps=%ld\n", n);
    return 0;
}
