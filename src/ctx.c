/* ctx.c — the context: arena, first-error store, grad and training modes.
 *
 * The arena is a list of chunks handed out by bumping a pointer.  A reset
 * rewinds it; if the last step needed more than one chunk, the chunks are
 * replaced by a single one big enough for all of them, so after the first
 * steps of a loop every step fits in one chunk and no malloc happens. */
#include <stdatomic.h>

#include "chainrule/runtime.h"
#include "internal.h"

#define CR__ALIGN 64
#define CR__MIN_CHUNK ((size_t)1 << 20)

/* heap allocations made by chainrule (atomic: contexts may live on
 * different threads) */
static _Atomic size_t g_alloc_count;

size_t cr_alloc_count(void) { return atomic_load_explicit(&g_alloc_count, memory_order_relaxed); }

void *cr__malloc(size_t n) {
  atomic_fetch_add_explicit(&g_alloc_count, 1, memory_order_relaxed);
  return malloc(n ? n : 1);
}

void *cr__calloc(size_t n, size_t size) {
  atomic_fetch_add_explicit(&g_alloc_count, 1, memory_order_relaxed);
  return calloc(n ? n : 1, size ? size : 1);
}

void cr__free(void *p) { free(p); }

static cr__chunk *chunk_new(cr_ctx *ctx, size_t cap) {
  cr__chunk *c = cr__malloc(sizeof *c);
  if (!c)
    return NULL;
  c->block = cr__malloc(cap + CR__ALIGN);
  if (!c->block) {
    free(c);
    return NULL;
  }
  uintptr_t p = ((uintptr_t)c->block + CR__ALIGN - 1) & ~(uintptr_t)(CR__ALIGN - 1);
  c->mem = (unsigned char *)p;
  c->cap = cap;
  c->used = 0;
  c->next = NULL;
  ctx->chunk_mallocs++;
  return c;
}

static void chunks_free(cr__chunk *c) {
  while (c) {
    cr__chunk *n = c->next;
    free(c->block);
    free(c);
    c = n;
  }
}

static bool arena_init(cr_ctx *ctx, cr__arena *a) {
  a->first = a->cur = chunk_new(ctx, CR__MIN_CHUNK);
  a->used_total = 0;
  return a->first != NULL;
}

cr_ctx *cr_ctx_new(void) {
  cr_runtime_init();
  cr_ctx *ctx = cr__calloc(1, sizeof *ctx);
  if (!ctx)
    return NULL;
  if (!arena_init(ctx, &ctx->main) || !arena_init(ctx, &ctx->scratch)) {
    chunks_free(ctx->main.first);
    free(ctx);
    return NULL;
  }
  ctx->grad_enabled = true;
  ctx->training = true;
  ctx->epoch = 1;
  return ctx;
}

void cr_ctx_free(cr_ctx *ctx) {
  if (!ctx)
    return;
  chunks_free(ctx->main.first);
  chunks_free(ctx->scratch.first);
  free(ctx);
}

static void *arena_alloc(cr_ctx *ctx, cr__arena *a, size_t bytes) {
  bytes = (bytes + CR__ALIGN - 1) & ~(size_t)(CR__ALIGN - 1);
  if (bytes == 0)
    bytes = CR__ALIGN;
  cr__chunk *c = a->cur;
  while (c->used + bytes > c->cap) {
    if (!c->next) {
      size_t cap = c->cap * 2;
      if (cap < bytes)
        cap = bytes;
      c->next = chunk_new(ctx, cap);
      if (!c->next)
        return cr__fail(ctx, CR_ERR_NOMEM, "arena: out of memory allocating %zu bytes", bytes);
    }
    c = c->next;
    c->used = 0;
    a->cur = c;
  }
  void *p = c->mem + c->used;
  c->used += bytes;
  a->used_total += bytes;
  size_t now = ctx->main.used_total + ctx->scratch.used_total;
  if (now > ctx->peak_bytes)
    ctx->peak_bytes = now;
  return p;
}

void *cr__alloc(cr_ctx *ctx, size_t bytes) {
  return arena_alloc(ctx, ctx->in_region ? &ctx->scratch : &ctx->main, bytes);
}

void *cr__alloc_main(cr_ctx *ctx, size_t bytes) { return arena_alloc(ctx, &ctx->main, bytes); }

void *cr__alloc_for(cr_ctx *ctx, const cr_tensor *t, size_t bytes) {
  return arena_alloc(ctx, t->scratch ? &ctx->scratch : &ctx->main, bytes);
}

cr__mark cr__region_begin(cr_ctx *ctx) {
  cr__mark m = {ctx->scratch.cur, ctx->scratch.cur->used, ctx->scratch.used_total,
                ctx->nodes,       ctx->in_region,         ctx->pools[1]};
  ctx->in_region = true;
  return m;
}

void cr__region_end(cr_ctx *ctx, const cr__mark *m, bool rewind) {
  ctx->in_region = m->was_in_region;
  if (rewind) {
    ctx->scratch.cur = m->chunk;
    m->chunk->used = m->used;
    ctx->scratch.used_total = m->used_total;
    ctx->nodes = m->nodes;
    ctx->pools[1] = m->spool; /* buffers given back inside the region are gone */
  }
}

/* Rewind an arena; if the last step needed more than one chunk, replace
 * them all by one that holds everything, so the next steps need no malloc. */
static void arena_reset(cr_ctx *ctx, cr__arena *a) {
  if (a->first->next) {
    size_t total = 0;
    for (cr__chunk *c = a->first; c; c = c->next)
      total += c->cap;
    cr__chunk *big = chunk_new(ctx, total);
    if (big) {
      chunks_free(a->first);
      a->first = big;
    }
  }
  for (cr__chunk *c = a->first; c; c = c->next)
    c->used = 0;
  a->cur = a->first;
  a->used_total = 0;
}

void cr_ctx_reset(cr_ctx *ctx) {
  if (!ctx)
    return;
  arena_reset(ctx, &ctx->main);
  arena_reset(ctx, &ctx->scratch);
  ctx->in_region = false;
  ctx->pools[0].n = ctx->pools[1].n = 0;
  ctx->tracked = NULL;
  ctx->tracking = false;
  ctx->nodes = 0;
  ctx->pending = NULL;
  ctx->n_owed = 0;
  ctx->scope = NULL;
  ctx->epoch++;
}

cr_status cr_ctx_status(const cr_ctx *ctx) { return ctx ? ctx->status : CR_ERR_ARG; }

const char *cr_ctx_error(const cr_ctx *ctx) { return ctx ? ctx->msg : "no context"; }

void cr_ctx_clear_error(cr_ctx *ctx) {
  if (!ctx)
    return;
  ctx->status = CR_OK;
  ctx->msg[0] = '\0';
}

cr_status cr__failv(cr_ctx *ctx, cr_status st, const char *fmt, va_list ap) {
  if (ctx && ctx->status == CR_OK) {
    ctx->status = st;
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
  }
  return st;
}

cr_status cr_ctx_set_error(cr_ctx *ctx, cr_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cr__failv(ctx, st, fmt, ap);
  va_end(ap);
  return st;
}

void *cr__fail(cr_ctx *ctx, cr_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cr__failv(ctx, st, fmt, ap);
  va_end(ap);
  return NULL;
}

bool cr_set_grad_enabled(cr_ctx *ctx, bool on) {
  if (!ctx)
    return false;
  bool old = ctx->grad_enabled;
  ctx->grad_enabled = on;
  return old;
}
bool cr_grad_enabled(const cr_ctx *ctx) { return ctx && ctx->grad_enabled; }
bool cr_set_training(cr_ctx *ctx, bool on) {
  if (!ctx)
    return false;
  bool old = ctx->training;
  ctx->training = on;
  return old;
}
bool cr_training(const cr_ctx *ctx) { return ctx && ctx->training; }

void cr_ctx_get_stats(const cr_ctx *ctx, cr_ctx_stats *out) {
  if (!out)
    return;
  memset(out, 0, sizeof *out);
  if (!ctx)
    return;
  out->arena_bytes_used = ctx->main.used_total + ctx->scratch.used_total;
  out->arena_bytes_peak = ctx->peak_bytes;
  for (cr__chunk *c = ctx->main.first; c; c = c->next)
    out->arena_bytes_reserved += c->cap;
  for (cr__chunk *c = ctx->scratch.first; c; c = c->next)
    out->arena_bytes_reserved += c->cap;
  out->arena_chunk_mallocs = ctx->chunk_mallocs;
  out->nodes = ctx->nodes;
  out->epoch = ctx->epoch - 1;
}

void cr_ctx_clear_peak(cr_ctx *ctx) {
  if (ctx)
    ctx->peak_bytes = ctx->main.used_total + ctx->scratch.used_total;
}

const char *cr_dtype_name(cr_dtype dt) {
  switch (dt) {
  case CR_F32: return "f32";
  case CR_F64: return "f64";
  case CR_I64: return "i64";
  }
  return "unknown";
}

size_t cr_dtype_size(cr_dtype dt) { return dt == CR_F32 ? 4 : 8; }

const char *cr_status_name(cr_status st) {
  switch (st) {
  case CR_OK: return "ok";
  case CR_ERR_SHAPE: return "shape error";
  case CR_ERR_DTYPE: return "dtype error";
  case CR_ERR_ARG: return "bad argument";
  case CR_ERR_STATE: return "bad state";
  case CR_ERR_NOMEM: return "out of memory";
  case CR_ERR_IO: return "I/O error";
  case CR_ERR_FORMAT: return "malformed file";
  case CR_ERR_NUMERIC: return "non-finite value";
  }
  return "unknown status";
}
