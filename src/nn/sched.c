/* sched.c — learning-rate schedules as closed forms of the step count.
 *
 *   constant     lr = base
 *   step         lr = base * gamma^floor(step / step_size)          (StepLR)
 *   exponential  lr = base * gamma^step                              (ExponentialLR)
 *   cosine       lr = eta_min + (base - eta_min) (1 + cos(pi step / t_max)) / 2
 *                                                        (CosineAnnealingLR, periodic)
 *   linear       lr = base * (start + (end - start) min(step, total) / total)  (LinearLR)
 *   warmup       step < warmup_steps: warmup's lr(step); else lr(step - warmup_steps)
 *                                                        (SequentialLR)
 *
 * PyTorch evaluates the same functions recursively from the previous lr,
 * which differs from these by a few ulp; at a SequentialLR milestone it
 * evaluates the next schedule's closed form at its step 0, exactly as here.
 * The expressions keep PyTorch's closed-form operation order. */
#include <errno.h>

#include "chainrule/optim.h"
#include "internal.h"

#define SCHED_PI 3.14159265358979323846 /* math.pi; M_PI is not in ISO C */
#define MAX_WARMUP_DEPTH 16

static bool fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t n, const char *fmt, ...) {
  if (err && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
  }
  return false;
}

static bool check(const cr_sched *s, int depth, char *err, size_t n) {
  if (!s)
    return fail(err, n, "sched: schedule is NULL");
  if (depth > MAX_WARMUP_DEPTH)
    return fail(err, n, "sched: more than %d nested warmups (a cycle?)", MAX_WARMUP_DEPTH);
  switch (s->kind) {
  case CR_SCHED_CONSTANT: break;
  case CR_SCHED_STEP:
  case CR_SCHED_EXPONENTIAL:
    if (s->kind == CR_SCHED_STEP && s->step_size < 1)
      return fail(err, n, "sched: step_size %lld must be >= 1", (long long)s->step_size);
    if (!(s->gamma > 0 && isfinite(s->gamma)))
      return fail(err, n, "sched: gamma %g must be > 0 and finite", s->gamma);
    break;
  case CR_SCHED_COSINE:
    if (s->t_max < 1 || s->t_max > INT64_MAX / 2)
      return fail(err, n, "sched: t_max %lld must be >= 1", (long long)s->t_max);
    if (!(s->eta_min >= 0 && isfinite(s->eta_min)))
      return fail(err, n, "sched: eta_min %g must be >= 0 and finite", s->eta_min);
    break;
  case CR_SCHED_LINEAR:
    if (s->total_iters < 1)
      return fail(err, n, "sched: total_iters %lld must be >= 1", (long long)s->total_iters);
    if (!(s->start_factor > 0 && s->start_factor <= 1))
      return fail(err, n, "sched: start_factor %g must be in (0, 1]", s->start_factor);
    if (!(s->end_factor >= 0 && s->end_factor <= 1))
      return fail(err, n, "sched: end_factor %g must be in [0, 1]", s->end_factor);
    break;
  default: return fail(err, n, "sched: unknown kind %d", (int)s->kind);
  }
  if (s->warmup) {
    if (s->warmup_steps < 0)
      return fail(err, n, "sched: warmup_steps %lld must be >= 0", (long long)s->warmup_steps);
    return check(s->warmup, depth + 1, err, n);
  }
  return true;
}

bool cr_sched_check(const cr_sched *s, char *err, size_t n) { return check(s, 0, err, n); }

double cr_sched_lr(const cr_sched *s, double base, int64_t step) {
  if (step < 0 || !check(s, 0, NULL, 0))
    return NAN;
  while (s->warmup) {
    if (step < s->warmup_steps) {
      s = s->warmup;
      continue;
    }
    step -= s->warmup_steps;
    break;
  }
  switch (s->kind) {
  case CR_SCHED_CONSTANT: return base;
  case CR_SCHED_STEP: return base * pow(s->gamma, (double)(step / s->step_size));
  case CR_SCHED_EXPONENTIAL: return base * pow(s->gamma, (double)step);
  case CR_SCHED_COSINE: {
    /* periodic: reduce first so cos stays accurate for large steps */
    const double e = (double)(step % (2 * s->t_max));
    return s->eta_min + (base - s->eta_min) * (1 + cos(SCHED_PI * e / (double)s->t_max)) / 2;
  }
  case CR_SCHED_LINEAR: {
    const double e = (double)(step < s->total_iters ? step : s->total_iters);
    return base *
           (s->start_factor + (s->end_factor - s->start_factor) * e / (double)s->total_iters);
  }
  }
  return NAN;
}

void cr_sched_apply(const cr_sched *s, cr_optim *opt, int64_t step) {
  for (int g = 0; g < cr_optim_num_groups(opt); g++)
    cr_optim_set_lr(opt, g, cr_sched_lr(s, cr_optim_get_base_lr(opt, g), step));
}

/* ---- parsing */

/* The next ':'-separated field of *p (up to ':', '+' or the end), copied
 * into buf; false if there is none. */
static bool field(const char **p, char *buf, size_t n) {
  if (**p != ':')
    return false;
  (*p)++;
  size_t k = strcspn(*p, ":+");
  if (k == 0 || k >= n)
    return false;
  memcpy(buf, *p, k);
  buf[k] = '\0';
  *p += k;
  return true;
}

static bool to_double(const char *s, double *out) {
  char *end;
  errno = 0;
  *out = strtod(s, &end);
  return end != s && *end == '\0' && errno == 0 && isfinite(*out);
}

static bool to_int(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  *out = v;
  return end != s && *end == '\0' && errno == 0;
}

/* One schedule (no warmup) from the start of *p; advances *p past it. */
static bool parse_one(const char **p, cr_sched *out, const char *spec, char *err, size_t n) {
  static const struct {
    const char *name;
    cr_sched_kind kind;
    int min_args, max_args;
    const char *usage;
  } forms[] = {
      {"constant", CR_SCHED_CONSTANT, 0, 0, "constant"},
      {"step", CR_SCHED_STEP, 2, 2, "step:SIZE:GAMMA"},
      {"exp", CR_SCHED_EXPONENTIAL, 1, 1, "exp:GAMMA"},
      {"cosine", CR_SCHED_COSINE, 1, 2, "cosine:TMAX[:ETA_MIN]"},
      {"linear", CR_SCHED_LINEAR, 3, 3, "linear:START:END:TOTAL"},
  };
  size_t len = strcspn(*p, ":+");
  for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
    if (strlen(forms[f].name) != len || strncmp(*p, forms[f].name, len))
      continue;
    *p += len;
    char arg[3][64];
    int na = 0;
    while (na < 3 && field(p, arg[na], sizeof arg[na]))
      na++;
    if (na < forms[f].min_args || na > forms[f].max_args || **p == ':')
      return fail(err, n, "'%s': expected %s", spec, forms[f].usage);
    *out = (cr_sched){.kind = forms[f].kind};
    bool ok = true;
    switch (forms[f].kind) {
    case CR_SCHED_CONSTANT: break;
    case CR_SCHED_STEP:
      ok = to_int(arg[0], &out->step_size) && to_double(arg[1], &out->gamma);
      break;
    case CR_SCHED_EXPONENTIAL: ok = to_double(arg[0], &out->gamma); break;
    case CR_SCHED_COSINE:
      ok = to_int(arg[0], &out->t_max) && (na < 2 || to_double(arg[1], &out->eta_min));
      break;
    case CR_SCHED_LINEAR:
      ok = to_double(arg[0], &out->start_factor) && to_double(arg[1], &out->end_factor) &&
           to_int(arg[2], &out->total_iters);
      break;
    }
    if (!ok)
      return fail(err, n, "'%s': expected %s (with numbers)", spec, forms[f].usage);
    char why[128];
    if (!cr_sched_check(out, why, sizeof why))
      return fail(err, n, "'%s': %s", spec, why + strlen("sched: "));
    return true;
  }
  return fail(err, n,
              "'%s': unknown schedule '%.*s' (constant, step:SIZE:GAMMA, exp:GAMMA, "
              "cosine:TMAX[:ETA_MIN], linear:START:END:TOTAL, warmup:N+SPEC)",
              spec, (int)len, *p);
}

bool cr_sched_parse(const char *spec, cr_sched *out, cr_sched *storage, char *err, size_t n) {
  if (!spec || !out)
    return fail(err, n, "sched: %s is NULL", spec ? "out" : "spec");
  const char *p = spec;
  if (!strncmp(p, "warmup:", 7)) {
    if (!storage)
      return fail(err, n, "'%s': a warmup needs storage (NULL given)", spec);
    p += 6;
    char num[32];
    int64_t steps;
    if (!field(&p, num, sizeof num) || *p != '+' || !to_int(num, &steps))
      return fail(err, n, "'%s': expected warmup:N+SPEC, e.g. warmup:100+cosine:1000", spec);
    if (steps < 1)
      return fail(err, n, "'%s': warmup steps %lld must be >= 1", spec, (long long)steps);
    p++;
    if (!strncmp(p, "warmup:", 7))
      return fail(err, n, "'%s': only one warmup", spec);
    if (!parse_one(&p, out, spec, err, n))
      return false;
    *storage = (cr_sched){
        .kind = CR_SCHED_LINEAR, .start_factor = 0.1, .end_factor = 1.0, .total_iters = steps};
    out->warmup = storage;
    out->warmup_steps = steps;
  } else if (!parse_one(&p, out, spec, err, n)) {
    return false;
  }
  if (*p)
    return fail(err, n, "'%s': unexpected '%s' at the end", spec, p);
  return true;
}
