/* error.c: the hylo_error record every fallible function fills. */
#include "hylo.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

hylo_status hylo_error_set(hylo_error *err, hylo_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

hylo_status hylo_error_wrap(hylo_error *err, const char *fmt, ...)
{
    if (!err) return HYLO_ERR_USAGE;
    char context[sizeof err->message];
    char previous[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    memcpy(previous, err->message, sizeof previous);
    /* context, then ": ", then the old message, truncated to fit */
    size_t n = strnlen(context, sizeof err->message - 1);
    memcpy(err->message, context, n);
    size_t room = sizeof err->message - 1 - n;
    size_t sep = room < 2 ? room : 2;
    memcpy(err->message + n, ": ", sep);
    size_t rest = strnlen(previous, room - sep);
    memcpy(err->message + n + sep, previous, rest);
    err->message[n + sep + rest] = '\0';
    return err->status;
}

const char *hylo_status_name(hylo_status status)
{
    switch (status) {
    case HYLO_OK: return "ok";
    case HYLO_ERR_IO: return "I/O error";
    case HYLO_ERR_FORMAT: return "format error";
    case HYLO_ERR_CONFIG: return "configuration error";
    case HYLO_ERR_SHAPE: return "shape error";
    case HYLO_ERR_RANGE: return "range error";
    case HYLO_ERR_NUMERIC: return "numeric error";
    case HYLO_ERR_NOMEM: return "out of memory";
    case HYLO_ERR_USAGE: return "usage error";
    }
    return "unknown error";
}
