/* clock.h: wall time and memory of this process, for progress reports and benchmarks
 * (internal, not public API). */
#ifndef HYLO_CLOCK_H
#define HYLO_CLOCK_H

/* Seconds on the monotonic clock (a difference of two calls is elapsed time). */
double hylo_seconds(void);
/* The peak resident set of this process so far, in bytes. */
double hylo_peak_rss_bytes(void);

#endif
