/*
 * timekit lab shim: LD_PRELOAD'ed into chronyd together with libfaketime.
 *
 * chronyd asks the kernel for packet receive timestamps (SO_TIMESTAMP,
 * SO_TIMESTAMPNS, SO_TIMESTAMPING). libfaketime does not fake those, so a
 * faked chronyd would stamp T2 with the real clock and T3 with the fake one:
 * replies come out "half skewed". This setsockopt refuses the three options
 * (-1, errno ENOPROTOOPT), chronyd then falls back to reading its own (faked)
 * clock for receive timestamps. Every other option goes to the real
 * setsockopt (dlsym(RTLD_NEXT)).
 *
 * Built by timekit.lab.chrony.build_shim():
 *   gcc -shared -fPIC -O2 -o shim.so shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

#ifndef SO_TIMESTAMP
#define SO_TIMESTAMP 29
#endif
#ifndef SO_TIMESTAMPNS
#define SO_TIMESTAMPNS 35
#endif
#ifndef SO_TIMESTAMPING
#define SO_TIMESTAMPING 37
#endif
/* 64-bit time variants (glibc may map the plain names onto these) */
#define TK_SO_TIMESTAMP_NEW 63
#define TK_SO_TIMESTAMPNS_NEW 64
#define TK_SO_TIMESTAMPING_NEW 65

typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);

static int is_timestamp_option(int level, int optname)
{
    if (level != SOL_SOCKET)
        return 0;
    switch (optname) {
    case SO_TIMESTAMP:
    case SO_TIMESTAMPNS:
    case SO_TIMESTAMPING:
    case TK_SO_TIMESTAMP_NEW:
    case TK_SO_TIMESTAMPNS_NEW:
    case TK_SO_TIMESTAMPING_NEW:
        return 1;
    default:
        return 0;
    }
}

int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
    static setsockopt_fn real_setsockopt = NULL;

    if (is_timestamp_option(level, optname)) {
        errno = ENOPROTOOPT;
        return -1;
    }
    if (real_setsockopt == NULL) {
        real_setsockopt = (setsockopt_fn)dlsym(RTLD_NEXT, "setsockopt");
        if (real_setsockopt == NULL) {
            errno = ENOSYS;
            return -1;
        }
    }
    return real_setsockopt(fd, level, optname, optval, optlen);
}

/*
 * Ground truth for the lab: at load time (chronyd's exec, when libfaketime anchors its rate)
 * write one line "REAL_NS FAKE_NS" to $TIMEKIT_LAB_ANCHOR: the real CLOCK_REALTIME read by a
 * raw syscall (libfaketime does not intercept it) and the faked one read through libfaketime,
 * back to back. The server's truth is then fake0 - real0 + drift * (t - real0) exactly, with
 * no guess of when the exec happened.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__attribute__((constructor)) static void timekit_record_anchor(void)
{
    const char *path = getenv("TIMEKIT_LAB_ANCHOR");
    struct timespec real, fake;
    FILE *f;
    if (path == NULL || path[0] == '\0')
        return;
    if (syscall(SYS_clock_gettime, CLOCK_REALTIME, &real) != 0 || clock_gettime(CLOCK_REALTIME, &fake) != 0)
        return;
    f = fopen(path, "w");
    if (f == NULL)
        return;
    fprintf(f, "%lld %lld\n", (long long)real.tv_sec * 1000000000LL + real.tv_nsec,
            (long long)fake.tv_sec * 1000000000LL + fake.tv_nsec);
    fclose(f);
}
