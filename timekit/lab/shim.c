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
