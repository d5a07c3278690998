/* samework: the same reads `nsinspect node` makes, the cheapest way, with nothing else (the floor of issue 20).
 *
 * For every numeric entry of PROC: readlinkat() of its 8 ns links, and the fd table (getdents64 of
 * <pid>/fd, readlinkat of each fd, keeping those that name a namespace).  Per namespace found (by type and
 * inode), its lowest pid is described once (its stat, the owner of its /proc directory and its cmdline,
 * as nsinspect's describe pass reads them; a pid lowest in several namespaces is read once), and the
 * namespace is opened for the hierarchy ioctls (NS_GET_USERNS; NS_GET_PARENT for pid and user ones).
 * Per mount namespace, through one of its processes: NS_GET_MNTNS_ID, a statx of its root, listmount(2),
 * statmount(2) of each mount (SB_BASIC|MNT_BASIC) and the mount point strings of the nsfs ones; where
 * listmount cannot (a kernel before 6.11, a seccomp profile, a namespace not ours without CAP_SYS_ADMIN)
 * its mountinfo is read instead, as nsinspect does.
 * No parsing beyond what finding the next read needs, no output but counts.
 *
 * Usage: samework [PROC]   (prints: processes namespaces mount-namespaces mounts fd-links)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_statmount
#define __NR_statmount 457
#define __NR_listmount 458
#endif
#define NS_GET_USERNS _IO(0xb7, 0x1)
#define NS_GET_PARENT _IO(0xb7, 0x2)
#define NS_GET_MNTNS_ID _IOR(0xb7, 0x5, uint64_t)
#define LSMT_ROOT 0xffffffffffffffffULL
#define NSFS_MAGIC 0x6e736673ULL
#define PID_MAX_LIMIT (4 * 1024 * 1024)

struct mnt_id_req { uint32_t size, spare; uint64_t mnt_id, param, mnt_ns_id; };
struct sm { uint32_t size, spare1; uint64_t mask; uint32_t sb_dev_major, sb_dev_minor; uint64_t sb_magic;
            uint32_t sb_flags, fs_type; uint64_t mnt_id, mnt_parent_id; uint32_t mnt_id_old, mnt_parent_id_old;
            uint64_t mnt_attr, mnt_propagation, mnt_peer_group, mnt_master; uint64_t propagate_from;
            uint32_t mnt_root, mnt_point; uint64_t mnt_ns_id; uint64_t spare2[49]; char str[]; };

static const char *types[] = {"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"};

/* An open-addressing set of (type, inode) -> lowest pid. */
typedef struct { unsigned long long ino; int type; long pid; } row;
static row *rows;
static size_t cap = 1 << 16, nrows;

static row *find(int type, unsigned long long ino) {
    size_t h = (ino * 0x9E3779B97F4A7C15ULL + (unsigned)type) & (cap - 1);
    while (rows[h].ino && !(rows[h].ino == ino && rows[h].type == type))
        h = (h + 1) & (cap - 1);
    return &rows[h];
}

static void add(int type, unsigned long long ino, long pid) {
    row *r = find(type, ino);
    if (!r->ino) {
        r->ino = ino, r->type = type, r->pid = pid, nrows++;
        if (nrows * 2 > cap) { fprintf(stderr, "too many namespaces\n"); exit(1); }
    } else if (pid < r->pid) {
        r->pid = pid;
    }
}

static unsigned long long parse(const char *buf, ssize_t n, int *type) {
    for (int t = 0; t < 8; t++) {
        size_t l = strlen(types[t]);
        if (n > (ssize_t)l + 3 && !memcmp(buf, types[t], l) && buf[l] == ':' && buf[l + 1] == '[') {
            *type = t;
            return strtoull(buf + l + 2, NULL, 10);
        }
    }
    return 0;
}

static char big[1 << 16];

static void slurp(int dirfd, const char *path) {
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    while (read(fd, big, sizeof big) > 0) {}
    close(fd);
}

static long mounts;

static void mount_table(int procfd, long pid) {
    char path[64];
    snprintf(path, sizeof path, "%ld/ns/mnt", pid);
    int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
    uint64_t ns = 0;
    if (fd >= 0) { ioctl(fd, NS_GET_MNTNS_ID, &ns); close(fd); }
    snprintf(path, sizeof path, "%ld/root", pid);
    struct statx sx;
    statx(procfd, path, 0, STATX_INO | 0x4000U, &sx);
    static uint64_t ids[1 << 16];
    struct mnt_id_req req = {32, 0, LSMT_ROOT, 0, ns};
    long n = ns ? syscall(__NR_listmount, &req, ids, sizeof ids / sizeof *ids, 0) : -1;
    if (n < 0) {  /* as nsinspect: the text table instead */
        snprintf(path, sizeof path, "%ld/mountinfo", pid);
        slurp(procfd, path);
        return;
    }
    static union { struct sm s; char b[512 + 3 * 4096]; } out;
    for (long i = 0; i < n; i++) {
        struct mnt_id_req one = {32, 0, ids[i], 0x1U | 0x2U, ns};  /* SB_BASIC | MNT_BASIC */
        if (syscall(__NR_statmount, &one, &out, 512, 0) < 0) continue;
        mounts++;
        if (out.s.sb_magic == NSFS_MAGIC) {
            one.param = 0x8U | 0x10U;  /* MNT_ROOT | MNT_POINT */
            syscall(__NR_statmount, &one, &out, sizeof out, 0);
        }
    }
}

int main(int argc, char **argv) {
    const char *proc = argc > 1 ? argv[1] : "/proc";
    int procfd = open(proc, O_RDONLY | O_DIRECTORY);
    if (procfd < 0) { perror(proc); return 1; }
    rows = calloc(cap, sizeof *rows);
    DIR *d = fdopendir(dup(procfd));
    struct dirent *e;
    char buf[128], path[96];
    long procs = 0, fdlinks = 0;
    static char dents[1 << 15];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        long pid = strtol(e->d_name, NULL, 10);
        procs++;
        snprintf(path, sizeof path, "%ld/ns", pid);
        int nsfd = openat(procfd, path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (nsfd < 0) continue;
        for (int t = 0; t < 8; t++) {
            ssize_t n = readlinkat(nsfd, types[t], buf, sizeof buf);
            int type;
            unsigned long long ino = n > 0 ? parse(buf, n, &type) : 0;
            if (ino) add(type, ino, pid);
        }
        close(nsfd);
        snprintf(path, sizeof path, "%ld/fd", pid);
        int dfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) continue;
        long got;
        while ((got = syscall(SYS_getdents64, dfd, dents, sizeof dents)) > 0) {
            for (long off = 0; off < got;) {
                struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *de = (void *)(dents + off);
                off += de->reclen;
                if (de->name[0] < '0' || de->name[0] > '9') continue;
                ssize_t n = readlinkat(dfd, de->name, buf, sizeof buf);
                int type;
                unsigned long long ino = n > 0 ? parse(buf, n, &type) : 0;
                if (ino) { fdlinks++; add(type, ino, pid); }
            }
            if (got < (long)sizeof dents - 512) break;  /* procfs fills the buffer while fds remain: as nsinspect */
        }
        close(dfd);
    }
    long mntns = 0;
    static unsigned char described[PID_MAX_LIMIT / 8];
    for (size_t i = 0; i < cap; i++) {
        row *r = &rows[i];
        if (!r->ino) continue;
        if (r->pid < PID_MAX_LIMIT && !(described[r->pid / 8] & (1 << (r->pid % 8)))) {
            /* each lowest pid described once, as nsinspect does: stat, the owner of its /proc dir, cmdline */
            described[r->pid / 8] |= (unsigned char)(1 << (r->pid % 8));
            snprintf(path, sizeof path, "%ld/stat", r->pid);
            slurp(procfd, path);
            struct stat st;
            snprintf(path, sizeof path, "%ld", r->pid);
            fstatat(procfd, path, &st, 0);
            snprintf(path, sizeof path, "%ld/cmdline", r->pid);
            slurp(procfd, path);
        }
        snprintf(path, sizeof path, "%ld/ns/%s", r->pid, types[r->type]);
        int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            int hierarchical = r->type == 4 || r->type == 6;  /* only pid and user namespaces have parents */
            int p = hierarchical ? ioctl(fd, NS_GET_PARENT) : -1, o = ioctl(fd, NS_GET_USERNS);
            if (p >= 0) close(p);
            if (o >= 0) close(o);
            close(fd);
        }
        if (r->type == 2) { mntns++; mount_table(procfd, r->pid); }
    }
    printf("%ld %zu %ld %ld %ld\n", procs, nrows, mntns, mounts, fdlinks);
    return 0;
}
