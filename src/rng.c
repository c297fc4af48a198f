/* rng.c — the library's seeded generator: xoshiro256** (Blackman & Vigna),
 * seeded through splitmix64, so a seed gives the same stream everywhere.
 * Normal draws use Box-Muller; the second value of each pair is kept. */
#include "internal.h"

struct cr_rng {
  uint64_t s[4];
  bool has_spare;
  double spare;
};

#define NO_SPARE UINT64_MAX /* state word 4 when no spare normal is kept */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(cr_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

void cr_rng_seed(cr_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&x);
  r->has_spare = false;
}

cr_rng *cr_rng_new(uint64_t seed) {
  cr_rng *r = cr__malloc(sizeof *r);
  if (r)
    cr_rng_seed(r, seed);
  return r;
}

void cr_rng_free(cr_rng *r) { free(r); }

double cr_rng_uniform(cr_rng *r) { return (double)(next_u64(r) >> 11) * 0x1.0p-53; }

double cr_rng_normal(cr_rng *r) {
  if (r->has_spare) {
    r->has_spare = false;
    return r->spare;
  }
  double u1, u2;
  do
    u1 = cr_rng_uniform(r);
  while (u1 <= 0.0);
  u2 = cr_rng_uniform(r);
  double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586476925 * u2;
  r->spare = rad * sin(th);
  r->has_spare = true;
  return rad * cos(th);
}

uint64_t cr_rng_below(cr_rng *r, uint64_t n) {
  if (n <= 1)
    return 0;
  /* rejection sampling: no modulo bias */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do
    x = next_u64(r);
  while (x >= limit);
  return x % n;
}

void cr_rng_get_state(const cr_rng *r, uint64_t st[5]) {
  memcpy(st, r->s, sizeof r->s);
  if (r->has_spare)
    memcpy(&st[4], &r->spare, sizeof(double));
  else
    st[4] = NO_SPARE;
}

void cr_rng_set_state(cr_rng *r, const uint64_t st[5]) {
  memcpy(r->s, st, sizeof r->s);
  r->has_spare = st[4] != NO_SPARE;
  if (r->has_spare)
    memcpy(&r->spare, &st[4], sizeof(double));
}

static cr_status fill_check(cr_ctx *ctx, const char *op, cr_tensor *t, cr_rng *rng) {
  if (!cr__check_inputs(ctx, op, 1, &t))
    return ctx && ctx->status ? ctx->status : CR_ERR_ARG;
  if (!rng)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: rng is NULL (make one with cr_rng_new)", op);
  return CR_OK;
}

cr_status cr_fill_uniform(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double lo, double hi) {
  cr_status st = fill_check(ctx, "fill_uniform", t, rng);
  if (st != CR_OK)
    return st;
  if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "fill_uniform: bounds [%g, %g): need finite lo <= hi",
                            lo, hi);
  for (int64_t i = 0; i < t->numel; i++)
    cr_set_flat(t, i, lo + (hi - lo) * cr_rng_uniform(rng));
  return CR_OK;
}

cr_status cr_fill_normal(cr_ctx *ctx, cr_tensor *t, cr_rng *rng, double mean, double std) {
  cr_status st = fill_check(ctx, "fill_normal", t, rng);
  if (st != CR_OK)
    return st;
  if (!(std >= 0) || !isfinite(mean) || !isfinite(std))
    return cr_ctx_set_error(
        ctx, CR_ERR_ARG, "fill_normal: mean %g, std %g: need finite mean and std >= 0", mean, std);
  for (int64_t i = 0; i < t->numel; i++)
    cr_set_flat(t, i, mean + std * cr_rng_normal(rng));
  return CR_OK;
}
