/* nsinspect.node._scan: the hot loop of the node scan in C (optional).
 *
 * procfs.py has the same loop in Python and uses this module when it is built.  It only
 * takes the common case: anything unusual (an open or readlink that fails, a link that is
 * not "type:[digits]", a stat line it does not parse) is handed back for the Python code to
 * read again, so the two paths give the same answers by construction (and a test compares
 * them).  System calls run without the GIL.
 *
 *   links(procfd, pids, types) -> (agg, vanished, denied, retry)
 *       agg: per type, {inode: [nprocs, lowest pid]} over the pids read here;
 *       vanished: how many were gone (ENOENT/ESRCH opening <pid>/ns);
 *       denied: pids whose ns directory we may not open (EACCES/EPERM);
 *       retry: pids to read again in Python.
 *   describe(procfd, pid) -> (start time, ppid, uid, comm, cmdline) or None (read it in Python)
 *
 * And for the passes after the scan (hidden.py), with the same discipline:
 *   nsfs_mounts(procfd, entries, types) -> (records, fallback): the nsfs mounts of the mount
 *       namespace of each entry (a process) as its mountinfo shows them, each (type, inode, mount
 *       point) once, with the first entry that shows it: [(entry index, type index, inode, mount
 *       point bytes)]; fallback: the entries whose mountinfo Python must read.  listmount(2) and
 *       statmount(2), kernels >= 6.11 only (else every entry falls back).
 *   fds(procfd, pids, types) -> ([(type index, inode, pid, fd)], retry): open fds on namespaces;
 *       retry: pids for Python to read (a link this parser does not take, a table we may not list).
 *   relations(procfd, rows) -> per (path, dev, ino, hierarchical) row, None (open it in Python) or
 *       (parent, owner), each (dev, ino) or None: ioctl NS_GET_PARENT / NS_GET_USERNS.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <limits.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define MAX_TYPES 8
#define MAX_TYPE_LEN 15

enum { ST_OK, ST_VANISHED, ST_DENIED, ST_RETRY };

typedef struct {
    unsigned long long ino;
    long pid;
} pair;

/* "type:[digits]" -> the digits as a number; 0 when it is not exactly that. */
static unsigned long long parse_link(const char *buf, ssize_t n, const char *type, size_t tlen) {
    if (n < (ssize_t)tlen + 4 || memcmp(buf, type, tlen) != 0 || buf[tlen] != ':' || buf[tlen + 1] != '[' || buf[n - 1] != ']')
        return 0;
    ssize_t digits = n - (ssize_t)tlen - 3;
    if (digits > 20 || (digits > 1 && buf[tlen + 2] == '0'))  /* as nsinspect.limits.decimal: no leading zero */
        return 0;
    unsigned long long v = 0;
    for (const char *p = buf + tlen + 2; p < buf + n - 1; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        unsigned long long d = (unsigned long long)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)  /* past ino_t: not an inode the kernel can give */
            return 0;
        v = v * 10 + d;
    }
    return v;
}

static int read_links(int procfd, long pid, char types[][MAX_TYPE_LEN + 1], const size_t *tlens, int ntypes,
                      unsigned long long *out) {
    char path[32], buf[64];
    snprintf(path, sizeof path, "%ld/ns", pid);
    /* O_PATH: no read permission needed on the directory, only search and the ptrace check per link
     * (procfs.py, _NS_DIR_FLAGS): what uid 0 with only CAP_SYS_PTRACE has for another user's process. */
    int nsfd = openat(procfd, path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (nsfd < 0) {
        if (errno == ENOENT || errno == ESRCH)
            return ST_VANISHED;
        if (errno == EACCES || errno == EPERM)
            return ST_DENIED;
        return ST_RETRY;
    }
    int status = ST_OK;
    for (int t = 0; t < ntypes; t++) {
        ssize_t n = readlinkat(nsfd, types[t], buf, sizeof buf);
        if (n <= 0 || n >= (ssize_t)sizeof buf || (out[t] = parse_link(buf, n, types[t], tlens[t])) == 0) {
            status = ST_RETRY;
            break;
        }
    }
    close(nsfd);
    return status;
}

static int cmp_pair(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

/* {inode: [nprocs, lowest pid]} from (inode, pid) pairs. */
static PyObject *aggregate(pair *pairs, Py_ssize_t n) {
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_pair);
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n;) {
        Py_ssize_t j = i + 1;
        while (j < n && pairs[j].ino == pairs[i].ino)
            j++;
        PyObject *key = PyLong_FromUnsignedLongLong(pairs[i].ino);
        PyObject *val = Py_BuildValue("[nl]", j - i, pairs[i].pid);
        int rc = (key && val) ? PyDict_SetItem(d, key, val) : -1;
        Py_XDECREF(key);
        Py_XDECREF(val);
        if (rc < 0) {
            Py_DECREF(d);
            return NULL;
        }
        i = j;
    }
    return d;
}

static int parse_types(PyObject *types, char names[][MAX_TYPE_LEN + 1], size_t *lens) {
    if (!PyTuple_Check(types) || PyTuple_GET_SIZE(types) > MAX_TYPES) {
        PyErr_SetString(PyExc_ValueError, "types must be a tuple of at most 8 names");
        return -1;
    }
    int n = (int)PyTuple_GET_SIZE(types);
    for (int t = 0; t < n; t++) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(types, t), &len);
        if (s == NULL)
            return -1;
        if (len == 0 || len > MAX_TYPE_LEN || strchr(s, '/') != NULL) {
            PyErr_SetString(PyExc_ValueError, "not a namespace type name");
            return -1;
        }
        memcpy(names[t], s, (size_t)len + 1);
        lens[t] = (size_t)len;
    }
    return n;
}

/* The arguments (procfd, pids, types) of links() and fds(): pids as C longs (PyMem_RawFree them). */
typedef struct {
    int procfd, ntypes;
    PyObject *pidlist;
    Py_ssize_t npids;
    long *pids;
    char names[MAX_TYPES][MAX_TYPE_LEN + 1];
    size_t lens[MAX_TYPES];
} pid_args;

static int parse_pid_args(PyObject *args, const char *format, pid_args *a) {
    PyObject *types;
    if (!PyArg_ParseTuple(args, format, &a->procfd, &PyList_Type, &a->pidlist, &types))
        return -1;
    if ((a->ntypes = parse_types(types, a->names, a->lens)) < 0)
        return -1;
    a->npids = PyList_GET_SIZE(a->pidlist);
    if ((a->pids = PyMem_RawMalloc(sizeof(long) * (size_t)(a->npids ? a->npids : 1))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < a->npids; i++) {
        a->pids[i] = PyLong_AsLong(PyList_GET_ITEM(a->pidlist, i));
        if (a->pids[i] == -1 && PyErr_Occurred()) {
            PyMem_RawFree(a->pids);
            return -1;
        }
    }
    return 0;
}

static PyObject *links(PyObject *self, PyObject *args) {
    (void)self;
    pid_args a;
    if (parse_pid_args(args, "iO!O:links", &a) < 0)
        return NULL;
    unsigned char *status = PyMem_RawMalloc((size_t)(a.npids ? a.npids : 1));
    unsigned long long *inos = PyMem_RawMalloc(sizeof(unsigned long long) * MAX_TYPES * (size_t)(a.npids ? a.npids : 1));
    pair *pairs = PyMem_RawMalloc(sizeof(pair) * (size_t)(a.npids ? a.npids : 1));
    PyObject *agg = NULL, *denied = NULL, *retry = NULL, *result = NULL;
    if (!status || !inos || !pairs) {
        PyErr_NoMemory();
        goto done;
    }

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < a.npids; i++)
        status[i] = (unsigned char)read_links(a.procfd, a.pids[i], a.names, a.lens, a.ntypes, inos + (size_t)i * MAX_TYPES);
    Py_END_ALLOW_THREADS

    long vanished = 0;
    denied = PyList_New(0);
    retry = PyList_New(0);
    agg = PyList_New(a.ntypes);
    if (!denied || !retry || !agg)
        goto done;
    for (Py_ssize_t i = 0; i < a.npids; i++) {
        if (status[i] == ST_VANISHED)
            vanished++;
        else if (status[i] != ST_OK && PyList_Append(status[i] == ST_DENIED ? denied : retry, PyList_GET_ITEM(a.pidlist, i)) < 0)
            goto done;
    }
    for (int t = 0; t < a.ntypes; t++) {
        Py_ssize_t n = 0;
        for (Py_ssize_t i = 0; i < a.npids; i++) {
            if (status[i] == ST_OK) {
                pairs[n].ino = inos[(size_t)i * MAX_TYPES + t];
                pairs[n].pid = a.pids[i];
                n++;
            }
        }
        PyObject *d = aggregate(pairs, n);
        if (d == NULL)
            goto done;
        PyList_SET_ITEM(agg, t, d);
    }
    result = Py_BuildValue("(OlOO)", agg, vanished, denied, retry);
done:
    Py_XDECREF(agg);
    Py_XDECREF(denied);
    Py_XDECREF(retry);
    PyMem_RawFree(a.pids);
    PyMem_RawFree(status);
    PyMem_RawFree(inos);
    PyMem_RawFree(pairs);
    return result;
}

/* One read() of at most size bytes of <pid>/<name>, as procfs.py's _read_at does; -1 on any error. */
static ssize_t read_at(int procfd, long pid, const char *name, char *buf, size_t size) {
    char path[48];
    snprintf(path, sizeof path, "%ld/%s", pid, name);
    int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size);
    close(fd);
    return n;
}

/* A field of /proc/<pid>/stat that must be a plain decimal number (else -1): as nsinspect.limits.decimal, no
 * leading zero; at most 18 digits (longer ones, which the kernel never writes, are left to the Python reader). */
static long long decimal(const char *s, size_t len) {
    if (len == 0 || len > 18 || (len > 1 && s[0] == '0'))
        return -1;
    long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

#define STAT_SIZE 4096
#define PID_MAX_LIMIT (4 * 1024 * 1024) /* nsinspect.limits.PID_MAX_LIMIT */
#define CMDLINE_SIZE 4096

static PyObject *describe(PyObject *self, PyObject *args) {
    (void)self;
    int procfd;
    long pid;
    if (!PyArg_ParseTuple(args, "il:describe", &procfd, &pid))
        return NULL;
    char stat_buf[STAT_SIZE], cmd[CMDLINE_SIZE], path[32];
    ssize_t nstat, ncmd = -1;
    int stat_rc = -1;
    struct stat st;
    Py_BEGIN_ALLOW_THREADS
    nstat = read_at(procfd, pid, "stat", stat_buf, sizeof stat_buf);
    if (nstat > 0 && nstat < (ssize_t)sizeof stat_buf) {
        snprintf(path, sizeof path, "%ld", pid);
        stat_rc = fstatat(procfd, path, &st, 0);
        if (stat_rc == 0)
            ncmd = read_at(procfd, pid, "cmdline", cmd, sizeof cmd);
    }
    Py_END_ALLOW_THREADS
    if (nstat <= 0 || nstat >= (ssize_t)sizeof stat_buf || stat_rc != 0 || ncmd < 0)
        Py_RETURN_NONE;

    /* comm is between the first '(' and the last ')'; the fields follow one character later. */
    const char *lpar = memchr(stat_buf, '(', (size_t)nstat);
    const char *rpar = memrchr(stat_buf, ')', (size_t)nstat);
    if (lpar == NULL || rpar == NULL || rpar < lpar)
        Py_RETURN_NONE;
    const char *p = rpar + 2, *end = stat_buf + nstat;
    const char *fields[20];
    size_t flens[20];
    int nf = 0;
    while (p < end && nf < 20) {
        while (p < end && is_space(*p))
            p++;
        if (p >= end)
            break;
        const char *start = p;
        while (p < end && !is_space(*p))
            p++;
        fields[nf] = start;
        flens[nf] = (size_t)(p - start);
        nf++;
    }
    if (nf < 20)
        Py_RETURN_NONE;
    long long ppid = decimal(fields[1], flens[1]), starttime = decimal(fields[19], flens[19]);
    if (ppid < 0 || ppid > PID_MAX_LIMIT || starttime < 0)  /* the Python reader refuses what no kernel writes */
        Py_RETURN_NONE;

    /* The command line: arguments separated by NULs (trailing ones dropped), joined by spaces. */
    while (ncmd > 0 && cmd[ncmd - 1] == '\0')
        ncmd--;
    for (ssize_t i = 0; i < ncmd; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    PyObject *comm = PyUnicode_DecodeFSDefaultAndSize(lpar + 1, rpar - lpar - 1);
    PyObject *cmdline = comm ? PyUnicode_DecodeFSDefaultAndSize(cmd, ncmd) : NULL;
    PyObject *result = cmdline ? Py_BuildValue("(LLkOO)", starttime, ppid, (unsigned long)st.st_uid, comm, cmdline) : NULL;
    Py_XDECREF(comm);
    Py_XDECREF(cmdline);
    return result;
}


/* ---- the passes after the scan ------------------------------------------------------------ */

/* "type:[digits]" for one of the types: its index and the inode; -1 when it is none of them. */
static int ns_target(const char *buf, ssize_t n, char types[][MAX_TYPE_LEN + 1], const size_t *tlens, int ntypes,
                     unsigned long long *ino) {
    for (int t = 0; t < ntypes; t++) {
        if ((*ino = parse_link(buf, n, types[t], tlens[t])) != 0)
            return t;
    }
    return -1;
}

/* A growing buffer (no GIL needed). */
typedef struct {
    char *data;
    size_t len, cap;
} buffer;

static int buf_put(buffer *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *d = PyMem_RawRealloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* listmount(2) and statmount(2): the kernel's structures (include/uapi/linux/mount.h), declared
 * here since the build machine's headers may predate them. */
#ifndef __NR_statmount
#if defined(__x86_64__) || defined(__aarch64__) || defined(__riscv) || defined(__i386__) || defined(__arm__) || defined(__powerpc__) || defined(__s390__) || defined(__loongarch__)
#define __NR_statmount 457
#define __NR_listmount 458
#endif
#endif

struct nsi_mnt_id_req {
    uint32_t size, spare;
    uint64_t mnt_id, param, mnt_ns_id;
};

struct nsi_statmount {
    uint32_t size, mnt_opts;
    uint64_t mask;
    uint32_t sb_dev_major, sb_dev_minor;
    uint64_t sb_magic;
    uint32_t sb_flags, fs_type;
    uint64_t mnt_id, mnt_parent_id;
    uint32_t mnt_id_old, mnt_parent_id_old;
    uint64_t mnt_attr, mnt_propagation, mnt_peer_group, mnt_master, propagate_from;
    uint32_t mnt_root, mnt_point;
    uint64_t mnt_ns_id;
    uint32_t more[12]; /* up to the strings at byte 512 */
    uint64_t spare[43];
    char str[];
};

_Static_assert(sizeof(struct nsi_statmount) == 512, "struct statmount: its strings start at byte 512");

#define NSI_MNT_ID_REQ_SIZE 32 /* with mnt_ns_id: Linux 6.11 */
#define NSI_LSMT_ROOT 0xffffffffffffffffULL
#define NSI_STATMOUNT_SB_BASIC 0x1U
#define NSI_STATMOUNT_MNT_BASIC 0x2U
#define NSI_STATMOUNT_MNT_ROOT 0x8U
#define NSI_STATMOUNT_MNT_POINT 0x10U
#define NSI_STATMOUNT_MNT_NS_ID 0x40U
#define NSI_NSFS_MAGIC 0x6e736673ULL
#define NSI_STATX_MNT_ID_UNIQUE 0x4000U
#define NSI_NS_GET_MNTNS_ID _IOR(0xb7, 0x5, uint64_t)
#define NSI_NS_GET_USERNS _IO(0xb7, 0x1)
#define NSI_NS_GET_PARENT _IO(0xb7, 0x2)
#define STRINGS_SIZE (3 * 4096)

#ifdef __NR_statmount
static long nsi_statmount(uint64_t mnt, uint64_t ns, uint64_t mask, struct nsi_statmount *out, size_t size) {
    struct nsi_mnt_id_req req = {NSI_MNT_ID_REQ_SIZE, 0, mnt, mask, ns};
    return syscall(__NR_statmount, &req, out, size, 0);
}

/* Every mount of mount namespace ns that its root reaches, in the kernel's (mountinfo's) order. */
static ssize_t nsi_listmount(uint64_t ns, uint64_t **ids) {
    size_t n = 0, cap = 512;
    uint64_t *out = PyMem_RawMalloc(cap * sizeof *out);
    if (out == NULL)
        return -1;
    for (;;) {
        struct nsi_mnt_id_req req = {NSI_MNT_ID_REQ_SIZE, 0, NSI_LSMT_ROOT, n ? out[n - 1] : 0, ns};
        long got = syscall(__NR_listmount, &req, out + n, cap - n, 0);
        if (got < 0) {
            PyMem_RawFree(out);
            return -1;
        }
        n += (size_t)got;
        if (n < cap)
            break;
        uint64_t *more = PyMem_RawRealloc(out, 2 * cap * sizeof *out);
        if (more == NULL) {
            PyMem_RawFree(out);
            return -1;
        }
        out = more;
        cap *= 2;
    }
    *ids = out;
    return (ssize_t)n;
}

static int has_id(const uint64_t *ids, size_t n, uint64_t id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ids[mid] == id)
            return 1;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

typedef struct {
    uint64_t ns_id, root_mnt;
    dev_t root_dev;
    ino_t root_ino;
} our_root;

/* Our own root and mount namespace: statmount shows our namespace from our root. */
static int find_our_root(our_root *us) {
    struct statx sx;
    if (statx(AT_FDCWD, "/", 0, STATX_INO | NSI_STATX_MNT_ID_UNIQUE, &sx) != 0 || !(sx.stx_mask & NSI_STATX_MNT_ID_UNIQUE))
        return -1;
    struct nsi_statmount sm;
    if (nsi_statmount(sx.stx_mnt_id, 0, NSI_STATMOUNT_MNT_NS_ID, &sm, sizeof sm) < 0 || !(sm.mask & NSI_STATMOUNT_MNT_NS_ID))
        return -1;
    us->ns_id = sm.mnt_ns_id;
    us->root_mnt = sx.stx_mnt_id;
    us->root_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    us->root_ino = sx.stx_ino;
    return 0;
}

/* Record (root, mount point) of the nsfs mounts of <entry>'s mount namespace into out, as
 * <entry>/mountinfo would show them: only when statmount's paths are that process's paths, i.e.
 * its root is the root statmount uses (ours in our namespace; else the namespace's first mount).
 * -1: leave this one to Python. */
static int entry_mounts(int procfd, const char *entry, const our_root *us, struct nsi_statmount *big, buffer *out) {
    char path[64];
    if (snprintf(path, sizeof path, "%s/ns/mnt", entry) >= (int)sizeof path)
        return -1;
    int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -1;
    uint64_t ns = 0;
    int rc = ioctl(fd, NSI_NS_GET_MNTNS_ID, &ns);
    close(fd);
    if (rc != 0 || ns == 0)
        return -1;
    snprintf(path, sizeof path, "%s/root", entry);
    struct statx sx;
    if (statx(procfd, path, 0, STATX_INO | NSI_STATX_MNT_ID_UNIQUE, &sx) != 0 || !(sx.stx_mask & NSI_STATX_MNT_ID_UNIQUE))
        return -1;
    int own = ns == us->ns_id;
    if (own && (sx.stx_mnt_id != us->root_mnt || makedev(sx.stx_dev_major, sx.stx_dev_minor) != us->root_dev || sx.stx_ino != us->root_ino))
        return -1;
    if (!own && !((sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT)))
        return -1;
    uint64_t *ids = NULL;
    ssize_t n = nsi_listmount(ns, &ids);
    if (n < 0)
        return -1;
    uint64_t *parents = PyMem_RawMalloc(sizeof *parents * (size_t)(n ? n : 1));
    size_t start = out->len;
    int status = parents ? 0 : -1;
    for (ssize_t i = 0; i < n && status == 0; i++) {
        struct nsi_statmount sm;
        if (nsi_statmount(ids[i], ns, NSI_STATMOUNT_SB_BASIC | NSI_STATMOUNT_MNT_BASIC, &sm, sizeof sm) < 0) {
            status = -1;  /* gone meanwhile (ENOENT), or anything else: mountinfo will tell */
            break;
        }
        parents[i] = sm.mnt_parent_id;
        if (sm.sb_magic != NSI_NSFS_MAGIC)
            continue;
        if (nsi_statmount(ids[i], ns, NSI_STATMOUNT_MNT_ROOT | NSI_STATMOUNT_MNT_POINT, big, sizeof *big + STRINGS_SIZE) < 0 ||
            (big->mask & (NSI_STATMOUNT_MNT_ROOT | NSI_STATMOUNT_MNT_POINT)) != (NSI_STATMOUNT_MNT_ROOT | NSI_STATMOUNT_MNT_POINT) ||
            big->mnt_root >= STRINGS_SIZE || big->mnt_point >= STRINGS_SIZE) {
            status = -1;
            break;
        }
        const char *root = big->str + big->mnt_root, *point = big->str + big->mnt_point;
        uint32_t lens[2] = {(uint32_t)strnlen(root, STRINGS_SIZE - big->mnt_root), (uint32_t)strnlen(point, STRINGS_SIZE - big->mnt_point)};
        if (buf_put(out, lens, sizeof lens) < 0 || buf_put(out, root, lens[0]) < 0 || buf_put(out, point, lens[1]) < 0)
            status = -1;
    }
    if (status == 0 && !own) {
        /* The root statmount uses: the one listed mount whose parent is not listed (the namespace's root is above it). */
        ssize_t top = -1;
        for (ssize_t i = 0; i < n; i++) {
            if (!has_id(ids, (size_t)n, parents[i])) {
                if (top >= 0) {
                    top = -1;
                    break;
                }
                top = i;
            }
        }
        if (top < 0 || ids[top] != sx.stx_mnt_id)
            status = -1;
    }
    if (status != 0)
        out->len = start;
    PyMem_RawFree(parents);
    PyMem_RawFree(ids);
    return status;
}
#endif

/* The (type, inode, mount point) already recorded, so that each is handed to Python once: the first
 * entry that shows it wins, as in hidden.bind_mounts. */
typedef struct {
    uint32_t entry, type, off, len;
    unsigned long long ino;
} nsfs_rec;

typedef struct {
    buffer recs, paths;
    uint32_t *slots; /* record index + 1; 0: free */
    size_t nslots, count;
} nsfs_set;

static uint64_t rec_hash(uint32_t type, unsigned long long ino, const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL ^ type ^ (ino * 0x9E3779B97F4A7C15ULL);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

/* Add unless there: 1 added, 0 there already, -1 no memory. */
static int set_add(nsfs_set *set, uint32_t entry, uint32_t type, unsigned long long ino, const char *p, uint32_t n) {
    if ((set->count + 1) * 2 > set->nslots) {
        size_t nslots = set->nslots ? set->nslots * 2 : 1024;
        uint32_t *slots = PyMem_RawCalloc(nslots, sizeof *slots);
        if (slots == NULL)
            return -1;
        for (size_t k = 0; k < set->nslots; k++) {
            if (set->slots[k]) {
                const nsfs_rec *r = (const nsfs_rec *)set->recs.data + (set->slots[k] - 1);
                size_t j = rec_hash(r->type, r->ino, set->paths.data + r->off, r->len) & (nslots - 1);
                while (slots[j])
                    j = (j + 1) & (nslots - 1);
                slots[j] = set->slots[k];
            }
        }
        PyMem_RawFree(set->slots);
        set->slots = slots;
        set->nslots = nslots;
    }
    size_t j = rec_hash(type, ino, p, n) & (set->nslots - 1);
    for (; set->slots[j]; j = (j + 1) & (set->nslots - 1)) {
        const nsfs_rec *r = (const nsfs_rec *)set->recs.data + (set->slots[j] - 1);
        if (r->type == type && r->ino == ino && r->len == n && memcmp(set->paths.data + r->off, p, n) == 0)
            return 0;
    }
    nsfs_rec rec = {entry, type, (uint32_t)set->paths.len, n, ino};
    if (buf_put(&set->paths, p, n) < 0 || buf_put(&set->recs, &rec, sizeof rec) < 0)
        return -1;
    set->slots[j] = (uint32_t)++set->count;
    return 1;
}

/* One entry's (root, mount point) pairs into the set.  -1: a root names a wanted type in a way this
 * parser does not take (Python reads that entry's mountinfo); -2: no memory. */
static int add_entry(nsfs_set *set, uint32_t entry, const buffer *pairs, char types[][MAX_TYPE_LEN + 1], const size_t *tlens, int ntypes) {
    /* Every root is checked before anything is added: an entry handed to Python leaves nothing in the set. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t pos = 0; pos < pairs->len;) {
            uint32_t lens[2];
            memcpy(lens, pairs->data + pos, sizeof lens);
            const char *root = pairs->data + pos + sizeof lens, *point = root + lens[0];
            pos += sizeof lens + lens[0] + lens[1];
            unsigned long long ino;
            int t = ns_target(root, lens[0], types, tlens, ntypes, &ino);
            if (t < 0) {
                for (int k = 0; k < ntypes; k++)
                    if (lens[0] > tlens[k] + 1 && memcmp(root, types[k], tlens[k]) == 0 && root[tlens[k]] == ':' && root[tlens[k] + 1] == '[')
                        return -1;
                continue;
            }
            if (pass == 1 && set_add(set, entry, (uint32_t)t, ino, point, lens[1]) < 0)
                return -2;
        }
    }
    return 0;
}

static PyObject *nsfs_mounts(PyObject *self, PyObject *args) {
    (void)self;
    int procfd;
    PyObject *entries, *types;
    if (!PyArg_ParseTuple(args, "iO!O:nsfs_mounts", &procfd, &PyList_Type, &entries, &types))
        return NULL;
    char tnames[MAX_TYPES][MAX_TYPE_LEN + 1];
    size_t tlens[MAX_TYPES];
    int ntypes = parse_types(types, tnames, tlens);
    if (ntypes < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(entries);
    const char **names = PyMem_RawCalloc((size_t)(n ? n : 1), sizeof *names);
    int *status = PyMem_RawCalloc((size_t)(n ? n : 1), sizeof *status);
    nsfs_set set = {{NULL, 0, 0}, {NULL, 0, 0}, NULL, 0, 0};
    PyObject *records = NULL, *fallback = NULL, *result = NULL;
    int nomem = 0;
    if (!names || !status) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        names[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(entries, i));
        if (names[i] == NULL)
            goto done;
        status[i] = -1;
    }
#ifdef __NR_statmount
    Py_BEGIN_ALLOW_THREADS
    struct nsi_statmount *big = PyMem_RawMalloc(sizeof *big + STRINGS_SIZE);
    buffer pairs = {NULL, 0, 0};
    our_root us;
    if (big != NULL && find_our_root(&us) == 0) {
        for (Py_ssize_t i = 0; i < n && !nomem; i++) {
            pairs.len = 0;
            if (entry_mounts(procfd, names[i], &us, big, &pairs) == 0) {
                status[i] = add_entry(&set, (uint32_t)i, &pairs, tnames, tlens, ntypes);
                nomem = status[i] == -2;
            }
        }
    }
    PyMem_RawFree(pairs.data);
    PyMem_RawFree(big);
    Py_END_ALLOW_THREADS
#else
    (void)procfd;
#endif
    if (nomem) {
        PyErr_NoMemory();
        goto done;
    }
    records = PyList_New(0);
    fallback = PyList_New(0);
    if (!records || !fallback)
        goto done;
    for (size_t k = 0; k < set.count; k++) {
        const nsfs_rec *r = (const nsfs_rec *)set.recs.data + k;
        PyObject *item = Py_BuildValue("(IIKy#)", r->entry, r->type, r->ino, set.paths.data + r->off, (Py_ssize_t)r->len);
        int rc = item ? PyList_Append(records, item) : -1;
        Py_XDECREF(item);
        if (rc < 0)
            goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (status[i] == 0)
            continue;
        PyObject *idx = PyLong_FromSsize_t(i);
        int rc = idx ? PyList_Append(fallback, idx) : -1;
        Py_XDECREF(idx);
        if (rc < 0)
            goto done;
    }
    result = PyTuple_Pack(2, records, fallback);
done:
    Py_XDECREF(records);
    Py_XDECREF(fallback);
    PyMem_RawFree(names);
    PyMem_RawFree(status);
    PyMem_RawFree(set.recs.data);
    PyMem_RawFree(set.paths.data);
    PyMem_RawFree(set.slots);
    return result;
}

typedef struct {
    unsigned long long ino;
    long pid;
    int fd, type;
} held;

/* Does a link's target start as one of the types' would ("net:[")? */
static int looks_like(const char *buf, ssize_t n, char types[][MAX_TYPE_LEN + 1], const size_t *tlens, int ntypes) {
    for (int t = 0; t < ntypes; t++)
        if (n > (ssize_t)tlens[t] + 1 && memcmp(buf, types[t], tlens[t]) == 0 && buf[tlens[t]] == ':' && buf[tlens[t] + 1] == '[')
            return 1;
    return 0;
}

/* The open fds of one process that are namespaces, into out.  Returns 1 when its fd table is not ours
 * to read, 2 when a link is not one this parser takes (Python reads the process again), else 0. */
static int pid_fds(int procfd, long pid, char types[][MAX_TYPE_LEN + 1], const size_t *tlens, int ntypes, buffer *out,
                   const unsigned char *skip, size_t nskip) {
    char path[32], target[128];
    snprintf(path, sizeof path, "%ld/fd", pid);
    int dfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == EACCES || errno == EPERM;
    /* Every name first (as os.listdir), then the links. */
    buffer names = {NULL, 0, 0};
    char dents[8192];
    int denied = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, dfd, dents, sizeof dents);
        if (got < 0) {
            denied = errno == EACCES || errno == EPERM;
            names.len = 0;
            break;
        }
        if (got == 0)
            break;
        for (long off = 0; off < got;) {
            struct dirent64 *d = (struct dirent64 *)(dents + off);
            off += d->d_reclen;
            char *end;
            long fd = strtol(d->d_name, &end, 10);
            if (d->d_name[0] < '0' || d->d_name[0] > '9' || *end != '\0' || fd > INT32_MAX)
                continue;
            int fdnum = (int)fd;
            if ((size_t)fdnum / 8 < nskip && (skip[fdnum / 8] >> (fdnum % 8)) & 1)
                continue;  /* one the caller knows is not on a namespace */
            if (buf_put(&names, &fdnum, sizeof fdnum) < 0) {
                PyMem_RawFree(names.data);
                close(dfd);
                return 2;
            }
        }
        /* procfs fills the buffer while there are fds left: room for more means the end (no second call). */
        if (got < (long)sizeof dents - 512)
            break;
    }
    for (size_t k = 0; k < names.len; k += sizeof(int)) {
        int fdnum;
        memcpy(&fdnum, names.data + k, sizeof fdnum);
        snprintf(path, sizeof path, "%d", fdnum);
        ssize_t n = readlinkat(dfd, path, target, sizeof target);
        if (n < 0) {
            if (errno == EACCES || errno == EPERM) {
                denied = 1;
                break;
            }
            continue;  /* closed meanwhile */
        }
        unsigned long long ino;
        int t = n < (ssize_t)sizeof target ? ns_target(target, n, types, tlens, ntypes, &ino) : -1;
        if (t >= 0) {
            held h = {ino, pid, fdnum, t};
            if (buf_put(out, &h, sizeof h) < 0) {
                denied = 2;
                break;
            }
        } else if (looks_like(target, n, types, tlens, ntypes)) {
            denied = 2;
            break;
        }
    }
    PyMem_RawFree(names.data);
    close(dfd);
    return denied;
}

static PyObject *fds(PyObject *self, PyObject *args) {
    (void)self;
    pid_args a;
    /* An optional 4th argument: a bitmap (bytes, bit fd % 8 of byte fd / 8) of fds not to read. */
    Py_buffer skip = {0};
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    PyObject *head = PyTuple_GetSlice(args, 0, nargs > 3 ? 3 : nargs);
    if (head == NULL)
        return NULL;
    int rc0 = parse_pid_args(head, "iO!O:fds", &a);
    Py_DECREF(head);
    if (rc0 < 0)
        return NULL;
    if (nargs > 4 || (nargs == 4 && PyObject_GetBuffer(PyTuple_GET_ITEM(args, 3), &skip, PyBUF_SIMPLE) < 0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "fds: at most 4 arguments");
        PyMem_RawFree(a.pids);
        return NULL;
    }
    buffer out = {NULL, 0, 0};
    unsigned char *retry = PyMem_RawCalloc((size_t)(a.npids ? a.npids : 1), 1);
    if (retry == NULL) {
        PyMem_RawFree(a.pids);
        if (skip.obj)
            PyBuffer_Release(&skip);
        return PyErr_NoMemory();
    }
    const unsigned char *bits = skip.obj ? skip.buf : NULL;
    size_t nbits = skip.obj ? (size_t)skip.len : 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < a.npids; i++) {
        size_t before = out.len;
        int rc = pid_fds(a.procfd, a.pids[i], a.names, a.lens, a.ntypes, &out, bits, nbits);
        /* 2: a link this parser does not take; 1: a table we may not list (another user's, read
         * through its fdinfo in Python): both are read again there. */
        if (rc != 0) {
            out.len = before;
            retry[i] = 1;
        }
    }
    Py_END_ALLOW_THREADS
    if (skip.obj)
        PyBuffer_Release(&skip);
    PyMem_RawFree(a.pids);
    PyObject *again = PyList_New(0);
    for (Py_ssize_t i = 0; again != NULL && i < a.npids; i++)
        if (retry[i] && PyList_Append(again, PyList_GET_ITEM(a.pidlist, i)) < 0)
            Py_CLEAR(again);
    PyMem_RawFree(retry);
    PyObject *list = again ? PyList_New(0) : NULL;
    for (size_t k = 0; list != NULL && k < out.len; k += sizeof(held)) {
        held h;
        memcpy(&h, out.data + k, sizeof h);
        PyObject *item = Py_BuildValue("(iKli)", h.type, h.ino, h.pid, h.fd);
        if (item == NULL || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    PyMem_RawFree(out.data);
    PyObject *result = list ? Py_BuildValue("(OO)", list, again) : NULL;
    Py_XDECREF(list);
    Py_XDECREF(again);
    return result;
}

/* Namespaces kept open while relations() runs: most rows name the same few owners and parents, and a
 * namespace with an open file keeps its nsfs inode, which the kernel would otherwise make again for
 * each ioctl that names it (and free at its close). */
#define KEEP_OPEN 64
typedef struct {
    int fd[KEEP_OPEN], n;
    unsigned long long ino[KEEP_OPEN];
} kept;

/* The namespace an ioctl on fd names: 1 with its (dev, ino); 0 when the kernel will not say. */
static int related(int fd, unsigned long request, kept *keep, unsigned long long *dev, unsigned long long *ino) {
    int rfd = ioctl(fd, request);
    if (rfd < 0)
        return 0;
    struct stat st;
    if (fstat(rfd, &st) != 0) {
        close(rfd);
        return -1;
    }
    *dev = (unsigned long long)st.st_dev;
    *ino = (unsigned long long)st.st_ino;
    int known = 0;
    for (int k = 0; k < keep->n && !known; k++)
        known = keep->ino[k] == *ino;
    if (!known && keep->n < KEEP_OPEN) {
        keep->fd[keep->n] = rfd;
        keep->ino[keep->n++] = *ino;
    } else {
        close(rfd);
    }
    return 1;
}

typedef struct {
    char path[48];
    unsigned long long dev, ino, pdev, pino, odev, oino;
    int hierarchical, status, has_parent, has_owner;
} relation;

static PyObject *relations(PyObject *self, PyObject *args) {
    (void)self;
    int procfd;
    PyObject *rows;
    if (!PyArg_ParseTuple(args, "iO!:relations", &procfd, &PyList_Type, &rows))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    relation *rel = PyMem_RawCalloc((size_t)(n ? n : 1), sizeof *rel);
    if (rel == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *path;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(rows, i), "sKKp", &path, &rel[i].dev, &rel[i].ino, &rel[i].hierarchical) ||
            strlen(path) >= sizeof rel[i].path) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "path too long");
            PyMem_RawFree(rel);
            return NULL;
        }
        strcpy(rel[i].path, path);
    }
    kept keep = {{0}, 0, {0}};
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        relation *r = &rel[i];
        int fd = openat(procfd, r->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
            continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && (unsigned long long)st.st_dev == r->dev && (unsigned long long)st.st_ino == r->ino) {
            int p = r->hierarchical ? related(fd, NSI_NS_GET_PARENT, &keep, &r->pdev, &r->pino) : 0;
            int o = related(fd, NSI_NS_GET_USERNS, &keep, &r->odev, &r->oino);
            if (p >= 0 && o >= 0) {
                r->has_parent = p;
                r->has_owner = o;
                r->status = 1;
            }
        }
        close(fd);
    }
    for (int k = 0; k < keep.n; k++)
        close(keep.fd[k]);
    Py_END_ALLOW_THREADS
    PyObject *result = PyList_New(n);
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        relation *r = &rel[i];
        PyObject *item;
        if (!r->status) {
            Py_INCREF(Py_None);
            item = Py_None;
        } else {
            PyObject *parent = r->has_parent ? Py_BuildValue("(KK)", r->pdev, r->pino) : (Py_INCREF(Py_None), Py_None);
            PyObject *owner = r->has_owner ? Py_BuildValue("(KK)", r->odev, r->oino) : (Py_INCREF(Py_None), Py_None);
            item = parent && owner ? PyTuple_Pack(2, parent, owner) : NULL;
            Py_XDECREF(parent);
            Py_XDECREF(owner);
        }
        if (item == NULL)
            Py_CLEAR(result);
        else
            PyList_SET_ITEM(result, i, item);
    }
    PyMem_RawFree(rel);
    return result;
}

/* moved(pids, clocks): the processes whose CPU clock (ns of every thread's run, clock_gettime of the clock id the
 * kernel makes of a pid: (~pid << 3) | CPUCLOCK_SCHED) is not the one given, as [(index, clock now or -1 when gone)].
 * The agent's warm node reads again only those (nsinspect/node/warm.py). */
static PyObject *moved(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *pidlist, *before;
    if (!PyArg_ParseTuple(args, "O!O!:moved", &PyList_Type, &pidlist, &PyList_Type, &before))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(pidlist);
    if (PyList_GET_SIZE(before) != n) {
        PyErr_SetString(PyExc_ValueError, "moved: as many clocks as pids");
        return NULL;
    }
    long *pids = PyMem_RawMalloc(sizeof(long) * (size_t)(n ? n : 1));
    long long *was = PyMem_RawMalloc(sizeof(long long) * (size_t)(n ? n : 1));
    long long *now = PyMem_RawMalloc(sizeof(long long) * (size_t)(n ? n : 1));
    PyObject *out = NULL;
    if (!pids || !was || !now) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        pids[i] = PyLong_AsLong(PyList_GET_ITEM(pidlist, i));
        was[i] = PyLong_AsLongLong(PyList_GET_ITEM(before, i));
        if (PyErr_Occurred())
            goto done;
        if (pids[i] <= 0 || pids[i] > PID_MAX_LIMIT) {
            PyErr_SetString(PyExc_ValueError, "moved: not a pid");
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        struct timespec ts;
        clockid_t clk = (clockid_t)((~(unsigned)pids[i] << 3) | 2u);
        now[i] = clock_gettime(clk, &ts) == 0 ? (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec : -1;
    }
    Py_END_ALLOW_THREADS
    if ((out = PyList_New(0)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (now[i] == was[i] && now[i] >= 0)
            continue;
        PyObject *item = Py_BuildValue("(nL)", i, now[i]);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(item);
    }
done:
    PyMem_RawFree(pids);
    PyMem_RawFree(was);
    PyMem_RawFree(now);
    return out;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* pids(procfd): every process listed in the procfs root, ascending, by ProcFS.pids()'s rule for a name (ASCII
 * digits, no leading zero, at most PID_MAX_LIMIT).  Listed through a directory fd of its own (its own offset). */
static PyObject *pids(PyObject *self, PyObject *args) {
    (void)self;
    int procfd;
    if (!PyArg_ParseTuple(args, "i:pids", &procfd))
        return NULL;
    buffer found = {NULL, 0, 0};
    int err = 0, nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    int dfd = openat(procfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        err = errno;
    } else {
        char dents[32768];
        for (;;) {
            long got = syscall(SYS_getdents64, dfd, dents, sizeof dents);
            if (got < 0) {
                err = errno;
                break;
            }
            if (got == 0)
                break;
            for (long off = 0; off < got && !nomem;) {
                struct dirent64 *d = (struct dirent64 *)(dents + off);
                off += d->d_reclen;
                const char *name = d->d_name;
                if (name[0] < '1' || name[0] > '9')
                    continue;
                long pid = 0;
                int k = 0, ok = 1;
                for (; name[k] && ok; k++) {
                    ok = name[k] >= '0' && name[k] <= '9' && k < 7;
                    pid = pid * 10 + (name[k] - '0');
                }
                if (!ok || pid > PID_MAX_LIMIT)
                    continue;
                nomem = buf_put(&found, &pid, sizeof pid) < 0;
            }
            if (nomem)
                break;
        }
        close(dfd);
        if (!err && !nomem && found.len)
            qsort(found.data, found.len / sizeof(long), sizeof(long), cmp_long);
    }
    Py_END_ALLOW_THREADS
    if (err || nomem) {
        PyMem_RawFree(found.data);
        if (nomem)
            return PyErr_NoMemory();
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_ssize_t n = (Py_ssize_t)(found.len / sizeof(long));
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        long pid;
        memcpy(&pid, found.data + (size_t)i * sizeof pid, sizeof pid);
        PyObject *v = PyLong_FromLong(pid);
        if (v == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, v);
    }
    PyMem_RawFree(found.data);
    return list;
}

static PyMethodDef methods[] = {
    {"pids", pids, METH_VARARGS, "pids(procfd) -> every pid listed in the procfs root, ascending"},
    {"moved", moved, METH_VARARGS, "moved(pids, clocks) -> [(index, CPU clock now or -1)] of the pids whose clock moved"},
    {"links", links, METH_VARARGS, "links(procfd, pids, types) -> (agg, vanished, denied, retry)"},
    {"describe", describe, METH_VARARGS, "describe(procfd, pid) -> (start, ppid, uid, comm, cmdline) or None"},
    {"fds", fds, METH_VARARGS, "fds(procfd, pids, types[, skip bitmap]) -> ([(type index, inode, pid, fd)], pids left to Python)"},
    {"relations", relations, METH_VARARGS, "relations(procfd, [(path, dev, ino, hierarchical)]) -> per row (parent, owner) or None"},
    {"nsfs_mounts", nsfs_mounts, METH_VARARGS, "nsfs_mounts(procfd, entries, types) -> ([(entry index, type index, inode, mount point)], entries left to Python)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "nsinspect.node._scan", "The node scan's hot loop in C.", -1, methods};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
