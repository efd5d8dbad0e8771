/* The system call probe of tests/tests/security.rs: tries calls with arguments that the kernel
 * itself rejects early with an error other than EPERM (a bad pointer, flag or descriptor), so
 * that EPERM means the seccomp filter refused the call. Prints NAME=ok|EPERM|ENOSYS per call.
 * Built static at test time (gcc -static), run inside the container. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define BAD ((long)1) /* a pointer the kernel cannot read: EFAULT when it gets that far */

static void probe(const char *name, long r) {
    const char *what = "ok";
    if (r == -1 && errno == EPERM) what = "EPERM";
    else if (r == -1 && errno == ENOSYS) what = "ENOSYS";
    printf("%s=%s\n", name, what);
}

int main(void) {
    probe("getpid", syscall(SYS_getpid));
    probe("read", syscall(SYS_read, -1, 0, 0));
    probe("socket_inet", syscall(SYS_socket, 2, 2, 0));
    probe("socket_alg", syscall(SYS_socket, 38, 5, 0));
    probe("socket_vsock", syscall(SYS_socket, 40, 1, 0));
    probe("personality_query", syscall(SYS_personality, 0xffffffffUL));
    probe("personality_rie", syscall(SYS_personality, 0x0400000UL));
    probe("mount", syscall(SYS_mount, BAD, BAD, BAD, 0, 0));
    probe("umount2", syscall(SYS_umount2, "/", 0xffff));
    probe("unshare", syscall(SYS_unshare, 0x00400000));
    probe("unshare_none", syscall(SYS_unshare, 0));
    probe("setns", syscall(SYS_setns, -1, 0));
    /* CLONE_NEWUSER|CLONE_FS is refused by the kernel with EINVAL: no child is ever made. */
    probe("clone_newuser", syscall(SYS_clone, 0x10000000UL | 0x200UL, 0, 0, 0, 0));
    probe("clone3", syscall(SYS_clone3, 0, 0));
    long pid = syscall(SYS_clone, 17 /* SIGCHLD */, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    probe("clone_plain", pid);
    probe("bpf", syscall(SYS_bpf, -1, 0, 0));
    probe("perf_event_open", syscall(SYS_perf_event_open, BAD, 0, -1, -1, 0));
    probe("keyctl", syscall(SYS_keyctl, 9999, 0, 0, 0, 0));
    probe("add_key", syscall(SYS_add_key, BAD, BAD, 0, 0, 0));
    probe("userfaultfd", syscall(SYS_userfaultfd, 0xffffffff));
    probe("io_uring_setup", syscall(SYS_io_uring_setup, 0, BAD));
    probe("ptrace", syscall(SYS_ptrace, 2 /* PEEKDATA */, 999999999, 0, 0));
    probe("kcmp", syscall(SYS_kcmp, 999999999, 999999999, 0, 0, 0));
    probe("setdomainname", syscall(SYS_setdomainname, BAD, 5));
    probe("chroot", syscall(SYS_chroot, "/nonexistent-berth-probe"));
    probe("sethostname", syscall(SYS_sethostname, BAD, 5));
    probe("pivot_root", syscall(SYS_pivot_root, BAD, BAD));
    probe("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, BAD, 0));
    probe("name_to_handle_at", syscall(SYS_name_to_handle_at, -1, BAD, BAD, BAD, 0));
    probe("fsopen", syscall(SYS_fsopen, BAD, 0));
    probe("acct", syscall(SYS_acct, BAD));
    probe("clock_settime", syscall(SYS_clock_settime, 0, BAD));
    probe("swapon", syscall(SYS_swapon, BAD, 0));
    probe("mbind", syscall(SYS_mbind, 0, 0, 0, 0, 0, 0));
    probe("landlock", syscall(SYS_landlock_create_ruleset, 0, 0, 1));
    probe("newer_than_profile", syscall(1000));
#ifdef __x86_64__
    probe("iopl", syscall(SYS_iopl, 9));
    probe("arch_prctl", syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, BAD));
#endif
    return 0;
}
