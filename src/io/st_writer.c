/* st_writer.c — writing safetensors files (layout in st_format.h).
 *
 * Each tensor's values are copied (row-major, little-endian) when it is
 * added, and its header entry is built at the same time.  Saving writes a
 * temporary file next to the target, syncs it and renames it into place.
 * The temporary file has one name per target, "<dir>/.<name>.tmp", so the
 * debris of a save that was killed is replaced by the next save instead of
 * piling up; a write lock on it (fcntl) makes a second process saving to
 * the same target fail instead of writing into the same file. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "st_format.h"

static void store_u64le(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++, v >>= 8)
    p[i] = (unsigned char)(v & 0xff);
}

static const char *st_dtype_name(cr_dtype dt) { return dt == CR_F64 ? "F64" : "F32"; }

/* Strict UTF-8 check (no overlong forms, surrogates or code points above
 * U+10FFFF), as the JSON writer requires. */
static bool utf8_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p++;
    int extra;
    uint32_t cp, min;
    if (c < 0x80)
      continue;
    if ((c & 0xe0) == 0xc0)
      extra = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
      extra = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
      extra = 3, cp = c & 0x07, min = 0x10000;
    else
      return false;
    for (int k = 0; k < extra; k++, p++) {
      if ((*p & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (*p & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
  }
  return true;
}

typedef struct st_blob {
  unsigned char *bytes; /* row-major little-endian values */
  size_t nbytes;
} st_blob;

struct cr_st_writer {
  json_t *tensors; /* name -> {"dtype", "shape", "data_offsets"}, in order added */
  json_t *meta;    /* key -> value string */
  st_blob *blobs;  /* [n], in order added */
  int n, cap;
  uint64_t total; /* bytes of data added so far */
};

cr_st_writer *cr_st_writer_new(void) {
  cr_st_writer *w = cr__calloc(1, sizeof *w);
  if (!w)
    return NULL;
  w->tensors = json_object();
  w->meta = json_object();
  if (!w->tensors || !w->meta) {
    cr_st_writer_free(w);
    return NULL;
  }
  return w;
}

void cr_st_writer_free(cr_st_writer *w) {
  if (!w)
    return;
  for (int i = 0; i < w->n; i++)
    free(w->blobs[i].bytes);
  free(w->blobs);
  json_decref(w->tensors);
  json_decref(w->meta);
  free(w);
}

/* {"dtype": .., "shape": [..], "data_offsets": [begin, end]}, or NULL when
 * out of memory. */
static json_t *entry_json(const cr_tensor *t, uint64_t begin, uint64_t end) {
  json_t *e = json_object(), *shape = json_array(), *off = json_array();
  bool ok = e && shape && off;
  for (int i = 0; ok && i < t->ndim; i++)
    ok = json_array_append_new(shape, json_integer((json_int_t)t->shape[i])) == 0;
  ok = ok && json_array_append_new(off, json_integer((json_int_t)begin)) == 0 &&
       json_array_append_new(off, json_integer((json_int_t)end)) == 0;
  ok = ok && json_object_set_new(e, "dtype", json_string(st_dtype_name(t->dtype))) == 0 &&
       json_object_set(e, "shape", shape) == 0 && json_object_set(e, "data_offsets", off) == 0;
  json_decref(shape);
  json_decref(off);
  if (!ok) {
    json_decref(e);
    return NULL;
  }
  return e;
}

cr_status cr_st_writer_add(cr_ctx *ctx, cr_st_writer *w, const char *name, const cr_tensor *t) {
  static const char op[] = "st_writer_add";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!w || !name)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is NULL", op, w ? "name" : "writer");
  if (!t)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: tensor '%s' is NULL", op, name);
  if (!strcmp(name, ST_META_KEY))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: the name '%s' is reserved for metadata", op,
                            ST_META_KEY);
  if (!utf8_valid(name))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: tensor name is not valid UTF-8", op);
  if (json_object_get(w->tensors, name))
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "%s: a tensor named '%s' was already added "
                            "(names must be unique)",
                            op, name);
  cr_tensor *in = (cr_tensor *)t;
  if (!cr__check_inputs(ctx, op, 1, &in))
    return ctx->status;

  size_t nbytes = (size_t)t->numel * cr_dtype_size(t->dtype);
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 8;
    st_blob *b = realloc(w->blobs, (size_t)cap * sizeof *b);
    if (!b)
      return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
    w->blobs = b;
    w->cap = cap;
  }
  unsigned char *bytes = cr__malloc(nbytes);
  json_t *e = bytes ? entry_json(t, w->total, w->total + nbytes) : NULL;
  if (!e || json_object_set_new(w->tensors, name, e) != 0) {
    free(bytes);
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory adding '%s' %s", op, name,
                            cr__shp(t));
  }
  cr__gather(t, bytes);
  cr__st_swap_elems(bytes, t->numel, cr_dtype_size(t->dtype));
  w->blobs[w->n++] = (st_blob){bytes, nbytes};
  w->total += nbytes;
  return CR_OK;
}

cr_status cr_st_writer_set_meta(cr_ctx *ctx, cr_st_writer *w, const char *key, const char *value) {
  static const char op[] = "st_writer_set_meta";
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!w || !key || !value)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is NULL", op,
                            !w     ? "writer"
                            : !key ? "key"
                                   : "value");
  if (!utf8_valid(key) || !utf8_valid(value))
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "%s: %s is not valid UTF-8", op,
                            utf8_valid(key) ? "value" : "key");
  if (json_object_set_new(w->meta, key, json_string(value)) != 0)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory", op);
  return CR_OK;
}

/* The 8-byte length and the space-padded JSON header, in one malloc'd
 * block of *n bytes; NULL when out of memory. */
static unsigned char *build_header(const cr_st_writer *w, size_t *n) {
  json_t *root = json_object();
  bool ok = root != NULL;
  if (ok && json_object_size(w->meta))
    ok = json_object_set(root, ST_META_KEY, w->meta) == 0;
  const char *key;
  json_t *v;
  json_object_foreach(w->tensors, key, v) {
    if (ok)
      ok = json_object_set(root, key, v) == 0;
  }
  char *js = ok ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (!js)
    return NULL;
  size_t len = strlen(js), padded = (len + 7) & ~(size_t)7;
  unsigned char *h = cr__malloc(8 + padded);
  if (h) {
    store_u64le(h, padded);
    memcpy(h + 8, js, len);
    memset(h + 8 + len, ' ', padded - len);
    *n = 8 + padded;
  }
  free(js);
  return h;
}

/* Write all n bytes of p to fd; false (errno set) on failure. */
static bool write_all(int fd, const unsigned char *p, size_t n) {
  while (n) {
    ssize_t k = write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    p += k;
    n -= (size_t)k;
  }
  return true;
}

/* The directory holding path ("." if path has no '/'), malloc'd. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
  char *d = cr__malloc(n + 1);
  if (d) {
    memcpy(d, !slash ? "." : path, n);
    d[n] = '\0';
  }
  return d;
}

/* The temporary file of target path: "<dir>/.<name>.tmp", malloc'd; NULL
 * and an error if out of memory or path names no file. */
static char *tmp_name(cr_ctx *ctx, const char *path) {
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
    return cr__fail(ctx, CR_ERR_IO, "%s: is a directory, not a file name", path);
  size_t dn = (size_t)(base - path), n = dn + strlen(base) + 6;
  char *tmp = cr__malloc(n);
  if (!tmp)
    return cr__fail(ctx, CR_ERR_NOMEM, "%s: out of memory", path);
  snprintf(tmp, n, "%.*s.%s.tmp", (int)dn, path, base);
  return tmp;
}

/* Open (creating it, or reusing a killed save's debris) and lock the
 * temporary file tmp of path, emptied; -1 and an error if that fails. */
static int open_tmp(cr_ctx *ctx, const char *path, const char *tmp) {
  int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0) {
    cr__fail(ctx, CR_ERR_IO, "%s: cannot create the temporary file %s: %s", path, tmp,
             strerror(errno));
    return -1;
  }
  struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_SETLK, &lk) != 0) {
    int e = errno;
    close(fd);
    if (e == EACCES || e == EAGAIN)
      cr__fail(ctx, CR_ERR_IO, "%s: another process is saving it (%s is locked)", path, tmp);
    else
      cr__fail(ctx, CR_ERR_IO, "%s: cannot lock the temporary file %s: %s", path, tmp, strerror(e));
    return -1;
  }
  if (ftruncate(fd, 0) != 0) {
    int e = errno;
    close(fd);
    cr__fail(ctx, CR_ERR_IO, "%s: cannot empty the temporary file %s: %s", path, tmp, strerror(e));
    return -1;
  }
  return fd;
}

cr_status cr_st_check_writable(cr_ctx *ctx, const char *path) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!path)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "st_check_writable: path is NULL");
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return cr_ctx_set_error(ctx, CR_ERR_IO, "%s: is a directory, not a file name", path);
  char *tmp = tmp_name(ctx, path);
  int fd = tmp ? open_tmp(ctx, path, tmp) : -1;
  if (fd >= 0) {
    unlink(tmp);
    close(fd);
  }
  free(tmp);
  return ctx->status;
}

/* A hint for the reasons of a failed write that a user can fix. */
static const char *write_hint(int e) {
  return e == EFBIG    ? " (the file size limit, ulimit -f, is reached)"
         : e == ENOSPC ? " (the disk is full)"
         : e == EDQUOT ? " (the disk quota is reached)"
                       : "";
}

cr_status cr_st_writer_save(cr_ctx *ctx, const cr_st_writer *w, const char *path) {
  if (!ctx)
    return CR_ERR_ARG;
  if (ctx->status != CR_OK)
    return ctx->status;
  if (!w || !path)
    return cr_ctx_set_error(ctx, CR_ERR_ARG, "st_writer_save: %s is NULL", w ? "path" : "writer");
  size_t hn = 0;
  unsigned char *header = build_header(w, &hn);
  if (!header)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM, "%s: out of memory building the header", path);
  if (hn - 8 > ST_MAX_HEADER) {
    free(header);
    return cr_ctx_set_error(ctx, CR_ERR_ARG,
                            "%s: the header would be %zu bytes, more than "
                            "readers accept (%llu)",
                            path, hn - 8, (unsigned long long)ST_MAX_HEADER);
  }
  char *tmp = tmp_name(ctx, path);
  int fd = tmp ? open_tmp(ctx, path, tmp) : -1;
  if (fd < 0) {
    free(tmp);
    free(header);
    return ctx->status;
  }

  /* write, sync and rename while holding the lock, then close */
  const char *what = NULL; /* the step that failed */
  int e = 0;
  if (!write_all(fd, header, hn))
    what = "write";
  for (int i = 0; !what && i < w->n; i++)
    if (!write_all(fd, w->blobs[i].bytes, w->blobs[i].nbytes))
      what = "write";
  if (!what && fsync(fd) != 0)
    what = "fsync";
  if (!what && rename(tmp, path) != 0)
    what = "rename";
  if (what) {
    e = errno;
    unlink(tmp);
  }
  close(fd); /* after fsync, a failed close loses no data */
  free(header);
  if (what) {
    cr_ctx_set_error(ctx, CR_ERR_IO,
                     "%s: %s of the temporary file %s failed: %s%s (the "
                     "previous file, if any, is unchanged)",
                     path, what, tmp, strerror(e), write_hint(e));
    free(tmp);
    return CR_ERR_IO;
  }
  free(tmp);

  /* make the rename itself durable */
  char *dir = dir_of(path);
  if (!dir)
    return cr_ctx_set_error(ctx, CR_ERR_NOMEM,
                            "%s: saved, but out of memory syncing its "
                            "directory",
                            path);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool synced = dfd >= 0 && (fsync(dfd) == 0 || errno == EINVAL);
  e = errno;
  if (dfd >= 0)
    close(dfd);
  if (!synced) {
    cr_ctx_set_error(ctx, CR_ERR_IO,
                     "%s: saved, but syncing its directory %s failed: %s "
                     "(the new file may not survive a crash)",
                     path, dir, strerror(e));
    free(dir);
    return CR_ERR_IO;
  }
  free(dir);
  return CR_OK;
}
