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
 *   nsfs_mounts(procfd, entries) -> per entry, its mount namespace's nsfs mounts as
 *       [(root, mount point)] (bytes, as the mountinfo of that process shows them), or None
 *       (read its mountinfo in Python): listmount(2)/statmount(2), kernels >= 6.11 only.
 *   fds(procfd, pids, types) -> ([(type index, inode, pid, fd)], denied): open fds on namespaces.
 *   relations(procfd, rows) -> per (path, dev, ino, hierarchical) row, None (open it in Python) or
 *       (parent, owner), each (dev, ino) or None: ioctl NS_GET_PARENT / NS_GET_USERNS.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

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
    if (digits > 19)
        return 0;
    unsigned long long v = 0;
    for (const char *p = buf + tlen + 2; p < buf + n - 1; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (unsigned long long)(*p - '0');
    }
    return v;  /* 19 digits cannot overflow 64 bits */
}

static int read_links(int procfd, long pid, char types[][MAX_TYPE_LEN + 1], const size_t *tlens, int ntypes,
                      unsigned long long *out) {
    char path[32], buf[64];
    snprintf(path, sizeof path, "%ld/ns", pid);
    int nsfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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

static PyObject *links(PyObject *self, PyObject *args) {
    (void)self;
    int procfd;
    PyObject *pidlist, *types;
    if (!PyArg_ParseTuple(args, "iO!O:links", &procfd, &PyList_Type, &pidlist, &types))
        return NULL;
    char names[MAX_TYPES][MAX_TYPE_LEN + 1];
    size_t lens[MAX_TYPES];
    int ntypes = parse_types(types, names, lens);
    if (ntypes < 0)
        return NULL;
    Py_ssize_t npids = PyList_GET_SIZE(pidlist);
    long *pids = PyMem_RawMalloc(sizeof(long) * (size_t)(npids ? npids : 1));
    unsigned char *status = PyMem_RawMalloc((size_t)(npids ? npids : 1));
    unsigned long long *inos = PyMem_RawMalloc(sizeof(unsigned long long) * MAX_TYPES * (size_t)(npids ? npids : 1));
    pair *pairs = PyMem_RawMalloc(sizeof(pair) * (size_t)(npids ? npids : 1));
    PyObject *agg = NULL, *denied = NULL, *retry = NULL, *result = NULL;
    if (!pids || !status || !inos || !pairs) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < npids; i++) {
        pids[i] = PyLong_AsLong(PyList_GET_ITEM(pidlist, i));
        if (pids[i] == -1 && PyErr_Occurred())
            goto done;
    }

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < npids; i++)
        status[i] = (unsigned char)read_links(procfd, pids[i], names, lens, ntypes, inos + (size_t)i * MAX_TYPES);
    Py_END_ALLOW_THREADS

    long vanished = 0;
    denied = PyList_New(0);
    retry = PyList_New(0);
    agg = PyList_New(ntypes);
    if (!denied || !retry || !agg)
        goto done;
    for (Py_ssize_t i = 0; i < npids; i++) {
        if (status[i] == ST_VANISHED)
            vanished++;
        else if (status[i] != ST_OK && PyList_Append(status[i] == ST_DENIED ? denied : retry, PyList_GET_ITEM(pidlist, i)) < 0)
            goto done;
    }
    for (int t = 0; t < ntypes; t++) {
        Py_ssize_t n = 0;
        for (Py_ssize_t i = 0; i < npids; i++) {
            if (status[i] == ST_OK) {
                pairs[n].ino = inos[(size_t)i * MAX_TYPES + t];
                pairs[n].pid = pids[i];
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
    PyMem_RawFree(pids);
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

/* A field of /proc/<pid>/stat that must be a plain decimal number (else -1). */
static long long decimal(const char *s, size_t len) {
    if (len == 0 || len > 18)
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
    if (ppid < 0 || starttime < 0)
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

static PyObject *nsfs_mounts(PyObject *self, PyObject *args) {
    (void)self;
    int procfd;
    PyObject *entries;
    if (!PyArg_ParseTuple(args, "iO!:nsfs_mounts", &procfd, &PyList_Type, &entries))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(entries);
    PyObject *result = PyList_New(n);
    if (result == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(result, i, Py_None);
    }
#ifdef __NR_statmount
    const char **names = PyMem_RawCalloc((size_t)(n ? n : 1), sizeof *names);
    int *status = PyMem_RawCalloc((size_t)(n ? n : 1), sizeof *status);
    size_t *ends = PyMem_RawCalloc((size_t)(n ? n : 1), sizeof *ends);
    struct nsi_statmount *big = PyMem_RawMalloc(sizeof *big + STRINGS_SIZE);
    buffer out = {NULL, 0, 0};
    if (!names || !status || !ends || !big) {
        PyErr_NoMemory();
        Py_CLEAR(result);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        names[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(entries, i));
        if (names[i] == NULL) {
            Py_CLEAR(result);
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    our_root us;
    int ok = find_our_root(&us) == 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        status[i] = ok ? entry_mounts(procfd, names[i], &us, big, &out) : -1;
        ends[i] = out.len;
    }
    Py_END_ALLOW_THREADS
    size_t pos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (status[i] != 0)
            continue;
        PyObject *list = PyList_New(0);
        if (list == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        while (pos < ends[i]) {
            uint32_t lens[2];
            memcpy(lens, out.data + pos, sizeof lens);
            pos += sizeof lens;
            PyObject *item = Py_BuildValue("(y#y#)", out.data + pos, (Py_ssize_t)lens[0], out.data + pos + lens[0], (Py_ssize_t)lens[1]);
            pos += lens[0] + lens[1];
            if (item == NULL || PyList_Append(list, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(list);
                Py_CLEAR(result);
                goto done;
            }
            Py_DECREF(item);
        }
        PyList_SetItem(result, i, list);
    }
done:
    PyMem_RawFree(names);
    PyMem_RawFree(status);
    PyMem_RawFree(ends);
    PyMem_RawFree(big);
    PyMem_RawFree(out.data);
#else
    (void)procfd;
#endif
    return result;
}

static PyMethodDef methods[] = {
    {"links", links, METH_VARARGS, "links(procfd, pids, types) -> (agg, vanished, denied, retry)"},
    {"describe", describe, METH_VARARGS, "describe(procfd, pid) -> (start, ppid, uid, comm, cmdline) or None"},
    {"nsfs_mounts", nsfs_mounts, METH_VARARGS, "nsfs_mounts(procfd, entries) -> per entry [(root, mount point)] or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "nsinspect.node._scan", "The node scan's hot loop in C.", -1, methods};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
