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
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static PyMethodDef methods[] = {
    {"links", links, METH_VARARGS, "links(procfd, pids, types) -> (agg, vanished, denied, retry)"},
    {"describe", describe, METH_VARARGS, "describe(procfd, pid) -> (start, ppid, uid, comm, cmdline) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "nsinspect.node._scan", "The node scan's hot loop in C.", -1, methods};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
