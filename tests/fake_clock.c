/*
 * A test instrument: LD_PRELOAD'ed into one timekit process to put its clocks under a known fault
 * (FAULTS C2, C3, C5), the host's own clocks untouched.
 *
 *   TK_FAKE_OFFSET_NS     added to CLOCK_REALTIME (and _COARSE, CLOCK_TAI, gettimeofday, time):
 *                         a wall clock that was stepped by that much (ns, signed)
 *   TK_FAKE_SLEW_PPM      the wall clock runs this much fast from the process start (a slew), on
 *                         the elapsed CLOCK_MONOTONIC_RAW
 *   TK_FAKE_SLEW_SINCE_RAW_NS  ... or from this CLOCK_MONOTONIC_RAW instant (one slew shared by
 *                         several processes started one after another)
 *   TK_FAKE_SLEW_MONOTONIC=1  CLOCK_MONOTONIC and CLOCK_BOOTTIME are slewed too, as the kernel
 *                         slews them; CLOCK_MONOTONIC_RAW never is
 *
 * Sleeps until an absolute instant of a faked clock are turned into relative ones, so the process
 * still sleeps as long as it asked. The kernel's receive timestamps (SO_TIMESTAMP*) carry the real
 * clock, so those options are refused and the client falls back to its own (faked) reads.
 *
 *   gcc -shared -fPIC -O2 -o fake_clock.so fake_clock.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

typedef int (*gettime_fn)(clockid_t, struct timespec *);
typedef int (*nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);
typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);

static gettime_fn real_gettime;
static nanosleep_fn real_nanosleep;
static setsockopt_fn real_setsockopt;
static int64_t offset_ns;
static double slew;
static int slew_monotonic;
static int64_t raw0_ns;

static int64_t ts_ns(const struct timespec *ts) { return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec; }

static void ns_ts(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = ns / 1000000000LL;
    ts->tv_nsec = ns % 1000000000LL;
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000LL;
        ts->tv_sec -= 1;
    }
}

static void setup(void)
{
    if (real_gettime != NULL)
        return;
    real_nanosleep = (nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    real_setsockopt = (setsockopt_fn)dlsym(RTLD_NEXT, "setsockopt");
    const char *o = getenv("TK_FAKE_OFFSET_NS");
    const char *s = getenv("TK_FAKE_SLEW_PPM");
    const char *m = getenv("TK_FAKE_SLEW_MONOTONIC");
    offset_ns = o ? strtoll(o, NULL, 10) : 0;
    slew = s ? strtod(s, NULL) * 1e-6 : 0.0;
    slew_monotonic = m != NULL && strcmp(m, "1") == 0;
    gettime_fn g = (gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    struct timespec raw;
    g(CLOCK_MONOTONIC_RAW, &raw);
    const char *since = getenv("TK_FAKE_SLEW_SINCE_RAW_NS");
    raw0_ns = since ? strtoll(since, NULL, 10) : ts_ns(&raw);
    real_gettime = g;
}

__attribute__((constructor)) static void init(void) { setup(); }

static int is_wall(clockid_t id) { return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI; }

static int is_slewed(clockid_t id)
{
    return is_wall(id) || (slew_monotonic && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE
                                              || id == CLOCK_BOOTTIME));
}

/* what the fault adds to clock `id` now, ns */
static int64_t added_ns(clockid_t id)
{
    int64_t add = is_wall(id) ? offset_ns : 0;
    if (slew != 0.0 && is_slewed(id)) {
        struct timespec raw;
        real_gettime(CLOCK_MONOTONIC_RAW, &raw);
        add += (int64_t)((double)(ts_ns(&raw) - raw0_ns) * slew);
    }
    return add;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    setup();
    int rc = real_gettime(id, ts);
    if (rc == 0 && (is_wall(id) || is_slewed(id)))
        ns_ts(ts_ns(ts) + added_ns(id), ts);
    return rc;
}

#pragma GCC diagnostic ignored "-Wnonnull-compare"
int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    (void)tz;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv != NULL) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

int clock_nanosleep(clockid_t id, int flags, const struct timespec *req, struct timespec *rem)
{
    setup();
    if ((flags & TIMER_ABSTIME) && (is_wall(id) || is_slewed(id))) {
        struct timespec now, rel;
        clock_gettime(id, &now);
        int64_t left = ts_ns(req) - ts_ns(&now);
        if (left <= 0)
            return 0;
        ns_ts(left, &rel);
        return real_nanosleep(id, 0, &rel, NULL);
    }
    return real_nanosleep(id, flags, req, rem);
}

int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
    setup();
    /* SO_TIMESTAMP(NS|ING), old and 64-bit numbers */
    if (level == SOL_SOCKET && (optname == 29 || optname == 35 || optname == 37 || optname == 63
                                || optname == 64 || optname == 65)) {
        errno = ENOPROTOOPT;
        return -1;
    }
    return real_setsockopt(fd, level, optname, optval, optlen);
}
