/* scope.c — labels recorded with the ops (cr_set_scope): where in a
 * program an op was made, for graphs and messages. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "op.h"

/* the label copied into the main arena (here false: it lives as long
 * as any node) or the current one (a region's nodes die with it) */
static const char *set_scope(cr_ctx *ctx, const char *scope, bool here) {
  if (!ctx)
    return NULL;
  const char *prev = ctx->scope;
  if (!scope || !scope[0]) {
    ctx->scope = NULL;
    return prev;
  }
  if (scope == prev)
    return prev;
  size_t n = strlen(scope) + 1;
  char *copy = here ? cr__alloc(ctx, n) : cr__alloc_main(ctx, n);
  if (copy)
    memcpy(copy, scope, n);
  ctx->scope = copy;
  return prev;
}

const char *cr_set_scope(cr_ctx *ctx, const char *scope) { return set_scope(ctx, scope, false); }

char *cr__put_int(char *s, int64_t v) {
  char d[24];
  int n = 0;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do
    d[n++] = (char)('0' + u % 10);
  while ((u /= 10) && n < 23);
  if (v < 0)
    *s++ = '-';
  while (n)
    *s++ = d[--n];
  return s;
}

const char *cr__push_step_scope(cr_ctx *ctx, int layer, int64_t step, bool reverse) {
  const char *prev = ctx->scope;
  const size_t outer = prev ? strlen(prev) : 0;
  char *label = cr__alloc(ctx, outer + 48);
  if (!label)
    return prev;
  char *s = label;
  if (prev) {
    memcpy(s, prev, outer);
    s += outer;
    *s++ = '/';
  }
  if (layer) {
    memcpy(s, "layer ", 6);
    s = cr__put_int(s + 6, layer);
    *s++ = ' ';
  }
  memcpy(s, "step ", 5);
  s = cr__put_int(s + 5, step);
  if (reverse) {
    memcpy(s, " reverse", 8);
    s += 8;
  }
  *s = '\0';
  ctx->scope = label;
  return prev;
}

const char *cr__push_scope(cr_ctx *ctx, const char *fmt, ...) {
  const char *prev = ctx->scope;
  char label[128];
  int at = prev ? snprintf(label, sizeof label, "%s/", prev) : 0;
  if (at < 0 || at >= (int)sizeof label)
    at = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(label + at, sizeof label - (size_t)at, fmt, ap);
  va_end(ap);
  set_scope(ctx, label, true);
  return prev;
}

const char *cr_scope(const cr_ctx *ctx) { return ctx ? ctx->scope : NULL; }

const char *cr_scope_of(const cr_tensor *t) {
  return t && t->magic == CR__TENSOR_MAGIC && t->node ? t->node->scope : NULL;
}
