/* svd.c: thin SVD in double precision through LAPACK's dgesdd (OpenBLAS), and the energy
 * bookkeeping of the dynamic rank (spec sec. 7). */
#include <limits.h>
#include <stdlib.h>

#include "upcycle/upcycle.h"

/* LAPACK, Fortran calling convention: arguments by reference, column-major arrays, and the
 * length of each character argument appended (gfortran's hidden argument). */
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work,
             const int *lwork, int *iwork, int *info, size_t jobz_len);

void hylo_svd_free(hylo_svd *svd)
{
    free(svd->U);
    free(svd->s);
    free(svd->Vt);
    svd->U = svd->s = svd->Vt = NULL;
}

/* The row-major A [m, n] is, read column-major, A^T [n, m]. LAPACK factors that one:
 * A^T = U' S V'^T, so A = V' S U'^T: LAPACK's VT' [k, m] (column-major, ld k) read row-major is
 * U [m, k], and its U' [n, k] (column-major, ld n) read row-major is Vt [k, n]. No transposes. */
hylo_status hylo_svd_compute(double *A, int64_t m, int64_t n, bool vectors, hylo_svd *out,
                             hylo_error *err)
{
    const int64_t k = m < n ? m : n;
    *out = (hylo_svd){.m = m, .n = n, .k = k};
    if (m < 1 || n < 1 || m > INT_MAX / 8 || n > INT_MAX / 8)
        return hylo_error_set(err, HYLO_ERR_RANGE, "svd: a [%lld, %lld] matrix is out of range",
                              (long long)m, (long long)n);
    const int M = (int)n, N = (int)m, K = (int)k, ld_u = vectors ? M : 1, ld_vt = vectors ? K : 1;
    const char *jobz = vectors ? "S" : "N";
    out->s = malloc((size_t)k * sizeof *out->s);
    int *iwork = malloc((size_t)(8 * k) * sizeof *iwork);
    if (vectors) {
        out->U = malloc((size_t)(m * k) * sizeof *out->U);
        out->Vt = malloc((size_t)(k * n) * sizeof *out->Vt);
    }
    double query = 0.0, dummy = 0.0, *work = NULL;
    int lwork = -1, info = 0;
    bool ok = out->s && iwork && (!vectors || (out->U && out->Vt));
    if (ok) {
        dgesdd_(jobz, &M, &N, A, &M, out->s, vectors ? out->Vt : &dummy, &ld_u,
                vectors ? out->U : &dummy, &ld_vt, &query, &lwork, iwork, &info, 1);
        ok = info == 0 && query < (double)INT_MAX;
        lwork = (int)query;
        work = ok ? malloc((size_t)lwork * sizeof *work) : NULL;
        ok = work != NULL;
    }
    if (ok)
        dgesdd_(jobz, &M, &N, A, &M, out->s, vectors ? out->Vt : &dummy, &ld_u,
                vectors ? out->U : &dummy, &ld_vt, work, &lwork, iwork, &info, 1);
    free(work);
    free(iwork);
    if (ok && info == 0) return HYLO_OK;
    hylo_svd_free(out);
    if (!ok)
        return hylo_error_set(err, HYLO_ERR_NOMEM,
                              "svd: cannot allocate the workspace of a [%lld, %lld] matrix",
                              (long long)m, (long long)n);
    return hylo_error_set(err, HYLO_ERR_NUMERIC,
                          "svd: LAPACK dgesdd failed on a [%lld, %lld] matrix (info %d)",
                          (long long)m, (long long)n, info);
}

double hylo_svd_energy(const double *s, int64_t k, int64_t r)
{
    double kept = 0.0, total = 0.0;
    for (int64_t i = 0; i < k; i++) {
        total += s[i] * s[i];
        if (i < r) kept += s[i] * s[i];
    }
    return total > 0.0 ? kept / total : 1.0;
}

int64_t hylo_rank_for_energy(const double *s, int64_t k, double delta)
{
    double total = 0.0;
    for (int64_t i = 0; i < k; i++) total += s[i] * s[i];
    /* kept adds in total's order, so r = k reaches energy exactly 1 */
    int64_t r = 1;
    double kept = s[0] * s[0];
    while (r < k && total > 0.0 && kept / total < delta) {
        kept += s[r] * s[r];
        r++;
    }
    r = (r + 7) / 8 * 8;
    return r < k ? r : k;
}
