/* The HILL terms and their gradient on a CPU in one call: the formula of losses/hill_loss.py (_terms_numpy and
 * _grad_numpy), in float64 after reading the float32 features. Built at first use by losses/hill_native.py and
 * loaded with ctypes; no Python or torch headers, so any C compiler builds it in a fraction of a second. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define EPS 1e-8

/* Per class, in the work buffer (PER doubles each). */
enum { N_, SX, SY, SQ, MX, MY, RMS, HAS, HS, ECX, ECY, SR, GMX, GMY, PER };

/* Returns 0, or 1 for a label outside [0, k), 2 for a sample index outside [0, n_points), 3 when out of memory.
 *
 * x (b, d) float32 rows of stride x_stride; y, idx (b) int64; a (2, d) and c (2) the map into loss space
 * u = x a^T + c; centers (k, 2), spreads, class_mask (k); sep_min, sep_pairs (k, k); point_pos (n_points, 2),
 * point_mask (n_points); r0 the reference radius. terms (6) receives center, spread, sep, point, scale,
 * |1 - scale|. With g (6) not NULL, gx (b, d) float32 receives d(g . terms)/dx. */
int hill_terms_grad(int64_t b, int64_t d, int64_t k, int64_t n_points, const float *x, int64_t x_stride,
                    const int64_t *y, const int64_t *idx, const double *a, const double *c, const double *centers,
                    const double *spreads, const double *class_mask, const double *sep_min,
                    const double *sep_pairs, const double *point_pos, const double *point_mask, double r0,
                    const double *g, double *terms, float *gx) {
    double *u = malloc(sizeof(double) * (size_t)(2 * b + PER * k + 3 * k + 1));
    if (!u) return 3;
    double *cl = u + 2 * b, *row = cl + PER * k;
    for (int64_t j = 0; j < PER * k; j++) cl[j] = 0.0;
    int64_t i, j, l;
    for (i = 0; i < b; i++) {
        if (y[i] < 0 || y[i] >= k) { free(u); return 1; }
        if (idx[i] < 0 || idx[i] >= n_points) { free(u); return 2; }
    }
    /* the batch in loss space and the per-class sums of u, 1 and |u|^2 */
    double sum_q = 0.0;
    for (i = 0; i < b; i++) {
        const float *xi = x + i * x_stride;
        /* four partial sums per output, so the additions do not wait on each other */
        double p0[4] = {0.0, 0.0, 0.0, 0.0}, p1[4] = {0.0, 0.0, 0.0, 0.0};
        for (j = 0; j + 4 <= d; j += 4) {
            for (int t = 0; t < 4; t++) {
                p0[t] += a[j + t] * xi[j + t];
                p1[t] += a[d + j + t] * xi[j + t];
            }
        }
        for (; j < d; j++) {
            p0[0] += a[j] * xi[j];
            p1[0] += a[d + j] * xi[j];
        }
        double u0 = c[0] + ((p0[0] + p0[1]) + (p0[2] + p0[3])), u1 = c[1] + ((p1[0] + p1[1]) + (p1[2] + p1[3]));
        u[2 * i] = u0;
        u[2 * i + 1] = u1;
        double *s = cl + PER * y[i];
        s[N_] += 1.0;
        s[SX] += u0;
        s[SY] += u1;
        s[SQ] += u0 * u0 + u1 * u1;
    }
    double num_c = 0, den_c = 0, num_s = 0, den_s = 0, num_sep = 0, den_sep = 0, num_p = 0, den_p = 0;
    for (l = 0; l < k; l++) {
        double *s = cl + PER * l, n = s[N_], ncl = n > 1.0 ? n : 1.0;
        s[N_] = ncl;  /* from here on: the count, at least 1 */
        s[MX] = s[SX] / ncl;
        s[MY] = s[SY] / ncl;
        sum_q += s[SQ];
        double var = s[SQ] / ncl - (s[MX] * s[MX] + s[MY] * s[MY]);
        s[RMS] = sqrt((var > 0.0 ? var : 0.0) + EPS);
        s[HAS] = n > 0.0 ? class_mask[l] : 0.0;
        s[HS] = n > 1.0 ? class_mask[l] : 0.0;
        s[ECX] = s[MX] - centers[2 * l];
        s[ECY] = s[MY] - centers[2 * l + 1];
        s[SR] = s[RMS] - spreads[l];
        num_c += s[HAS] * (s[ECX] * s[ECX] + s[ECY] * s[ECY]);
        den_c += s[HAS];
        num_s += s[HS] * s[SR] * s[SR];
        den_s += s[HS];
        s[GMX] = s[GMY] = 0.0;
        row[3 * l] = (n > 0.0);  /* presence, until the gradient rows overwrite it */
    }
    /* separation: the upper triangle of the pairs with a target, both classes in the batch */
    double c2 = g ? 2.0 * g[2] : 0.0;  /* divided by the pairs' denominator below */
    for (l = 0; l < k; l++) {
        for (j = l + 1; j < k; j++) {
            double wpair = sep_pairs[l * k + j];
            if (wpair == 0.0 || !row[3 * l] || !row[3 * j]) continue;
            double *p = cl + PER * l, *q = cl + PER * j;
            double dx = p[MX] - q[MX], dy = p[MY] - q[MY];
            double dist = sqrt(dx * dx + dy * dy + EPS), shrt = sep_min[l * k + j] - dist;
            den_sep += wpair;
            if (shrt > 0.0) {
                num_sep += wpair * shrt * shrt;
                double w = -c2 * wpair * shrt / dist;  /* d relu(m - |mu_l - mu_j|)^2 / d mu_l, times g_sep */
                p[GMX] += w * dx;
                p[GMY] += w * dy;
                q[GMX] -= w * dx;
                q[GMY] -= w * dy;
            }
        }
    }
    for (i = 0; i < b; i++) {
        double w = point_mask[idx[i]];
        if (w == 0.0) continue;
        double dx = u[2 * i] - point_pos[2 * idx[i]], dy = u[2 * i + 1] - point_pos[2 * idx[i] + 1];
        num_p += w * (dx * dx + dy * dy);
        den_p += w;
    }
    double r = sqrt(sum_q / (double)b + EPS), scale = r / r0;
    den_c = den_c > 1.0 ? den_c : 1.0;
    den_s = den_s > 1.0 ? den_s : 1.0;
    den_sep = den_sep > 1.0 ? den_sep : 1.0;
    den_p = den_p > 1.0 ? den_p : 1.0;
    terms[0] = num_c / den_c;
    terms[1] = num_s / den_s;
    terms[2] = num_sep / den_sep;
    terms[3] = num_p / den_p;
    terms[4] = scale;
    terms[5] = fabs(1.0 - scale);
    if (!g) { free(u); return 0; }

    /* d(g . terms)/du: per class k the row (gmu_k / n_k - cr_k mu_k, cr_k + gs), gathered by label */
    double c0 = 2.0 * g[0] / den_c, c1 = 2.0 * g[1] / den_s, c3 = 2.0 * g[3] / den_p;
    double sign = scale > 1.0 ? 1.0 : (scale < 1.0 ? -1.0 : 0.0);
    double gs = (g[4] + g[5] * sign) / ((double)b * r * r0);
    for (l = 0; l < k; l++) {
        double *s = cl + PER * l, ncl = s[N_];
        double gmx = c0 * s[HAS] * s[ECX] + s[GMX] / den_sep, gmy = c0 * s[HAS] * s[ECY] + s[GMY] / den_sep;
        double cr = c1 * s[HS] * s[SR] / s[RMS] / ncl;
        row[3 * l] = gmx / ncl - cr * s[MX];
        row[3 * l + 1] = gmy / ncl - cr * s[MY];
        row[3 * l + 2] = cr + gs;
    }
    for (i = 0; i < b; i++) {
        const double *rw = row + 3 * y[i];
        double g0 = rw[0] + rw[2] * u[2 * i], g1 = rw[1] + rw[2] * u[2 * i + 1];
        double w = point_mask[idx[i]];
        if (w != 0.0) {
            g0 += c3 * w * (u[2 * i] - point_pos[2 * idx[i]]);
            g1 += c3 * w * (u[2 * i + 1] - point_pos[2 * idx[i] + 1]);
        }
        float *gi = gx + i * d;
        for (j = 0; j < d; j++) gi[j] = (float)(g0 * a[j] + g1 * a[d + j]);
    }
    free(u);
    return 0;
}
