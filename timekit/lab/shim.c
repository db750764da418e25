/*
 * timekit lab shim: LD_PRELOAD'ed into chronyd together with libfaketime.
 *
 * chronyd asks the kernel for packet receive timestamps. libfaketime does not fake those, so a
 * faked chronyd would stamp T2 with the real clock and T3 with the fake one: replies come out
 * "half skewed". Refusing every timestamp option made chronyd read its (faked) clock after it was
 * woken instead, which puts the scheduler's wake-up latency into T2: on a busy 2-vCPU VM tens to
 * hundreds of us, a server-side asymmetry no real server (which has kernel stamps) shows, and one
 * that hits clients differently depending on which CPU is idle when their request lands.
 *
 * So this shim:
 * - refuses SO_TIMESTAMPING (-1, ENOPROTOOPT): no transmit stamps in the error queue, which would
 *   carry the real clock too; chronyd then falls back to SO_TIMESTAMPNS;
 * - lets SO_TIMESTAMPNS / SO_TIMESTAMP through, and in recvmsg/recvmmsg rewrites each
 *   SCM_TIMESTAMPNS / SCM_TIMESTAMP from the real clock to the faked one: kernel stamp + (fake -
 *   real), the difference read at that moment (real read by raw syscall on both sides of the faked
 *   read, their midpoint, the narrowest of a few tries; libfaketime's rate changes it by 100 ppm x
 *   the stamp's age, ~10 ns).
 * Every other option and call goes to the real function (dlsym(RTLD_NEXT)).
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

static int refused_option(int level, int optname)
{
    return level == SOL_SOCKET && (optname == SO_TIMESTAMPING || optname == TK_SO_TIMESTAMPING_NEW);
}

int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
    static setsockopt_fn real_setsockopt = NULL;

    if (refused_option(level, optname)) {
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

#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NEW_IS_NATIVE (sizeof(time_t) == 8 && sizeof(long) == 8)

static long long ns_of(const struct timespec *ts)
{
    return (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

/* fake - real now, ns: the real clock read by raw syscall (libfaketime does not see it) around
 * one faked read, their midpoint against it; of up to 8 tries the narrowest bracket, and the first
 * below 20 us ends the search. A preemption inside a bracket (a busy machine: hundreds of us) would
 * otherwise move T2 by half of it, beyond the reply's delay/2: a server no NTP bound describes. */
static long long fake_minus_real_ns(void)
{
    struct timespec r1, f, r2;
    long long best = 0, width, best_width = -1;
    int i;
    for (i = 0; i < 8; i++) {
        syscall(SYS_clock_gettime, CLOCK_REALTIME, &r1);
        clock_gettime(CLOCK_REALTIME, &f);
        syscall(SYS_clock_gettime, CLOCK_REALTIME, &r2);
        width = ns_of(&r2) - ns_of(&r1);
        if (best_width < 0 || width < best_width) {
            best_width = width;
            best = ns_of(&f) - (ns_of(&r1) + width / 2);
        }
        if (best_width <= 20000)
            break;
    }
    return best;
}

/*
 * Ground truth for the lab: once, at the first packet chronyd receives (after every constructor has
 * run: libfaketime's init anchors its rate line, and a clock read before it would be on a line it
 * then redraws), write one line "REAL_NS FAKE_NS" to $TIMEKIT_LAB_ANCHOR: the real CLOCK_REALTIME
 * read by a raw syscall (libfaketime does not intercept it) on both sides of the faked one read
 * through libfaketime (2-4 us), their midpoint, from the narrowest of 16 tries. Written to a temp
 * file and renamed, so a reader sees the whole line or nothing. The server's truth is then
 * fake0 - real0 + drift * (t - real0) exactly, with no guess of when the exec happened.
 */
#include <stdio.h>
#include <stdlib.h>

static const char *anchor_path = NULL;
static int anchor_written = 0;

__attribute__((constructor)) static void timekit_anchor_path(void)
{
    anchor_path = getenv("TIMEKIT_LAB_ANCHOR");  /* no clock read here: see above */
}

static void record_anchor_once(void)
{
    struct timespec real, fake, real2;
    long long best_real = 0, best_fake = 0, best_width = -1;
    char tmp[4096];
    FILE *f;
    int i;
    if (anchor_written || anchor_path == NULL || anchor_path[0] == '\0')
        return;
    anchor_written = 1;
    for (i = 0; i < 16; i++) {
        if (syscall(SYS_clock_gettime, CLOCK_REALTIME, &real) != 0 || clock_gettime(CLOCK_REALTIME, &fake) != 0
            || syscall(SYS_clock_gettime, CLOCK_REALTIME, &real2) != 0)
            return;
        if (best_width < 0 || ns_of(&real2) - ns_of(&real) < best_width) {
            best_width = ns_of(&real2) - ns_of(&real);
            best_real = ns_of(&real) + best_width / 2;  /* the real instant of the faked read: the midpoint */
            best_fake = ns_of(&fake);
        }
    }
    if (snprintf(tmp, sizeof tmp, "%s.%d.tmp", anchor_path, (int)getpid()) >= (int)sizeof tmp)
        return;
    f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f, "%lld %lld\n", best_real, best_fake);
    if (fclose(f) == 0)
        rename(tmp, anchor_path);
}

static void to_fake(struct msghdr *msg)
{
    struct cmsghdr *c;
    long long shift = 0;
    int have_shift = 0;

    record_anchor_once();
    if (msg == NULL || msg->msg_control == NULL)
        return;
    for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (!have_shift) {
            shift = fake_minus_real_ns();
            have_shift = 1;
        }
        /* the _NEW variants carry 64-bit fields: the same layout as struct timespec/timeval only
         * where time_t and long are 64 bits (x86_64, aarch64); elsewhere they are left alone */
        if ((c->cmsg_type == SO_TIMESTAMPNS || (NEW_IS_NATIVE && c->cmsg_type == TK_SO_TIMESTAMPNS_NEW))
            && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            long long ns;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            ns = ns_of(&ts) + shift;
            ts.tv_sec = ns / 1000000000LL;
            ts.tv_nsec = ns % 1000000000LL;
            if (ts.tv_nsec < 0) {  /* floor, so tv_nsec stays in [0, 1e9) */
                ts.tv_sec -= 1;
                ts.tv_nsec += 1000000000LL;
            }
            memcpy(CMSG_DATA(c), &ts, sizeof ts);
        } else if ((c->cmsg_type == SO_TIMESTAMP || (NEW_IS_NATIVE && c->cmsg_type == TK_SO_TIMESTAMP_NEW))
                   && c->cmsg_len >= CMSG_LEN(sizeof(struct timeval))) {
            struct timeval tv;
            long long us;
            memcpy(&tv, CMSG_DATA(c), sizeof tv);
            us = (long long)tv.tv_sec * 1000000LL + tv.tv_usec + shift / 1000;
            tv.tv_sec = us / 1000000LL;
            tv.tv_usec = us % 1000000LL;
            if (tv.tv_usec < 0) {
                tv.tv_sec -= 1;
                tv.tv_usec += 1000000LL;
            }
            memcpy(CMSG_DATA(c), &tv, sizeof tv);
        }
    }
}

typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);
typedef int (*recvmmsg_fn)(int, struct mmsghdr *, unsigned int, int, struct timespec *);

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    static recvmsg_fn real_recvmsg = NULL;
    ssize_t n;

    if (real_recvmsg == NULL) {
        real_recvmsg = (recvmsg_fn)dlsym(RTLD_NEXT, "recvmsg");
        if (real_recvmsg == NULL) {
            errno = ENOSYS;
            return -1;
        }
    }
    n = real_recvmsg(fd, msg, flags);
    if (n >= 0)
        to_fake(msg);
    return n;
}

int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout)
{
    static recvmmsg_fn real_recvmmsg = NULL;
    int n, i;

    if (real_recvmmsg == NULL) {
        real_recvmmsg = (recvmmsg_fn)dlsym(RTLD_NEXT, "recvmmsg");
        if (real_recvmmsg == NULL) {
            errno = ENOSYS;
            return -1;
        }
    }
    n = real_recvmmsg(fd, msgvec, vlen, flags, timeout);
    for (i = 0; i < n; i++)
        to_fake(&msgvec[i].msg_hdr);
    return n;
}
