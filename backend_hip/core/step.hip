/* step.hip: decode steps recorded once as a HIP graph and replayed. A decode step is about a
 * dozen small launches per layer; launched one by one, the host's launch calls rather than the
 * GPU set its pace. Recorded by stream capture, a step becomes one graph launch.
 *
 * A recording replays at another position because every kernel of a step that depends on the
 * position reads it from ctx->steps.input (hylo_hip_pos), the host-side choices taken from it
 * (the decode attention's split plan and workspace) declare the positions they hold for
 * (hylo_hip_pos_holds), and the buffers it names stay where they are: the state's caches (its
 * layout, given by forward.c) and the context's workspaces (their generation). When any of
 * these changes, the next step records anew.
 *
 * A recording that fails (an op that must allocate, synchronize or grow a workspace, or a
 * platform that cannot capture) has run nothing: forward.c runs the step's ops again, one by
 * one, and the next step records again; after MAX_FAILURES failures in a row the context stops
 * recording. HYLO_HIP_GRAPH=0 turns recording off (comparisons). */
#include <stdlib.h>
#include <string.h>

#include "core/device.h"

#define MAX_FAILURES 3

hylo_status hylo_hip_steps_init(hylo_hip_ctx *ctx, hylo_error *err)
{
    hylo_hip_steps *st = &ctx->steps;
    const char *env = getenv("HYLO_HIP_GRAPH");
    st->off = env && strcmp(env, "0") == 0;
    hipError_t e = hipMalloc((void **)&st->input, sizeof *st->input);
    if (e != hipSuccess)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "hip backend: cannot allocate a step's "
                              "input: %s", hipGetErrorString(e));
    return HYLO_OK;
}

static void drop_recording(hylo_hip_steps *st)
{
    if (st->exec) (void)hipGraphExecDestroy((hipGraphExec_t)st->exec);
    st->exec = NULL;
}

void hylo_hip_steps_free(hylo_hip_ctx *ctx)
{
    drop_recording(&ctx->steps);
    hylo_hip_device_free(ctx->steps.input);
    ctx->steps.input = NULL;
}

hylo_hip_pos hylo_hip_pos_of(const hylo_hip_ctx *ctx, int64_t value)
{
    const hylo_hip_steps *st = &ctx->steps;
    if (!st->recording) return {value, NULL};
    return {value - st->host.pos, &st->input->pos};
}

void hylo_hip_pos_holds(hylo_hip_ctx *ctx, int64_t value, int64_t lo, int64_t hi)
{
    hylo_hip_steps *st = &ctx->steps;
    if (!st->recording) return;
    const int64_t shift = value - st->host.pos; /* value = position + shift */
    if (lo - shift > st->lo) st->lo = lo - shift;
    if (hi - shift < st->hi) st->hi = hi - shift;
}

bool hylo_hip_step_begin(void *vctx, int32_t token, int64_t pos, int64_t layout)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    hylo_hip_steps *st = &ctx->steps;
    const hipStream_t stream = hylo_hip_stream(ctx);
    if (st->off || !hylo_hip_ok(ctx)) return false;
    st->host = {pos, token};
    if (!hylo_hip_check(ctx, hipMemcpyAsync(st->input, &st->host, sizeof st->host,
                                            hipMemcpyHostToDevice, stream),
                        "step input"))
        return false;
    if (st->exec && st->layout == layout && st->generation == ctx->work_generation &&
        pos >= st->lo && pos <= st->hi) {
        if (!hylo_hip_check(ctx, hipGraphLaunch((hipGraphExec_t)st->exec, stream), "step replay"))
            return false;
        st->replays++;
        return true;
    }
    drop_recording(st);
    if (st->failures >= MAX_FAILURES) return false;
    if (hipStreamBeginCapture(stream, hipStreamCaptureModeThreadLocal) != hipSuccess) {
        (void)hipGetLastError();
        st->failures++;
        return false;
    }
    st->recording = true;
    st->lo = INT64_MIN;
    st->hi = INT64_MAX;
    st->layout = layout;
    st->generation = ctx->work_generation;
    return false;
}

hylo_status hylo_hip_step_end(void *vctx, bool *again, hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    hylo_hip_steps *st = &ctx->steps;
    *again = false;
    if (!st->recording) return hylo_hip_status(ctx, err);
    st->recording = false;
    hipGraph_t graph = NULL;
    hipGraphExec_t exec = NULL;
    hipError_t e = hipStreamEndCapture(hylo_hip_stream(ctx), &graph);
    if (e == hipSuccess && hylo_hip_ok(ctx)) e = hipGraphInstantiateWithFlags(&exec, graph, 0);
    if (graph) (void)hipGraphDestroy(graph);
    if (e != hipSuccess || !hylo_hip_ok(ctx) || st->lo > st->host.pos || st->hi < st->host.pos) {
        /* nothing ran: the failure is the recording's, the ops run again one by one */
        if (exec) (void)hipGraphExecDestroy(exec);
        (void)hipGetLastError();
        ctx->failure.status = HYLO_OK;
        ctx->failure.message[0] = '\0';
        st->failures++;
        *again = true;
        return HYLO_OK;
    }
    st->failures = 0;
    st->exec = exec;
    st->recordings++;
    hylo_hip_check(ctx, hipGraphLaunch(exec, hylo_hip_stream(ctx)), "step replay");
    return hylo_hip_status(ctx, err);
}
