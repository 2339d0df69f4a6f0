/* clock.c: the monotonic clock and the peak resident set of clock.h. */
#include "core/clock.h"

#include <sys/resource.h>
#include <time.h>

double hylo_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double hylo_peak_rss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return 1024.0 * (double)ru.ru_maxrss; /* Linux reports KiB */
}
