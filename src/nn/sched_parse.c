/* sched_parse.c — schedule specs ("cosine:1000:0.01", "warmup:100+cosine:900",
 * "onecycle:500:anneal_strategy=linear"), read by the rows' parameter lists:
 * NAME, then ':'-separated fields, positional ones (the row's labelled
 * parameters, required first) before NAME=VALUE ones (any parameter). */
#include <errno.h>
#include <strings.h>

#include "sched_impl.h"

#define FIELD_MAX 256

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

/* "M1,M2,..." into s's milestones. */
static bool to_list(const char *v, cr_sched *s) {
  int n = 0;
  char buf[FIELD_MAX];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (n == CR_SCHED_MAX_MILESTONES || !to_int(t, &s->milestones[n]))
      return false;
    n++;
  }
  s->n_milestones = n;
  return n > 0 && v[strlen(v) - 1] != ',' && v[0] != ',' && !strstr(v, ",,");
}

/* Store the text v as parameter p of s; false if it does not parse. */
static bool set_param(cr_sched *s, const cr__sched_param *p, const char *v) {
  char *f = (char *)s + p->off;
  switch (p->type) {
  case SP_INT: return to_int(v, (int64_t *)f);
  case SP_REAL: return to_double(v, (double *)f);
  case SP_BOOL:
    if (strcmp(v, "0") && strcmp(v, "1"))
      return false;
    *(bool *)f = v[0] == '1';
    return true;
  case SP_CHOICE:
    for (int c = 0; c < 2; c++)
      if (!strcmp(v, p->choice[c]))
        return *(bool *)f = c == 1, true;
    return false;
  case SP_LIST: return to_list(v, s);
  }
  return false;
}

/* What a parameter's value looks like, for messages. */
static const char *expect_text(const cr__sched_param *p, char *buf, size_t n) {
  switch (p->type) {
  case SP_INT: return "an integer";
  case SP_REAL: return "a number";
  case SP_BOOL: return "0 or 1";
  case SP_CHOICE: snprintf(buf, n, "%s or %s", p->choice[0], p->choice[1]); return buf;
  case SP_LIST: return "integers separated by ','";
  }
  return "?";
}

/* d's usage: "cosine:TMAX[:ETA_MIN]", "onecycle:TOTAL[:PCT_START][:NAME=VALUE...]". */
static void usage(const cr__sched_def *d, char *out, size_t n) {
  size_t len = (size_t)snprintf(out, n, "%s", d->name);
  int open = 0;
  bool named = false;
  for (int i = 0; i < NPARAM && d->param[i].name; i++) {
    const cr__sched_param *p = &d->param[i];
    if (!p->label)
      named = true;
    else if (len < n)
      len += (size_t)snprintf(out + len, n - len, p->required ? ":%s" : "[:%s", p->label),
          open += !p->required;
  }
  for (; open > 0 && len < n; open--)
    len += (size_t)snprintf(out + len, n - len, "]");
  if (named && len < n)
    snprintf(out + len, n - len, "[:NAME=VALUE...]");
}

/* One schedule (no warmup) from the start of *p; advances *p past it. */
static bool parse_one(const char **p, cr_sched *out, const char *spec, char *err, size_t n) {
  size_t len = strcspn(*p, ":+");
  const cr__sched_def *d = cr__sched_find(*p, len);
  if (!d) {
    char names[256];
    size_t k = 0;
    for (int i = 0; i < CR_SCHED_NUM_KINDS && k < sizeof names; i++)
      k += (size_t)snprintf(names + k, sizeof names - k, "%s, ", cr__sched_row(i)->name);
    return cr__sched_fail(err, n, "'%s': unknown schedule '%.*s' (%swarmup:N+SPEC)", spec, (int)len,
                          *p, names);
  }
  char use[160];
  usage(d, use, sizeof use);
  cr_sched_defaults((cr_sched_kind)(d - cr__sched_row(0)), out); /* rows are indexed by kind */
  *p += len;
  int pos = 0; /* labelled parameters given by position */
  bool named = false, given[NPARAM] = {false};
  char arg[FIELD_MAX];
  while (field(p, arg, sizeof arg)) {
    const cr__sched_param *q = NULL;
    const char *value = arg;
    char *eq = strchr(arg, '=');
    if (eq) { /* NAME=VALUE: any parameter, after the positional ones */
      *eq = '\0';
      value = eq + 1;
      for (int i = 0; i < NPARAM && d->param[i].name && !q; i++)
        if (!strcasecmp(arg, d->param[i].name)) /* so T_max is t_max */
          q = &d->param[i];
      if (!q) {
        char names[200];
        size_t k = 0;
        names[0] = '\0';
        for (int i = 0; i < NPARAM && d->param[i].name && k < sizeof names; i++)
          k += (size_t)snprintf(names + k, sizeof names - k, i ? ", %s" : "%s", d->param[i].name);
        return cr__sched_fail(err, n, "'%s': %s has no parameter '%s' (%s)", spec, d->name, arg,
                              k ? names : "it has none");
      }
      named = true;
    } else {
      for (int i = 0, seen = 0; i < NPARAM && d->param[i].name && !q; i++)
        if (d->param[i].label && seen++ == pos)
          q = &d->param[i];
      if (!q || named)
        return cr__sched_fail(err, n, "'%s': expected %s", spec, use);
      pos++;
    }
    given[q - d->param] = true;
    if (!set_param(out, q, value)) {
      if (!eq && q->type != SP_CHOICE && q->type != SP_BOOL)
        return cr__sched_fail(err, n, "'%s': expected %s (with numbers)", spec, use);
      char buf[64];
      return cr__sched_fail(err, n, "'%s': %s must be %s, not '%s'", spec, q->name,
                            expect_text(q, buf, sizeof buf), value);
    }
  }
  bool missing = false;
  for (int i = 0; i < NPARAM && d->param[i].name; i++)
    missing = missing || (d->param[i].required && !given[i]);
  if (missing || **p == ':')
    return cr__sched_fail(err, n, "'%s': expected %s", spec, use);
  char why[200];
  if (!cr_sched_check(out, why, sizeof why))
    return cr__sched_fail(err, n, "'%s': %s", spec, why + strlen("sched: "));
  return true;
}

bool cr_sched_parse(const char *spec, cr_sched *out, cr_sched *storage, char *err, size_t n) {
  if (!spec || !out)
    return cr__sched_fail(err, n, "sched: %s is NULL", spec ? "out" : "spec");
  const char *p = spec;
  if (!strncmp(p, "warmup:", 7)) {
    if (!storage)
      return cr__sched_fail(err, n, "'%s': a warmup needs storage (NULL given)", spec);
    p += 6;
    char num[32];
    int64_t steps;
    if (!field(&p, num, sizeof num) || *p != '+' || !to_int(num, &steps))
      return cr__sched_fail(err, n, "'%s': expected warmup:N+SPEC, e.g. warmup:100+cosine:1000",
                            spec);
    if (steps < 1)
      return cr__sched_fail(err, n, "'%s': warmup steps %lld must be >= 1", spec, (long long)steps);
    p++;
    if (!strncmp(p, "warmup:", 7))
      return cr__sched_fail(err, n, "'%s': only one warmup", spec);
    if (!parse_one(&p, out, spec, err, n))
      return false;
    *storage = (cr_sched){
        .kind = CR_SCHED_LINEAR, .start_factor = 0.1, .end_factor = 1.0, .total_iters = steps};
    out->warmup = storage;
    out->warmup_steps = steps;
    char why[200];
    if (!cr_sched_check(out, why, sizeof why))
      return cr__sched_fail(err, n, "'%s': %s", spec, why + strlen("sched: "));
  } else if (!parse_one(&p, out, spec, err, n)) {
    return false;
  }
  if (*p)
    return cr__sched_fail(err, n, "'%s': unexpected '%s' at the end", spec, p);
  return true;
}
