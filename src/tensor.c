/* tensor.c — tensor creation, properties, persistence and element access. */
#include "internal.h"

int64_t cr__numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  return n;
}

bool cr__numel_ok(int ndim, const int64_t *shape, int64_t *numel) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 1 || !cr__mul_ok(n, shape[i], &n) || n > CR__MAX_NUMEL)
      return false;
  *numel = n;
  return true;
}

void cr__contig_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i];
  }
}

bool cr__is_contig(const cr_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s)
      return false;
    s *= t->shape[i];
  }
  return true;
}

void cr_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t k = 0;
  if (n == 0)
    return;
  buf[0] = '\0';
  k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "[");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (k < n)
    snprintf(buf + k, n - k, "]");
}

static char *shp_slot(void) {
  static _Thread_local char bufs[4][160];
  static _Thread_local int next;
  return bufs[next++ & 3];
}

const char *cr__shape_only(const cr_tensor *t) {
  char *b = shp_slot();
  if (!t)
    snprintf(b, 160, "NULL");
  else
    cr_shape_str(b, 160, t->ndim, t->shape);
  return b;
}

const char *cr__shp(const cr_tensor *t) {
  char *b = shp_slot();
  if (!t) {
    snprintf(b, 160, "NULL");
    return b;
  }
  cr_shape_str(b, 96, t->ndim, t->shape);
  if (t->name[0]) {
    size_t k = strlen(b);
    snprintf(b + k, 160 - k, " '%s'", t->name);
  }
  return b;
}

bool cr__check_shape(cr_ctx *ctx, const char *op, int ndim, const int64_t *shape) {
  if (ndim < 1 || ndim > CR_MAX_DIMS) {
    cr__fail(ctx, CR_ERR_SHAPE, "%s: %d dims: a tensor has 1 to %d dims", op, ndim, CR_MAX_DIMS);
    return false;
  }
  if (!shape) {
    cr__fail(ctx, CR_ERR_ARG, "%s: shape is NULL", op);
    return false;
  }
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 1) {
      char b[96];
      cr_shape_str(b, sizeof b, ndim, shape);
      cr__fail(ctx, CR_ERR_SHAPE, "%s: %s: dim %d is %lld, every dim must be >= 1", op, b, i,
               (long long)shape[i]);
      return false;
    }
  }
  int64_t n;
  if (!cr__numel_ok(ndim, shape, &n)) {
    char b[96];
    cr_shape_str(b, sizeof b, ndim, shape);
    cr__fail(ctx, CR_ERR_SHAPE, "%s: %s: more than 2^40 elements", op, b);
    return false;
  }
  return true;
}

/* A tensor header in the scratch arena (scratch) or the main one. */
static cr_tensor *header_in(cr_ctx *ctx, bool scratch, cr_dtype dt, int ndim,
                            const int64_t *shape) {
  cr_tensor *t = scratch ? cr__alloc(ctx, sizeof *t) : cr__alloc_main(ctx, sizeof *t);
  if (!t)
    return NULL;
  memset(t, 0, sizeof *t);
  t->magic = CR__TENSOR_MAGIC;
  t->dtype = dt;
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  cr__contig_strides(ndim, shape, t->stride);
  t->numel = cr__numel(ndim, shape);
  t->ctx = ctx;
  t->epoch = ctx->epoch;
  t->serial = ++ctx->tensor_serial;
  t->scratch = scratch;
  if (ctx->tracking) {
    t->tracked_next = ctx->tracked;
    ctx->tracked = t;
  }
  return t;
}

static cr_tensor *header(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape) {
  return header_in(ctx, ctx->in_region, dt, ndim, shape);
}

static cr_tensor *new_in(cr_ctx *ctx, bool scratch, cr_dtype dt, int ndim, const int64_t *shape) {
  cr_tensor *t = header_in(ctx, scratch, dt, ndim, shape);
  if (!t)
    return NULL;
  size_t bytes = (size_t)t->numel * cr_dtype_size(dt);
  t->data = cr__pool_take(ctx, scratch && ctx->in_region, bytes);
  if (!t->data)
    t->data = scratch ? cr__alloc(ctx, bytes) : cr__alloc_main(ctx, bytes);
  return t->data ? t : NULL;
}

cr_tensor *cr__new(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape) {
  return new_in(ctx, ctx->in_region, dt, ndim, shape);
}

cr_tensor *cr__new_for(cr_ctx *ctx, const cr_tensor *owner, cr_dtype dt, int ndim,
                       const int64_t *shape) {
  return new_in(ctx, owner->scratch && ctx->in_region, dt, ndim, shape);
}

static cr_tensor *view_in(cr_ctx *ctx, bool scratch, const cr_tensor *base, int ndim,
                          const int64_t *shape, const int64_t *stride, void *data) {
  cr_tensor *t = header_in(ctx, scratch, base->dtype, ndim, shape);
  if (!t)
    return NULL;
  memcpy(t->stride, stride, (size_t)ndim * sizeof *stride);
  t->data = data;
  t->root = base->root ? base->root : (cr_tensor *)base;
  return t;
}

cr_tensor *cr__view(cr_ctx *ctx, const cr_tensor *base, int ndim, const int64_t *shape,
                    const int64_t *stride, void *data) {
  return view_in(ctx, ctx->in_region, base, ndim, shape, stride, data);
}

cr_tensor *cr__view_for(cr_ctx *ctx, const cr_tensor *owner, const cr_tensor *base, int ndim,
                        const int64_t *shape, const int64_t *stride, void *data) {
  return view_in(ctx, owner->scratch && ctx->in_region, base, ndim, shape, stride, data);
}

/* f32 and f64, and i64 where i64_ok (the creation functions that make
 * index tensors: zeros, ones, full, from_array, wrap, arange, tensor_new). */
static bool check_dtype(cr_ctx *ctx, const char *op, cr_dtype dt, bool i64_ok) {
  if (dt == CR_I64 && !i64_ok) {
    cr__fail(ctx, CR_ERR_DTYPE,
             "%s: dtype i64: this makes f32 or f64 values (index tensors "
             "come from cr_from_i64, cr_zeros or cr_arange)",
             op);
    return false;
  }
  if (dt != CR_F32 && dt != CR_F64 && dt != CR_I64) {
    cr__fail(ctx, CR_ERR_DTYPE, "%s: dtype %d: only f32, f64 and i64 are supported", op, (int)dt);
    return false;
  }
  return true;
}

static bool creation_ok(cr_ctx *ctx, const char *op, cr_dtype dt, int ndim, const int64_t *shape) {
  if (!ctx || ctx->status != CR_OK)
    return false;
  return check_dtype(ctx, op, dt, true) && cr__check_shape(ctx, op, ndim, shape);
}

/* v stored in an i64 tensor: truncated toward zero, NaN as 0, saturated at
 * the ends of the range (a conversion that is never undefined). */
static int64_t to_i64(double v) {
  if (v != v)
    return 0;
  if (v >= 9223372036854775807.0)
    return INT64_MAX;
  if (v <= -9223372036854775808.0)
    return INT64_MIN;
  return (int64_t)v;
}

/* An integer-valued double that an i64 tensor holds exactly?  Else an
 * error naming op and what the value is. */
static bool integral_ok(cr_ctx *ctx, const char *op, const char *what, double v) {
  if (v == trunc(v) && fabs(v) <= 9007199254740992.0) /* 2^53: exact in a double */
    return true;
  cr__fail(ctx, CR_ERR_ARG, "%s: dtype i64: %s %g is not an integer of at most 2^53", op, what, v);
  return false;
}

static void fill_value(cr_tensor *t, double v) {
  /* t is contiguous */
  if (t->dtype == CR_I64) {
    int64_t *p = t->data, iv = to_i64(v);
    for (int64_t i = 0; i < t->numel; i++)
      p[i] = iv;
  } else if (t->dtype == CR_F32) {
    float *p = t->data;
    for (int64_t i = 0; i < t->numel; i++)
      p[i] = (float)v;
  } else {
    double *p = t->data;
    for (int64_t i = 0; i < t->numel; i++)
      p[i] = v;
  }
}

cr_tensor *cr_full(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape, double value) {
  if (!creation_ok(ctx, "full", dt, ndim, shape) ||
      (dt == CR_I64 && !integral_ok(ctx, "full", "value", value)))
    return NULL;
  cr_tensor *t = cr__new(ctx, dt, ndim, shape);
  if (t)
    fill_value(t, value);
  return t;
}

cr_tensor *cr_zeros(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape) {
  if (!creation_ok(ctx, "zeros", dt, ndim, shape))
    return NULL;
  cr_tensor *t = cr__new(ctx, dt, ndim, shape);
  if (t)
    memset(t->data, 0, (size_t)t->numel * cr_dtype_size(dt));
  return t;
}

cr_tensor *cr_ones(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape) {
  if (!creation_ok(ctx, "ones", dt, ndim, shape))
    return NULL;
  return cr_full(ctx, dt, ndim, shape, 1.0);
}

cr_tensor *cr_from_array(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape,
                         const void *data) {
  if (!creation_ok(ctx, "from_array", dt, ndim, shape))
    return NULL;
  if (!data)
    return cr__fail(ctx, CR_ERR_ARG, "from_array: data is NULL");
  cr_tensor *t = cr__new(ctx, dt, ndim, shape);
  if (t)
    memcpy(t->data, data, (size_t)t->numel * cr_dtype_size(dt));
  return t;
}

cr_tensor *cr_wrap(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape, void *data) {
  if (!creation_ok(ctx, "wrap", dt, ndim, shape))
    return NULL;
  if (!data)
    return cr__fail(ctx, CR_ERR_ARG, "wrap: data is NULL");
  cr_tensor *t = header(ctx, dt, ndim, shape);
  if (t)
    t->data = data;
  return t;
}

cr_tensor *cr_from_f32(cr_ctx *ctx, int ndim, const int64_t *shape, const float *data) {
  return cr_from_array(ctx, CR_F32, ndim, shape, data);
}
cr_tensor *cr_from_f64(cr_ctx *ctx, int ndim, const int64_t *shape, const double *data) {
  return cr_from_array(ctx, CR_F64, ndim, shape, data);
}
cr_tensor *cr_wrap_f32(cr_ctx *ctx, int ndim, const int64_t *shape, float *data) {
  return cr_wrap(ctx, CR_F32, ndim, shape, data);
}
cr_tensor *cr_wrap_f64(cr_ctx *ctx, int ndim, const int64_t *shape, double *data) {
  return cr_wrap(ctx, CR_F64, ndim, shape, data);
}
cr_tensor *cr_from_i64(cr_ctx *ctx, int ndim, const int64_t *shape, const int64_t *data) {
  return cr_from_array(ctx, CR_I64, ndim, shape, data);
}
cr_tensor *cr_wrap_i64(cr_ctx *ctx, int ndim, const int64_t *shape, int64_t *data) {
  return cr_wrap(ctx, CR_I64, ndim, shape, data);
}

cr_tensor *cr_arange(cr_ctx *ctx, cr_dtype dt, double start, double stop, double step) {
  if (!ctx || ctx->status != CR_OK || !check_dtype(ctx, "arange", dt, true))
    return NULL;
  if (dt == CR_I64 &&
      (!integral_ok(ctx, "arange", "start", start) || !integral_ok(ctx, "arange", "step", step)))
    return NULL;
  if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(stop))
    return cr__fail(ctx, CR_ERR_ARG,
                    "arange: start %g, stop %g, step %g: step must be "
                    "non-zero and all finite",
                    start, stop, step);
  double count = ceil((stop - start) / step);
  if (count < 1)
    return cr__fail(ctx, CR_ERR_ARG, "arange: start %g, stop %g, step %g: empty range", start, stop,
                    step);
  if (count > 1e12)
    return cr__fail(ctx, CR_ERR_ARG, "arange: %g elements is too many", count);
  int64_t n = (int64_t)count;
  cr_tensor *t = cr__new(ctx, dt, 1, &n);
  if (!t)
    return NULL;
  for (int64_t i = 0; i < n; i++)
    cr_set_flat(t, i, start + (double)i * step);
  return t;
}

cr_tensor *cr_rand_uniform(cr_ctx *ctx, cr_rng *rng, cr_dtype dt, int ndim, const int64_t *shape,
                           double lo, double hi) {
  if (!creation_ok(ctx, "rand_uniform", dt, ndim, shape) ||
      !check_dtype(ctx, "rand_uniform", dt, false))
    return NULL;
  cr_tensor *t = cr__new(ctx, dt, ndim, shape);
  if (t && cr_fill_uniform(ctx, t, rng, lo, hi) != CR_OK)
    return NULL;
  return t;
}

cr_tensor *cr_rand_normal(cr_ctx *ctx, cr_rng *rng, cr_dtype dt, int ndim, const int64_t *shape,
                          double mean, double std) {
  if (!creation_ok(ctx, "rand_normal", dt, ndim, shape) ||
      !check_dtype(ctx, "rand_normal", dt, false))
    return NULL;
  cr_tensor *t = cr__new(ctx, dt, ndim, shape);
  if (t && cr_fill_normal(ctx, t, rng, mean, std) != CR_OK)
    return NULL;
  return t;
}

/* ---- persistent tensors */

static cr_tensor *persistent_new(cr_dtype dt, int ndim, const int64_t *shape) {
  cr_tensor *t = cr__calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->magic = CR__TENSOR_MAGIC;
  t->dtype = dt;
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  cr__contig_strides(ndim, shape, t->stride);
  t->numel = cr__numel(ndim, shape);
  t->persistent = true;
  t->heap_data = cr__calloc((size_t)t->numel, cr_dtype_size(dt));
  if (!t->heap_data) {
    free(t);
    return NULL;
  }
  t->data = t->heap_data;
  return t;
}

cr_tensor *cr_tensor_new(cr_ctx *ctx, cr_dtype dt, int ndim, const int64_t *shape) {
  if (!creation_ok(ctx, "tensor_new", dt, ndim, shape))
    return NULL;
  cr_tensor *t = persistent_new(dt, ndim, shape);
  if (!t)
    return cr__fail(ctx, CR_ERR_NOMEM, "tensor_new: out of memory");
  return t;
}

/* t (input i of op) is a live tensor of this context (or persistent)?
 * Else an error naming op. */
static bool valid_one(cr_ctx *ctx, const char *op, int i, const cr_tensor *t) {
  if (!t) { /* NULL given with no error pending here */
    cr__fail(ctx, CR_ERR_ARG,
             "%s: input %d is NULL (an earlier op failed in another "
             "context, or a tensor was never set)",
             op, i);
    return false;
  }
  if (t->magic != CR__TENSOR_MAGIC) {
    cr__fail(ctx, CR_ERR_STATE,
             "%s: input %d is not a valid tensor (freed, or used "
             "after its context was reset?)",
             op, i);
    return false;
  }
  if (t->released) {
    cr__fail(ctx, CR_ERR_STATE,
             "%s: input %d %s: its values were released (a recurrent "
             "layer keeps of a cell's intermediates only what backward needs; carry state "
             "through the cell's states, or set keep_activations)",
             op, i, cr__shp(t));
    return false;
  }
  if (!t->persistent && (t->ctx != ctx || t->epoch != ctx->epoch)) {
    if (t->ctx == ctx)
      cr__fail(ctx, CR_ERR_STATE,
               "%s: input %d %s was made before the last "
               "cr_ctx_reset and is no longer valid (copy state that must survive "
               "a reset with cr_persist or cr_copy_into)",
               op, i, cr__shp(t));
    else
      cr__fail(ctx, CR_ERR_STATE, "%s: input %d %s belongs to another context", op, i, cr__shp(t));
    return false;
  }
  return true;
}

bool cr__check_valid(cr_ctx *ctx, const char *op, int n, cr_tensor *const *in) {
  if (!ctx || ctx->status != CR_OK)
    return false;
  for (int i = 0; i < n; i++)
    if (!valid_one(ctx, op, i, in[i]))
      return false;
  return true;
}

bool cr__check_index(cr_ctx *ctx, const char *op, const char *what, const cr_tensor *idx) {
  if (!ctx || ctx->status != CR_OK)
    return false;
  if (!idx) {
    cr__fail(ctx, CR_ERR_ARG, "%s: %s is NULL", op, what);
    return false;
  }
  if (!valid_one(ctx, op, 0, idx))
    return false;
  if (idx->dtype != CR_I64) {
    cr__fail(ctx, CR_ERR_DTYPE, "%s: %s %s %s: must be an i64 tensor (cr_from_i64)", op, what,
             cr__shp(idx), cr_dtype_name(idx->dtype));
    return false;
  }
  return true;
}

bool cr__check_inputs(cr_ctx *ctx, const char *op, int n, cr_tensor *const *in) {
  if (!ctx)
    return false;
  if (ctx->status != CR_OK)
    return false;
  for (int i = 0; i < n; i++) {
    const cr_tensor *t = in[i];
    if (!valid_one(ctx, op, i, t))
      return false;
    if (t->dtype == CR_I64) {
      cr__fail(ctx, CR_ERR_DTYPE,
               "%s: dtype i64: input %d %s holds indices; this op takes "
               "f32 or f64 values",
               op, i, cr__shp(t));
      return false;
    }
    if (i > 0 && t->dtype != in[0]->dtype) {
      cr__fail(ctx, CR_ERR_DTYPE, "%s: %s %s and %s %s: dtypes differ (use cr_cast)", op,
               cr__shp(in[0]), cr_dtype_name(in[0]->dtype), cr__shp(t), cr_dtype_name(t->dtype));
      return false;
    }
  }
  return true;
}

cr_tensor *cr_persist(cr_ctx *ctx, const cr_tensor *t) {
  cr_tensor *in = (cr_tensor *)t;
  if (!cr__check_valid(ctx, "persist", 1, &in))
    return NULL;
  cr_tensor *p = persistent_new(t->dtype, t->ndim, t->shape);
  if (!p)
    return cr__fail(ctx, CR_ERR_NOMEM, "persist: out of memory for %s", cr__shp(t));
  cr__gather(t, p->data);
  return p;
}

void cr_tensor_free(cr_tensor *t) {
  if (!t || t->magic != CR__TENSOR_MAGIC || !t->persistent)
    return;
  cr_clear_hooks(t);
  for (cr__packed *p = t->packed, *next; p; p = next) {
    next = p->next;
    free(p->panels);
    free(p);
  }
  cr_tensor_free(t->grad);
  free(t->heap_data);
  t->magic = 0;
  free(t);
}

/* Element i (row-major over t's shape) -> offset in elements from data. */
static int64_t flat_offset(const cr_tensor *t, int64_t i) {
  int64_t off = 0;
  for (int d = t->ndim - 1; d >= 0; d--) {
    off += (i % t->shape[d]) * t->stride[d];
    i /= t->shape[d];
  }
  return off;
}

void cr__gather(const cr_tensor *t, void *dst) {
  size_t es = cr_dtype_size(t->dtype);
  if (cr__is_contig(t)) {
    memcpy(dst, t->data, (size_t)t->numel * es);
    return;
  }
  if (t->ndim == 2) {
    /* a 2-d view (a transpose, a column slice): copy in 32 x 32 tiles so
     * both sides stay in cache, and without a division per element */
    const int64_t R = t->shape[0], C = t->shape[1], rs = t->stride[0], cs = t->stride[1];
    cr__gather_2d(t->dtype, t->data, dst, R, C, rs, cs);
    return;
  }
  if (t->dtype == CR_F32) {
    const float *s = t->data;
    float *d = dst;
    for (int64_t i = 0; i < t->numel; i++)
      d[i] = s[flat_offset(t, i)];
  } else if (t->dtype == CR_I64) {
    const int64_t *s = t->data;
    int64_t *d = dst;
    for (int64_t i = 0; i < t->numel; i++)
      d[i] = s[flat_offset(t, i)];
  } else {
    const double *s = t->data;
    double *d = dst;
    for (int64_t i = 0; i < t->numel; i++)
      d[i] = s[flat_offset(t, i)];
  }
}

cr_status cr_copy_into(cr_ctx *ctx, cr_tensor *dst, const cr_tensor *src) {
  cr_tensor *in[2] = {dst, (cr_tensor *)src};
  if (!ctx)
    return CR_ERR_ARG;
  if (!dst || !src) {
    if (ctx->status == CR_OK)
      cr__fail(ctx, CR_ERR_ARG, "copy_into: %s tensor is NULL", dst ? "source" : "destination");
    return ctx->status;
  }
  /* dtypes may differ here (f32 <-> f64), so check each alone */
  if (!cr__check_valid(ctx, "copy_into", 2, in))
    return ctx->status ? ctx->status : CR_ERR_ARG;
  if ((dst->dtype == CR_I64) != (src->dtype == CR_I64)) {
    cr__fail(ctx, CR_ERR_DTYPE,
             "copy_into: dtype i64: %s %s into %s %s: indices and values "
             "do not mix",
             cr__shp(src), cr_dtype_name(src->dtype), cr__shp(dst), cr_dtype_name(dst->dtype));
    return CR_ERR_DTYPE;
  }
  if (dst->ndim != src->ndim ||
      memcmp(dst->shape, src->shape, sizeof(int64_t) * (size_t)src->ndim)) {
    cr__fail(ctx, CR_ERR_SHAPE, "copy_into: %s into %s: shapes differ", cr__shp(src), cr__shp(dst));
    return CR_ERR_SHAPE;
  }
  cr__touch(dst);
  if (cr__is_contig(dst) && cr__is_contig(src) && dst->dtype == src->dtype) {
    memmove(dst->data, src->data, (size_t)src->numel * cr_dtype_size(src->dtype));
    return CR_OK;
  }
  for (int64_t i = 0; i < src->numel; i++)
    cr_set_flat(dst, i, cr_get_flat(src, i));
  return CR_OK;
}

cr_status cr_fill(cr_ctx *ctx, cr_tensor *t, double value) {
  if (!cr__check_valid(ctx, "fill", 1, &t))
    return ctx && ctx->status ? ctx->status : CR_ERR_ARG;
  if (t->dtype == CR_I64 && !integral_ok(ctx, "fill", "value", value))
    return ctx->status;
  for (int64_t i = 0; i < t->numel; i++)
    cr_set_flat(t, i, value);
  return CR_OK;
}

/* ---- properties */

int cr_ndim(const cr_tensor *t) { return t ? t->ndim : 0; }
const int64_t *cr_shape(const cr_tensor *t) { return t ? t->shape : NULL; }
int64_t cr_dim(const cr_tensor *t, int dim) {
  if (!t)
    return 0;
  if (dim < 0)
    dim += t->ndim;
  return dim >= 0 && dim < t->ndim ? t->shape[dim] : 0;
}
int64_t cr_numel(const cr_tensor *t) { return t ? t->numel : 0; }
cr_dtype cr_dtype_of(const cr_tensor *t) { return t ? t->dtype : CR_F32; }
bool cr_is_contiguous(const cr_tensor *t) { return t && cr__is_contig(t); }
bool cr_is_persistent(const cr_tensor *t) { return t && t->persistent; }

void cr_set_requires_grad(cr_tensor *t, bool on) {
  if (t && t->dtype != CR_I64) /* indices have no gradient */
    t->requires_grad = on;
}
bool cr_requires_grad(const cr_tensor *t) { return t && t->requires_grad; }
cr_tensor *cr_grad(const cr_tensor *t) {
  if (!t || t->magic != CR__TENSOR_MAGIC)
    return NULL;
  return !t->node || t->retain_grad ? t->grad : NULL;
}

void cr__set_name_n(cr_tensor *t, const char *name, size_t n) {
  if (n > sizeof t->name - 1)
    n = sizeof t->name - 1; /* truncated to fit */
  memcpy(t->name, name, n);
  t->name[n] = '\0';
}

void cr_set_name(cr_tensor *t, const char *name) {
  if (!t || t->magic != CR__TENSOR_MAGIC)
    return;
  cr__set_name_n(t, name ? name : "", name ? strnlen(name, sizeof t->name - 1) : 0);
}

const char *cr_name(const cr_tensor *t) { return t && t->magic == CR__TENSOR_MAGIC ? t->name : ""; }

void cr_zero_grad(cr_tensor *t) {
  if (t && t->grad)
    cr__par_zero(t->grad->data, (size_t)t->grad->numel * cr_dtype_size(t->grad->dtype));
}

void *cr_data(cr_tensor *t) {
  if (!t || !cr__is_contig(t) || t->released)
    return NULL;
  cr__touch(t); /* the caller may write through the pointer */
  return t->data;
}
const void *cr_data_const(const cr_tensor *t) {
  return t && cr__is_contig(t) && !t->released ? t->data : NULL;
}

double cr_get_flat(const cr_tensor *t, int64_t i) {
  if (!t || i < 0 || i >= t->numel || t->released)
    return NAN;
  int64_t off = flat_offset(t, i);
  switch (t->dtype) {
  case CR_F32: return (double)((const float *)t->data)[off];
  case CR_I64: return (double)((const int64_t *)t->data)[off];
  default: return ((const double *)t->data)[off];
  }
}

void cr_set_flat(cr_tensor *t, int64_t i, double v) {
  if (!t || i < 0 || i >= t->numel)
    return;
  cr__touch(t);
  int64_t off = flat_offset(t, i);
  if (t->dtype == CR_F32)
    ((float *)t->data)[off] = (float)v;
  else if (t->dtype == CR_I64)
    ((int64_t *)t->data)[off] = to_i64(v);
  else
    ((double *)t->data)[off] = v;
}

double cr_get(const cr_tensor *t, const int64_t *index) {
  if (!t || !index)
    return NAN;
  int64_t flat = 0;
  for (int d = 0; d < t->ndim; d++) {
    if (index[d] < 0 || index[d] >= t->shape[d])
      return NAN;
    flat = flat * t->shape[d] + index[d];
  }
  return cr_get_flat(t, flat);
}

double cr_item(const cr_tensor *t) { return t && t->numel == 1 ? cr_get_flat(t, 0) : NAN; }

/* n values at p, stride apart, all finite: x * 0 is 0 for a finite x and
 * NaN for NaN or +-Inf, so the sum of those products is 0 exactly when
 * every value is finite. */
static bool finite_row(cr_dtype dt, const void *p, int64_t n, int64_t stride) {
  if (dt == CR_F32) {
    const float *x = p;
    float acc = 0;
    if (stride == 1) {
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < n; i++)
        acc += x[i] * 0.0f;
    } else {
      for (int64_t i = 0; i < n; i++)
        acc += x[i * stride] * 0.0f;
    }
    return acc == 0;
  }
  const double *x = p;
  double acc = 0;
  if (stride == 1) {
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; i++)
      acc += x[i] * 0.0;
  } else {
    for (int64_t i = 0; i < n; i++)
      acc += x[i * stride] * 0.0;
  }
  return acc == 0;
}

bool cr_all_finite(const cr_tensor *t) {
  if (!t || t->magic != CR__TENSOR_MAGIC)
    return false;
  if (t->released)
    return false; /* its values are gone */
  if (t->dtype == CR_I64 || t->numel == 0)
    return true;
  if (cr__is_contig(t))
    return finite_row(t->dtype, t->data, t->numel, 1);
  /* a view: row by row along the last dimension, the other indices
   * counted like an odometer (one division-free step per row) */
  const int nd = t->ndim;
  const int64_t n = nd ? t->shape[nd - 1] : 1, step = nd ? t->stride[nd - 1] : 1;
  const size_t es = cr_dtype_size(t->dtype);
  int64_t idx[CR_MAX_DIMS] = {0}, off = 0;
  for (int64_t row = 0; row < t->numel / n; row++) {
    if (!finite_row(t->dtype, (const char *)t->data + (size_t)off * es, n, step))
      return false;
    for (int d = nd - 2; d >= 0; d--) { /* the next row's offset */
      off += t->stride[d];
      if (++idx[d] < t->shape[d])
        break;
      off -= idx[d] * t->stride[d];
      idx[d] = 0;
    }
  }
  return true;
}

void cr_to_doubles(const cr_tensor *t, double *out) {
  if (!t || !out)
    return;
  for (int64_t i = 0; i < t->numel; i++)
    out[i] = cr_get_flat(t, i);
}
