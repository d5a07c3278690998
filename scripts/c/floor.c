/* floor: the least work any namespace lister must do — for every numeric
 * entry of PROC, readlinkat() its 8 ns links.  Prints how many links it read.
 * Usage: floor [PROC]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static const char *types[] = {"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"};

int main(int argc, char **argv) {
    const char *proc = argc > 1 ? argv[1] : "/proc";
    int procfd = open(proc, O_RDONLY | O_DIRECTORY);
    if (procfd < 0) { perror(proc); return 1; }
    DIR *d = fdopendir(dup(procfd));
    struct dirent *e;
    char buf[64], path[64];
    long links = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        for (int t = 0; t < 8; t++) {
            snprintf(path, sizeof path, "%.32s/ns/%s", e->d_name, types[t]);
            if (readlinkat(procfd, path, buf, sizeof buf) > 0) links++;
        }
    }
    printf("%ld\n", links);
    return 0;
}
