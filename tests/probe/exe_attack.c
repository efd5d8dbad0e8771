/* The attacker of tests/tests/security.rs (CVE-2019-5736 and ptrace of berth's helpers), run
 * inside a container while the test makes berth exec into it: watches /proc for processes that
 * are not the container's own programs (berth's helpers before they exec, or berth's binary run
 * through a `#!/proc/self/exe` script), stops each, and tries what an attacker would: reopen its
 * /proc/<pid>/exe for writing (the host's binary), and PTRACE_SEIZE it. Writes nothing: the
 * write open uses O_APPEND with no data. Runs until /tmp/stop exists; then prints
 *   seen=N hidden=N exe_open=N exe_ro=N writable=N ptraced=N write_errors=E1,E2,...
 * exe_ro counts the binaries found on a read-only mount: while berth's binary runs anywhere the
 * kernel answers a write open with ETXTBSY before it looks at the mount, so the mount is what
 * says whether the write would succeed once berth stops. /tmp/caught appears at the first. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int seen_pids[4096], nseen;

static int seen(int pid) {
    for (int i = 0; i < nseen; i++)
        if (seen_pids[i] == pid) return 1;
    if (nseen < 4096) seen_pids[nseen++] = pid;
    return 0;
}

int main(void) {
    int self = getpid(), seen_n = 0, hidden = 0, exe_open = 0, exe_ro = 0, writable = 0, ptraced = 0;
    char errs[4096] = "";
    struct stat st;
    while (stat("/tmp/stop", &st) != 0) {
        DIR *d = opendir("/proc");
        if (!d) return 2;
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == self) continue;
            char path[64], link[4096];
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            ssize_t n = readlink(path, link, sizeof link - 1);
            if (n > 0) {
                link[n] = 0;
                if (!strncmp(link, "/bin/", 5) || !strncmp(link, "/probe/", 7) || !strncmp(link, "/usr/", 5)) continue;
            } else if (errno == ENOENT) {
                continue; /* gone, or a kernel thread */
            }
            if (seen(pid)) continue;
            seen_n++;
            kill(pid, SIGSTOP);
            int fd = open(path, O_PATH | O_CLOEXEC);
            if (fd < 0) {
                hidden++;
            } else {
                exe_open++;
                struct statvfs sv;
                if (fstatvfs(fd, &sv) == 0 && (sv.f_flag & ST_RDONLY)) exe_ro++;
                close(open("/tmp/caught", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
                char fdp[64];
                snprintf(fdp, sizeof fdp, "/proc/self/fd/%d", fd);
                int w = open(fdp, O_WRONLY | O_APPEND | O_CLOEXEC);
                if (w >= 0) {
                    writable++;
                    close(w);
                } else if (strlen(errs) < sizeof errs - 64) {
                    strcat(errs, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
                    strcat(errs, ",");
                }
                close(fd);
            }
            /* Only berth's own helpers (not dumpable: their exe was hidden) count for ptrace:
             * berth's binary exec'd by the container is the container's own process. */
            if (fd < 0 && ptrace(PTRACE_SEIZE, pid, 0, 0) == 0) {
                ptraced++;
                ptrace(PTRACE_DETACH, pid, 0, 0);
            }
            kill(pid, SIGCONT);
        }
        closedir(d);
    }
    printf("seen=%d\nhidden=%d\nexe_open=%d\nexe_ro=%d\nwritable=%d\nptraced=%d\nwrite_errors=%s\n", seen_n, hidden, exe_open, exe_ro,
           writable, ptraced, errs);
    return 0;
}
