/* st_reader.c — reading safetensors files (layout in st_format.h).
 *
 * Reading loads the whole file, parses the header with jansson and checks
 * every entry before anything is handed out, so the accessors never need to
 * check bounds again.  The JSON tree is kept while the file is open: tensor
 * names and metadata strings are borrowed from it.  Every size read from a
 * header goes through the checked helpers of internal.h (cr__numel_ok,
 * cr__mul_ok), so a shape whose element or byte count would wrap is refused
 * as "too large", never wrapped. */
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>

#include "st_format.h"

static uint64_t load_u64le(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* Element i of little-endian data of dtype dt (possibly unaligned). */
static double load_elem(const unsigned char *p, cr_dtype dt, int64_t i) {
  if (dt == CR_F32) {
    float v;
    memcpy(&v, p + 4 * i, 4);
    cr__st_swap_elems(&v, 1, 4);
    return (double)v;
  }
  double v;
  memcpy(&v, p + 8 * i, 8);
  cr__st_swap_elems(&v, 1, 8);
  return v;
}

typedef struct st_entry {
  cr_st_info info;
  size_t begin; /* offset of the first byte in the data section */
} st_entry;

struct cr_st_file {
  char *path;                /* for messages */
  unsigned char *buf;        /* the whole file */
  size_t size;               /* bytes in buf */
  const unsigned char *data; /* the data section, inside buf */
  size_t data_size;          /* its length */
  json_t *root;              /* the parsed header; owns names and metadata */
  json_t *meta;              /* borrowed from root; NULL if absent */
  st_entry *entries;         /* [n], header order */
  const st_entry **by_name;  /* [n], sorted by name for lookup */
  int n;
  const char **meta_keys; /* [n_meta], header order */
  int n_meta;
};

void cr_st_close(cr_st_file *f) {
  if (!f)
    return;
  json_decref(f->root);
  free(f->entries);
  free(f->by_name);
  free(f->meta_keys);
  free(f->buf);
  free(f->path);
  free(f);
}

/* Store "path: <message>" as a CR_ERR_FORMAT error, free f, return NULL. */
__attribute__((format(printf, 3, 4))) static cr_st_file *bad_file(cr_ctx *ctx, cr_st_file *f,
                                                                  const char *fmt, ...) {
  char msg[448];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cr__fail(ctx, CR_ERR_FORMAT, "%s: %s", f->path, msg);
  cr_st_close(f);
  return NULL;
}

static int cmp_by_name(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
  return strcmp(x->info.name, y->info.name);
}

static int cmp_by_offset(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->info.nbytes < y->info.nbytes ? -1 : x->info.nbytes > y->info.nbytes;
}

/* Parse and check one header entry into e.  Returns NULL if fine, else the
 * problem written into msg. */
static const char *parse_entry(const cr_st_file *f, const char *name, json_t *v, st_entry *e,
                               char *msg, size_t n) {
  if (!json_is_object(v)) {
    snprintf(msg, n,
             "entry '%s' is not an object (expected {\"dtype\", \"shape\", "
             "\"data_offsets\"})",
             name);
    return msg;
  }
  memset(e, 0, sizeof *e);
  e->info.name = name;

  /* dtype */
  const char *dt = json_string_value(json_object_get(v, "dtype"));
  if (!dt) {
    snprintf(msg, n, "tensor '%s' has no \"dtype\" string", name);
    return msg;
  }
  if (!strcmp(dt, "F32"))
    e->info.dtype = CR_F32;
  else if (!strcmp(dt, "F64"))
    e->info.dtype = CR_F64;
  else {
    snprintf(msg, n, "unsupported dtype %.32s for tensor '%s' (chainrule reads F32 and F64)", dt,
             name);
    return msg;
  }
  size_t es = cr_dtype_size(e->info.dtype);

  /* shape: an array of non-negative integers, at most CR_MAX_DIMS of them */
  json_t *shape = json_object_get(v, "shape");
  if (!json_is_array(shape)) {
    snprintf(msg, n, "shape of tensor '%s' is not an array of non-negative integers", name);
    return msg;
  }
  size_t nd = json_array_size(shape);
  if (nd > CR_MAX_DIMS) {
    snprintf(msg, n, "tensor '%s' has %zu dims, more than CR_MAX_DIMS (%d)", name, nd, CR_MAX_DIMS);
    return msg;
  }
  bool has_zero = false;
  for (size_t i = 0; i < nd; i++) {
    json_t *d = json_array_get(shape, i);
    if (!json_is_integer(d) || json_integer_value(d) < 0) {
      snprintf(msg, n, "shape of tensor '%s' is not an array of non-negative integers", name);
      return msg;
    }
    e->info.shape[i] = (int64_t)json_integer_value(d);
    has_zero |= e->info.shape[i] == 0;
  }
  e->info.ndim = (int)nd;
  /* numel = prod(shape) <= CR__MAX_NUMEL, nbytes = numel * es, both checked
   * (a size-0 dim makes an empty tensor whatever the other dims say) */
  int64_t numel = 0, nbytes = 0;
  if (!has_zero && (!cr__numel_ok(e->info.ndim, e->info.shape, &numel) ||
                    !cr__mul_ok(numel, (int64_t)es, &nbytes))) {
    char shp[96];
    cr_shape_str(shp, sizeof shp, e->info.ndim, e->info.shape);
    snprintf(msg, n, "shape of tensor '%s' is too large: %s has more than 2^40 elements", name,
             shp);
    return msg;
  }
  e->info.numel = numel;
  e->info.nbytes = (size_t)nbytes;

  /* data_offsets: [begin, end] inside the data section, sized for the shape */
  json_t *off = json_object_get(v, "data_offsets");
  json_t *jb = json_array_get(off, 0), *je = json_array_get(off, 1);
  if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(jb) ||
      !json_is_integer(je) || json_integer_value(jb) < 0 ||
      json_integer_value(jb) > json_integer_value(je)) {
    snprintf(msg, n,
             "data_offsets of tensor '%s' must be two integers [begin, end] with "
             "0 <= begin <= end",
             name);
    return msg;
  }
  long long b = json_integer_value(jb), end = json_integer_value(je);
  if ((uint64_t)end > (uint64_t)f->data_size) {
    snprintf(msg, n,
             "data_offsets [%lld,%lld] of tensor '%s' end beyond the data section "
             "(%zu bytes)",
             b, end, name, f->data_size);
    return msg;
  }
  if ((uint64_t)(end - b) != (uint64_t)e->info.nbytes) {
    char shp[96];
    cr_shape_str(shp, sizeof shp, e->info.ndim, e->info.shape);
    snprintf(msg, n, "tensor '%s' has %lld bytes of data, but shape %s of %s needs %zu", name,
             end - b, shp, dt, e->info.nbytes);
    return msg;
  }
  e->begin = (size_t)b;
  return NULL;
}

/* Returned by parse_meta when out of memory (not a format problem). */
static const char st_oom[] = "out of memory";

static const char *parse_meta(cr_st_file *f, json_t *meta, char *msg, size_t n) {
  if (!json_is_object(meta)) {
    snprintf(msg, n, "__metadata__ is not an object of strings");
    return msg;
  }
  f->meta = meta;
  f->meta_keys = cr__malloc(json_object_size(meta) * sizeof *f->meta_keys);
  if (!f->meta_keys)
    return st_oom;
  const char *key;
  json_t *v;
  json_object_foreach(meta, key, v) {
    if (!json_is_string(v)) {
      snprintf(msg, n, "__metadata__ value for key '%s' is not a string", key);
      return msg;
    }
    f->meta_keys[f->n_meta++] = key;
  }
  return NULL;
}

/* Validate f->buf (f->size bytes) and build the index.  Takes f. */
static cr_st_file *parse(cr_ctx *ctx, cr_st_file *f) {
  if (f->size < 8)
    return bad_file(ctx, f, "file is %zu bytes, shorter than the 8-byte header length", f->size);
  uint64_t hlen = load_u64le(f->buf);
  if (hlen > ST_MAX_HEADER)
    return bad_file(ctx, f,
                    "header length %llu is absurd (more than %llu bytes; not a "
                    "safetensors file?)",
                    (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
  if (hlen > f->size - 8)
    return bad_file(ctx, f,
                    "header length %llu is larger than the %zu bytes after it "
                    "(truncated file?)",
                    (unsigned long long)hlen, f->size - 8);
  f->data = f->buf + 8 + hlen;
  f->data_size = f->size - 8 - (size_t)hlen;

  json_error_t jerr;
  f->root = json_loadb((const char *)f->buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
  if (!f->root)
    return bad_file(ctx, f, "invalid JSON header: %s (line %d, column %d)", jerr.text, jerr.line,
                    jerr.column);
  if (!json_is_object(f->root))
    return bad_file(ctx, f, "header is not a JSON object");

  size_t total = json_object_size(f->root);
  f->entries = cr__calloc(total, sizeof *f->entries);
  f->by_name = cr__calloc(total, sizeof *f->by_name);
  if (!f->entries || !f->by_name) {
    cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory for %zu header entries", f->path, total);
    cr_st_close(f);
    return NULL;
  }
  char msg[400];
  const char *key;
  json_t *v;
  json_object_foreach(f->root, key, v) {
    const char *problem;
    if (!strcmp(key, ST_META_KEY))
      problem = parse_meta(f, v, msg, sizeof msg);
    else
      problem = parse_entry(f, key, v, &f->entries[f->n], msg, sizeof msg);
    if (problem == st_oom) {
      cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory for the metadata", f->path);
      cr_st_close(f);
      return NULL;
    }
    if (problem)
      return bad_file(ctx, f, "%s", problem);
    if (strcmp(key, ST_META_KEY)) {
      f->by_name[f->n] = &f->entries[f->n];
      f->n++;
    }
  }

  /* no two tensors may share a byte: sort by offset, compare neighbours */
  int m = 0;
  for (int i = 0; i < f->n; i++)
    if (f->entries[i].info.nbytes)
      f->by_name[m++] = &f->entries[i];
  qsort(f->by_name, (size_t)m, sizeof *f->by_name, cmp_by_offset);
  for (int i = 1; i < m; i++) {
    const st_entry *a = f->by_name[i - 1], *b = f->by_name[i];
    if (b->begin < a->begin + a->info.nbytes)
      return bad_file(ctx, f, "tensors '%s' [%zu,%zu] and '%s' [%zu,%zu] overlap", a->info.name,
                      a->begin, a->begin + a->info.nbytes, b->info.name, b->begin,
                      b->begin + b->info.nbytes);
  }

  for (int i = 0; i < f->n; i++)
    f->by_name[i] = &f->entries[i];
  qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_by_name);
  return f;
}

/* A file record owning buf; name is copied.  Frees buf on failure. */
static cr_st_file *file_new(cr_ctx *ctx, const char *name, unsigned char *buf, size_t size) {
  cr_st_file *f = cr__calloc(1, sizeof *f);
  char *path = cr__malloc(strlen(name) + 1);
  if (!f || !path) {
    free(f);
    free(path);
    free(buf);
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", name);
  }
  strcpy(path, name);
  f->path = path;
  f->buf = buf;
  f->size = size;
  return f;
}

cr_st_file *cr_st_open(cr_ctx *ctx, const char *path) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  if (!path)
    return cr__fail(ctx, CR_ERR_ARG, "st_open: path is NULL");
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return cr__fail(ctx, CR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(fp), &sb) != 0) {
    int e = errno;
    fclose(fp);
    return cr__fail(ctx, CR_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    fclose(fp);
    return cr__fail(ctx, CR_ERR_IO, "%s: not a regular file", path);
  }
  size_t size = (size_t)sb.st_size;
  unsigned char *buf = cr__malloc(size);
  if (!buf) {
    fclose(fp);
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, size);
  }
  size_t got = fread(buf, 1, size, fp);
  bool err = ferror(fp);
  int e = errno;
  fclose(fp);
  if (got != size) {
    free(buf);
    if (err)
      return cr__fail(ctx, CR_ERR_IO, "%s: read failed: %s", path, strerror(e));
    return cr__fail(ctx, CR_ERR_IO, "%s: file shrank while reading (%zu of %zu bytes)", path, got,
                    size);
  }
  cr_st_file *f = file_new(ctx, path, buf, size);
  return f ? parse(ctx, f) : NULL;
}

cr_st_file *cr_st_open_mem(cr_ctx *ctx, const void *bytes, size_t n, const char *name) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  if (!name)
    name = "<memory>";
  if (!bytes && n)
    return cr__fail(ctx, CR_ERR_ARG, "%s: st_open_mem: bytes is NULL", name);
  unsigned char *buf = cr__malloc(n);
  if (!buf)
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory copying %zu bytes", name, n);
  if (n)
    memcpy(buf, bytes, n);
  cr_st_file *f = file_new(ctx, name, buf, n);
  return f ? parse(ctx, f) : NULL;
}

int cr_st_count(const cr_st_file *f) { return f ? f->n : 0; }

const char *cr_st_name(const cr_st_file *f, int i) {
  return f && i >= 0 && i < f->n ? f->entries[i].info.name : NULL;
}

static const st_entry *find(const cr_st_file *f, const char *name) {
  if (!f || !name)
    return NULL;
  st_entry key = {.info.name = name};
  const st_entry *kp = &key;
  const st_entry **hit = bsearch(&kp, f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_by_name);
  return hit ? *hit : NULL;
}

const cr_st_info *cr_st_find(const cr_st_file *f, const char *name) {
  const st_entry *e = find(f, name);
  return e ? &e->info : NULL;
}

const char *cr_st_meta(const cr_st_file *f, const char *key) {
  if (!f || !f->meta || !key)
    return NULL;
  return json_string_value(json_object_get(f->meta, key));
}

int cr_st_meta_count(const cr_st_file *f) { return f ? f->n_meta : 0; }

const char *cr_st_meta_key(const cr_st_file *f, int i) {
  return f && i >= 0 && i < f->n_meta ? f->meta_keys[i] : NULL;
}

/* The one "no such tensor" error of the reader (CR_ERR_ARG), for every
 * accessor: "m.safetensors: no tensor named 'x' (it holds 2: 'a', 'b')". */
static void missing(cr_ctx *ctx, const cr_st_file *f, const char *name) {
  char have[160] = "";
  size_t k = 0;
  for (int i = 0; i < f->n && k < sizeof have; i++)
    k += (size_t)snprintf(have + k, sizeof have - k, "%s'%s'", i ? ", " : "",
                          f->entries[i].info.name);
  if (k >= sizeof have)
    memcpy(have + sizeof have - 4, "...", 4);
  cr__fail(ctx, CR_ERR_ARG, "%s: no tensor named '%s' (it holds %d: %s)", f->path, name, f->n,
           f->n ? have : "none");
}

/* The entry called name, or NULL and an error (a NULL argument names op). */
static const st_entry *lookup(cr_ctx *ctx, const char *op, const cr_st_file *f, const char *name) {
  if (!f || !name) {
    cr__fail(ctx, CR_ERR_ARG, "%s: %s is NULL", op, f ? "name" : "file");
    return NULL;
  }
  const st_entry *e = find(f, name);
  if (!e)
    missing(ctx, f, name);
  return e;
}

/* The shape a chainrule tensor gets for e (a scalar becomes [1]); false and
 * an error if e has a size-0 dim, which chainrule tensors cannot have. */
static bool load_shape(cr_ctx *ctx, const cr_st_file *f, const st_entry *e, int *ndim,
                       int64_t *shape) {
  if (e->info.ndim == 0) {
    *ndim = 1;
    shape[0] = 1;
    return true;
  }
  if (e->info.numel == 0) {
    char b[96];
    cr_shape_str(b, sizeof b, e->info.ndim, e->info.shape);
    cr__fail(ctx, CR_ERR_SHAPE,
             "%s: tensor '%s' has shape %s: chainrule tensors have "
             "every dim >= 1",
             f->path, e->info.name, b);
    return false;
  }
  *ndim = e->info.ndim;
  memcpy(shape, e->info.shape, (size_t)*ndim * sizeof *shape);
  return true;
}

cr_tensor *cr_st_get(cr_ctx *ctx, const cr_st_file *f, const char *name) {
  if (!ctx || ctx->status != CR_OK)
    return NULL;
  const st_entry *e = lookup(ctx, "st_get", f, name);
  int ndim;
  int64_t shape[CR_MAX_DIMS];
  if (!e || !load_shape(ctx, f, e, &ndim, shape))
    return NULL;
  cr_tensor *t = cr_tensor_new(ctx, e->info.dtype, ndim, shape);
  if (!t)
    return NULL;
  memcpy(t->data, f->data + e->begin, e->info.nbytes);
  cr__st_swap_elems(t->data, t->numel, cr_dtype_size(t->dtype));
  return t;
}

cr_status cr_st_read_into(cr_ctx *ctx, const cr_st_file *f, const char *name, cr_tensor *dst) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!dst)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "st_read_into: destination tensor is NULL");
  if (!cr__check_inputs(ctx, "st_read_into", 1, &dst))
    return ctx->status;
  const st_entry *e = lookup(ctx, "st_read_into", f, name);
  int ndim;
  int64_t shape[CR_MAX_DIMS];
  if (!e || !load_shape(ctx, f, e, &ndim, shape))
    return ctx->status;
  if (ndim != dst->ndim || memcmp(shape, dst->shape, (size_t)ndim * sizeof *shape)) {
    char b[96];
    cr_shape_str(b, sizeof b, e->info.ndim, e->info.shape);
    return cr_ctx_set_error(ctx, CR_ERR_SHAPE,
                            "%s: tensor '%s' has shape %s in the file, "
                            "but the destination has shape %s",
                            f->path, name, b, cr__shp(dst));
  }
  const unsigned char *src = f->data + e->begin;
  if (dst->dtype == e->info.dtype && cr__is_contig(dst)) {
    cr__touch(dst);
    memcpy(dst->data, src, e->info.nbytes);
    cr__st_swap_elems(dst->data, dst->numel, cr_dtype_size(dst->dtype));
  } else {
    for (int64_t i = 0; i < dst->numel; i++)
      cr_set_flat(dst, i, load_elem(src, e->info.dtype, i));
  }
  return CR_OK;
}

const char *cr_st_path(const cr_st_file *f) { return f && f->path ? f->path : ""; }

cr_status cr_st_expect(cr_ctx *ctx, const cr_st_file *f, const char *name, const cr_tensor *like) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!like)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "st_expect: tensor is NULL");
  const st_entry *e = lookup(ctx, "st_expect", f, name);
  if (!e)
    return ctx->status;
  const cr_st_info *info = &e->info;
  int nd = cr_ndim(like);
  const int64_t *shape = cr_shape(like);
  bool same = info->ndim == nd || (info->ndim == 0 && cr_numel(like) == 1);
  for (int d = 0; same && d < info->ndim; d++)
    same = info->shape[d] == shape[d];
  if (same)
    return CR_OK;
  char have[96], want[96];
  cr_shape_str(have, sizeof have, info->ndim, info->shape);
  cr_shape_str(want, sizeof want, nd, shape);
  return cr_ctx_set_error(ctx, CR_ERR_SHAPE, "%s: tensor '%s' is %s, this model needs %s",
                          cr_st_path(f), name, have, want);
}
