/* populate: make GROUPS groups of processes, each group in fresh net, ipc,
 * uts, mnt and pid namespaces, then wait until killed.
 *
 * Group layout: one "holder" that unshares (new net/ipc/uts/mnt, made private; pid for its
 * children) and forks an init (pid 1 in the new pid namespace); the init
 * forks PER_GROUP-1 children.  So PER_GROUP processes live in the new pid
 * namespace and PER_GROUP+1 in the others.  Every process asks for SIGKILL
 * when its parent dies, so killing this program (or its process group)
 * tears the whole tree down.
 *
 * Usage: populate GROUPS PER_GROUP READY_FD
 * Writes "ready\n" to READY_FD when every group is up.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Called in a child right after fork(): die when the parent does.  The parent
 * may have died before prctl() took effect; then our parent pid changed.
 * (Compare with the parent's own pid: in a new pid namespace it is 1.) */
static void die_with_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(1);
    if (getppid() != parent) _exit(1);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: populate GROUPS PER_GROUP READY_FD\n"); return 2; }
    int groups = atoi(argv[1]), per = atoi(argv[2]), ready = atoi(argv[3]);
    int sync[2];
    if (pipe(sync) != 0) { perror("pipe"); return 1; }
    for (int g = 0; g < groups; g++) {
        pid_t top = getpid();
        pid_t holder = fork();
        if (holder < 0) { perror("fork"); return 1; }
        if (holder == 0) {
            die_with_parent(top);
            if (unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS | CLONE_NEWPID) != 0) {
                perror("unshare"); _exit(1);
            }
            /* As unshare(1) and container runtimes do: the copy no longer receives the node's mount events. */
            if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) { perror("mount"); _exit(1); }
            pid_t init = fork();
            if (init == 0) {
                die_with_parent(0); /* our parent is outside our pid namespace */
                for (int i = 1; i < per; i++) {
                    if (fork() == 0) { die_with_parent(1); close(sync[1]); for (;;) pause(); }
                }
                if (write(sync[1], "x", 1) != 1) _exit(1);
                close(sync[1]);
                for (;;) pause();
            }
            close(sync[1]);
            for (;;) pause();
        }
    }
    close(sync[1]);
    char c; int up = 0;
    while (up < groups && read(sync[0], &c, 1) == 1) up++;
    if (up != groups) { fprintf(stderr, "populate: only %d of %d groups came up\n", up, groups); return 1; }
    if (write(ready, "ready\n", 6) != 6) return 1;
    for (;;) pause();
}
