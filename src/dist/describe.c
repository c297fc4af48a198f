/* describe.c — a parameter list as the text the ranks compare before a
 * collective (agree.c), and the local checks of that list.
 *
 *   the call       dist_allreduce_grads
 *   parameter 0    'embed.weight' f32 [65,64] with a gradient
 *   ...
 *   the count      7 parameters
 *
 * (key and value separated by a tab, one line each).  The count comes
 * last, so a rank with one parameter more is told which one. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dist_impl.h"

uint64_t cr__dist_hash(const void *data, size_t n, uint64_t h) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull; /* FNV-1a 64 */
  return h;
}

cr_tensor *cr__dist_target(cr_tensor *p, bool grads) {
  if (!grads)
    return p;
  return cr_requires_grad(p) ? cr_grad(p) : NULL;
}

/* Append printf text to d->text at *len (grown as needed; on no memory the
 * text is cut short, which still hashes deterministically). */
static void add(cr_dist *d, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add(cr_dist *d, size_t *len, const char *fmt, ...) {
  for (int attempt = 0; attempt < 2; attempt++) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = d->text_cap - *len;
    int k = vsnprintf(d->text + *len, room, fmt, ap);
    va_end(ap);
    if (k < 0)
      return;
    if ((size_t)k < room) {
      *len += (size_t)k;
      return;
    }
    if (!cr__dist_reserve(NULL, "", (void **)&d->text, &d->text_cap,
                          2 * d->text_cap + (size_t)k + 1)) {
      d->text[*len] = '\0';
      return;
    }
  }
}

cr_status cr__dist_describe(cr_dist *d, cr_ctx *ctx, const char *op, cr_tensor *const *params,
                            const char *const *names, int n, bool grads, const char *extra) {
  cr_status st = CR_OK;
  size_t len = 0;
  if (!d->text && !cr__dist_reserve(ctx, op, (void **)&d->text, &d->text_cap, 4096))
    return CR_ERR_NOMEM;
  d->text[0] = '\0';
  add(d, &len, "the call\t%s%s\n", op, extra ? extra : "");
  if (n < 0 || (n > 0 && !params))
    st = cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %d params%s", op, n,
                          n < 0 ? ": the count must be >= 0" : ", but params is NULL");
  for (int i = 0; st == CR_OK && i < n; i++) {
    cr_tensor *p = params[i];
    if (!p) {
      st = cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: param %d is NULL", op, i);
      break;
    }
    char name[64], shape[96];
    if (names && names[i])
      snprintf(name, sizeof name, "%s", names[i]);
    else if (*cr_name(p))
      snprintf(name, sizeof name, "%s", cr_name(p));
    else
      snprintf(name, sizeof name, "#%d", i);
    for (int j = 0; j < i; j++)
      if (params[j] == p) {
        st = cr_ctx_set_error(ctx, CR_ERR_ARG,
                              "%s: param %d '%s' is also param %d: each "
                              "parameter may be listed once",
                              op, i, name, j);
        break;
      }
    cr_shape_str(shape, sizeof shape, cr_ndim(p), cr_shape(p));
    cr_tensor *t = cr__dist_target(p, grads);
    if (st == CR_OK && t && !cr_data_const(t))
      st = cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: param %d '%s' %s: its %s is not contiguous", op,
                            i, name, shape, grads ? "gradient" : "data");
    if (st == CR_OK && t && cr_dtype_of(t) == CR_I64 && grads)
      st =
          cr_ctx_set_error(ctx, CR_ERR_DTYPE, "%s: param %d '%s' has an i64 gradient", op, i, name);
    add(d, &len, "parameter %d\t'%s' %s %s%s\n", i, name, cr_dtype_name(cr_dtype_of(p)), shape,
        !grads ? ""
        : t    ? " with a gradient"
               : " without a gradient");
  }
  add(d, &len, "the count\t%d parameters\n", n);
  return st;
}
