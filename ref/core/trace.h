/* trace.h: how forwards record named intermediate tensors into a hylo_trace (internal; the
 * public side is hylo_trace_* in hylo.h). A layer receives a tracer naming its scope
 * ("pos8.layers.3") and emits tensors under names relative to it ("mla.q_pe"). A NULL tracer,
 * or one without a trace, records nothing and costs one branch. Emitting copies the data;
 * an allocation failure is remembered by the trace and reported when it is saved. */
#ifndef HYLO_TRACE_H
#define HYLO_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "hylo.h"

typedef struct {
    hylo_trace *trace;  /* NULL: tracing off */
    char scope[128];    /* prefix of every name emitted, without the final '.' */
} hylo_tracer;

/* A tracer for the sub-scope "parent.scope.<formatted>" (or just <formatted> at the root). */
hylo_tracer hylo_tracer_child(const hylo_tracer *parent, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool hylo_tracer_on(const hylo_tracer *tr);

/* Records `scope.name` with `ndim` dims `shape` (product = rows * width) copied from
 * src: `rows` rows of `width` floats, row r starting at src + r * stride + offset. */
void hylo_trace_emit_slice(const hylo_tracer *tr, const char *name, const float *src,
                           int64_t rows, int64_t stride, int64_t offset, int64_t width,
                           int ndim, const int64_t *shape);
/* A contiguous tensor. */
void hylo_trace_emit(const hylo_tracer *tr, const char *name, const float *src, int ndim,
                     const int64_t *shape);

#endif
