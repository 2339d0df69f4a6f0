/* progress.h: a small progress reporter for long operations (internal, not public API).
 *
 * On a terminal it redraws one line (bar, percentage, rate, ETA) at most ~10 times a second;
 * when stderr is a file or a pipe it prints a plain line at each 10% step instead, so logs stay
 * short. Nothing at all is printed for operations smaller than `quiet_below` units. The caller
 * owns the struct; there is no global state. */
#ifndef HYLO_PROGRESS_H
#define HYLO_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *label;   /* borrowed: must outlive the reporter                     */
    const char *unit;    /* "B" formats amounts as KiB/MiB/GiB; anything else as is */
    uint64_t total;
    uint64_t done;
    double start;        /* seconds on the monotonic clock                          */
    double last_draw;
    int last_step;       /* last 10% step printed (plain mode)                      */
    bool enabled;
    bool tty;
    bool drawn;          /* a bar is on the terminal and needs its newline          */
} hylo_progress;

/* Starts reporting `total` units of work under `label`; quiet when label is NULL or
 * total < quiet_below. */
void hylo_progress_begin(hylo_progress *p, const char *label, uint64_t total, const char *unit,
                         uint64_t quiet_below);
/* `done` units are complete (monotonic; clamped to total). */
void hylo_progress_update(hylo_progress *p, uint64_t done);
/* Prints the final line (if reporting) and finishes the terminal line. */
void hylo_progress_end(hylo_progress *p);

#endif
