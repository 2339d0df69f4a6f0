/* progress.c: the progress reporter of progress.h (terminal bar, or plain lines at 10% steps). */
#include "core/progress.h"

#include "core/clock.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BAR_WIDTH 30
#define REDRAW_SECONDS 0.1

/* "1.50 GiB" for bytes, "1234 tokens" for anything else. */
static void format_amount(char *out, size_t size, double amount, const char *unit)
{
    if (strcmp(unit, "B") != 0) {
        snprintf(out, size, "%.0f %s", amount, unit);
        return;
    }
    static const char *const prefixes[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (amount >= 1024.0 && k < 4) {
        amount /= 1024.0;
        k++;
    }
    snprintf(out, size, k ? "%.2f %s" : "%.0f %s", amount, prefixes[k]);
}

static void format_duration(char *out, size_t size, double seconds)
{
    if (!(seconds >= 0.0) || seconds > 359999.0) { /* unknown (no rate yet) or absurd */
        snprintf(out, size, "--:--");
        return;
    }
    unsigned long s = (unsigned long)(seconds + 0.5);
    if (s >= 3600) snprintf(out, size, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
    else snprintf(out, size, "%lu:%02lu", s / 60, s % 60);
}

/* Shared figures of both display modes. */
typedef struct {
    double fraction;
    char done[32], total[32], rate[40], eta[24];
} figures;

static void compute(const hylo_progress *p, double t, figures *f)
{
    double elapsed = t - p->start;
    double rate = elapsed > 0.0 ? (double)p->done / elapsed : 0.0;
    f->fraction = p->total ? (double)p->done / (double)p->total : 1.0;
    format_amount(f->done, sizeof f->done, (double)p->done, p->unit);
    format_amount(f->total, sizeof f->total, (double)p->total, p->unit);
    format_amount(f->rate, sizeof f->rate, rate, p->unit);
    strncat(f->rate, "/s", sizeof f->rate - strlen(f->rate) - 1);
    format_duration(f->eta, sizeof f->eta, rate > 0.0 ? (double)(p->total - p->done) / rate : -1.0);
}

static void draw_bar(hylo_progress *p, double t)
{
    figures f;
    compute(p, t, &f);
    char bar[BAR_WIDTH + 1];
    int filled = (int)(f.fraction * BAR_WIDTH);
    for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < filled ? '#' : '-';
    bar[BAR_WIDTH] = '\0';
    /* \r returns to the line start; \033[K clears what a longer previous line left. */
    fprintf(stderr, "\r%s [%s] %3.0f%% %s / %s  %s  ETA %s\033[K", p->label, bar,
            f.fraction * 100.0, f.done, f.total, f.rate, f.eta);
    fflush(stderr);
    p->last_draw = t;
    p->drawn = true;
}

static void print_step(hylo_progress *p, double t)
{
    figures f;
    compute(p, t, &f);
    fprintf(stderr, "%s: %3.0f%% (%s of %s, %s, ETA %s)\n", p->label, f.fraction * 100.0, f.done,
            f.total, f.rate, f.eta);
}

void hylo_progress_begin(hylo_progress *p, const char *label, uint64_t total, const char *unit,
                         uint64_t quiet_below)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit ? unit : "";
    p->total = total;
    p->enabled = label != NULL && total >= quiet_below && total > 0;
    if (!p->enabled) return;
    p->tty = isatty(STDERR_FILENO) == 1;
    p->start = hylo_seconds();
    if (p->tty) draw_bar(p, p->start);
}

void hylo_progress_update(hylo_progress *p, uint64_t done)
{
    p->done = done < p->total ? done : p->total;
    if (!p->enabled) return;
    double t = hylo_seconds();
    if (p->tty) {
        if (t - p->last_draw >= REDRAW_SECONDS) draw_bar(p, t);
        return;
    }
    /* 10% steps; the last one is left to hylo_progress_end. */
    int step = (int)((double)p->done * 10.0 / (double)p->total);
    if (step > p->last_step && step < 10) {
        p->last_step = step;
        print_step(p, t);
    }
}

void hylo_progress_end(hylo_progress *p)
{
    if (!p->enabled) return;
    double t = hylo_seconds();
    if (p->tty) {
        draw_bar(p, t);
        fputc('\n', stderr);
    } else {
        char done[32], secs[24];
        format_amount(done, sizeof done, (double)p->done, p->unit);
        format_duration(secs, sizeof secs, t - p->start);
        fprintf(stderr, "%s: %s%s in %s\n", p->label, p->done == p->total ? "done, " : "stopped at ",
                done, secs);
    }
    p->enabled = false;
}
