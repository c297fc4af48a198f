/* safetensors checkpoints: round trips, exact bytes, every malformed-file
 * check, atomic saving, and a mutation loop that must never crash (run it
 * under ASan and valgrind). */
/* cmocka needs these three first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chainrule.h"
#include "chainrule/io.h"

/* ---- fixture: a context and a fresh temporary directory per test */

typedef struct fx {
  cr_ctx *ctx;
  char dir[64];
  char paths[4][512]; /* rotating buffers for path() */
  int next;
} fx;

static int setup(void **state) {
  fx *x = calloc(1, sizeof *x);
  if (!x)
    return -1;
  x->ctx = cr_ctx_new();
  strcpy(x->dir, "/tmp/cr-st-XXXXXX");
  if (!x->ctx || !mkdtemp(x->dir)) {
    cr_ctx_free(x->ctx);
    free(x);
    return -1;
  }
  *state = x;
  return 0;
}

static void rm_rf(const char *p) {
  struct stat sb;
  if (lstat(p, &sb) != 0)
    return;
  if (S_ISDIR(sb.st_mode)) {
    chmod(p, 0700);
    DIR *d = opendir(p);
    struct dirent *de;
    while (d && (de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
        continue;
      char sub[1024];
      snprintf(sub, sizeof sub, "%s/%s", p, de->d_name);
      rm_rf(sub);
    }
    if (d)
      closedir(d);
    rmdir(p);
  } else {
    unlink(p);
  }
}

static int teardown(void **state) {
  fx *x = *state;
  rm_rf(x->dir);
  cr_ctx_free(x->ctx);
  free(x);
  return 0;
}

/* "<dir>/<name>" in one of four rotating buffers. */
static const char *path(fx *x, const char *name) {
  char *b = x->paths[x->next++ & 3];
  snprintf(b, sizeof x->paths[0], "%s/%s", x->dir, name);
  return b;
}

static void write_bytes(const char *p, const void *b, size_t n) {
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  if (n)
    assert_int_equal(fwrite(b, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

/* The whole file at p in a malloc'd buffer (caller frees); size in *n. */
static unsigned char *read_bytes(const char *p, size_t *n) {
  FILE *f = fopen(p, "rb");
  assert_non_null(f);
  unsigned char *b = malloc(1 << 16);
  assert_non_null(b);
  *n = fread(b, 1, 1 << 16, f);
  fclose(f);
  return b;
}

/* A file image: u64 header length, header (unpadded), ndata zero bytes.
 * Returns the length written into out. */
static size_t make_st(unsigned char *out, const char *header, size_t ndata) {
  size_t h = strlen(header);
  for (int i = 0; i < 8; i++)
    out[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(out + 8, header, h);
  memset(out + 8 + h, 0, ndata);
  return 8 + h + ndata;
}

static bool starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Names in dir that contain ".tmp-" (leftover temporary files). */
static int count_temps(const char *dir) {
  int n = 0;
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *de;
  while ((de = readdir(d)))
    n += strlen(de->d_name) > 4 && !strcmp(de->d_name + strlen(de->d_name) - 4, ".tmp");
  closedir(d);
  return n;
}

static void assert_file_is(const char *p, const char *content) {
  size_t n;
  unsigned char *b = read_bytes(p, &n);
  assert_int_equal(n, strlen(content));
  assert_memory_equal(b, content, n);
  free(b);
}

/* Every value of the file tensor name equals the matching value of want. */
static void assert_loaded_equal(cr_ctx *ctx, const cr_st_file *f, const char *name,
                                const cr_tensor *want) {
  cr_tensor *t = cr_st_get(ctx, f, name);
  if (!t)
    fail_msg("%s", cr_ctx_error(ctx));
  assert_int_equal(cr_dtype_of(t), cr_dtype_of(want));
  assert_int_equal(cr_ndim(t), cr_ndim(want));
  assert_memory_equal(cr_shape(t), cr_shape(want), sizeof(int64_t) * (size_t)cr_ndim(t));
  assert_true(cr_is_persistent(t));
  for (int64_t i = 0; i < cr_numel(t); i++)
    assert_true(cr_get_flat(t, i) == cr_get_flat(want, i));
  cr_tensor_free(t);
}

/* ---- round trips */

static void test_roundtrip_f32(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_rng *rng = cr_rng_new(7);
  cr_tensor *m = cr_reshape(ctx, cr_arange(ctx, CR_F32, 0, 6, 1), CR_SHAPE(2, 3));
  cr_tensor *mt = cr_transpose(ctx, m, 0, 1); /* (3,2) strided view */
  cr_tensor *v = cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(5), 0, 1);
  assert_non_null(mt);
  assert_false(cr_is_contiguous(mt));

  cr_st_writer *w = cr_st_writer_new();
  assert_non_null(w);
  assert_int_equal(cr_st_writer_add(ctx, w, "m", m), CR_OK);
  assert_int_equal(cr_st_writer_add(ctx, w, "m.T", mt), CR_OK);
  assert_int_equal(cr_st_writer_add(ctx, w, "v", v), CR_OK);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "epoch", "2"), CR_OK);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "note", "na\xc3\xafve \"quoted\"\n"), CR_OK);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "epoch", "3"), CR_OK); /* replaces */
  /* keep copies to compare with: the writer copied, so a reset is harmless */
  cr_tensor *pm = cr_persist(ctx, m), *pmt = cr_persist(ctx, mt), *pv = cr_persist(ctx, v);
  cr_ctx_reset(ctx);
  cr_tensor *junk = cr_full(ctx, CR_F32, CR_SHAPE(64), -1); /* overwrites the old arena */
  assert_non_null(junk);
  const char *p = path(x, "f32.safetensors");
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  assert_int_equal(count_temps(x->dir), 0);

  cr_st_file *f = cr_st_open(ctx, p);
  if (!f)
    fail_msg("%s", cr_ctx_error(ctx));
  assert_int_equal(cr_st_count(f), 3);
  assert_string_equal(cr_st_name(f, 0), "m");
  assert_string_equal(cr_st_name(f, 1), "m.T");
  assert_string_equal(cr_st_name(f, 2), "v");
  assert_null(cr_st_name(f, 3));
  assert_null(cr_st_name(f, -1));
  const cr_st_info *info = cr_st_find(f, "m.T");
  assert_non_null(info);
  assert_string_equal(info->name, "m.T");
  assert_int_equal(info->dtype, CR_F32);
  assert_int_equal(info->ndim, 2);
  assert_int_equal(info->shape[0], 3);
  assert_int_equal(info->shape[1], 2);
  assert_int_equal(info->numel, 6);
  assert_int_equal(info->nbytes, 24);
  assert_null(cr_st_find(f, "nope"));
  assert_loaded_equal(ctx, f, "m", pm);
  assert_loaded_equal(ctx, f, "m.T", pmt);
  assert_loaded_equal(ctx, f, "v", pv);
  /* the transposed view was stored row-major: m.T[0] = [0, 3] */
  cr_tensor *t = cr_st_get(ctx, f, "m.T");
  assert_true(cr_get_flat(t, 0) == 0.0 && cr_get_flat(t, 1) == 3.0);
  cr_tensor_free(t);

  assert_string_equal(cr_st_meta(f, "epoch"), "3");
  assert_string_equal(cr_st_meta(f, "note"), "na\xc3\xafve \"quoted\"\n");
  assert_null(cr_st_meta(f, "absent"));
  assert_int_equal(cr_st_meta_count(f), 2);
  assert_string_equal(cr_st_meta_key(f, 0), "epoch");
  assert_string_equal(cr_st_meta_key(f, 1), "note");
  assert_null(cr_st_meta_key(f, 2));
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
  cr_st_close(f);
  cr_tensor_free(pm);
  cr_tensor_free(pmt);
  cr_tensor_free(pv);
  cr_rng_free(rng);
}

static void test_roundtrip_f64_and_read_into(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_rng *rng = cr_rng_new(11);
  cr_tensor *a = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(2, 3, 1, 2), 0, 1);
  cr_tensor *b3 = cr_rand_normal(ctx, rng, CR_F64, CR_SHAPE(2, 3, 4), 0, 1);
  cr_tensor *bt = cr_transpose(ctx, b3, 0, 2); /* (4,3,2) strided */
  cr_tensor *s = cr_full(ctx, CR_F32, CR_SHAPE(1), 0.1);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_st_writer_add(ctx, w, "a", a), CR_OK);
  assert_int_equal(cr_st_writer_add(ctx, w, "bt", bt), CR_OK);
  assert_int_equal(cr_st_writer_add(ctx, w, "s32", s), CR_OK);
  const char *p = path(x, "f64.safetensors");
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  /* saving again over the file works and gives the same file */
  size_t n1, n2;
  unsigned char *b1 = read_bytes(p, &n1);
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  unsigned char *b2 = read_bytes(p, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(b1, b2, n1);
  free(b1);
  free(b2);
  cr_st_writer_free(w);

  cr_st_file *f = cr_st_open(ctx, p);
  assert_non_null(f);
  assert_int_equal(cr_st_meta_count(f), 0);
  assert_null(cr_st_meta(f, "x"));
  assert_loaded_equal(ctx, f, "a", a);
  assert_loaded_equal(ctx, f, "bt", bt);
  assert_int_equal(cr_st_find(f, "bt")->dtype, CR_F64);

  /* same dtype, contiguous destination */
  cr_tensor *d = cr_zeros(ctx, CR_F64, CR_SHAPE(4, 3, 2));
  assert_int_equal(cr_st_read_into(ctx, f, "bt", d), CR_OK);
  for (int i = 0; i < 24; i++)
    assert_true(cr_get_flat(d, i) == cr_get_flat(bt, i));
  /* F64 -> F32 conversion */
  cr_tensor *d32 = cr_tensor_new(ctx, CR_F32, CR_SHAPE(2, 3, 1, 2));
  assert_int_equal(cr_st_read_into(ctx, f, "a", d32), CR_OK);
  for (int i = 0; i < 12; i++)
    assert_true(cr_get_flat(d32, i) == (double)(float)cr_get_flat(a, i));
  cr_tensor_free(d32);
  /* F32 -> F64 conversion */
  cr_tensor *d64 = cr_zeros(ctx, CR_F64, CR_SHAPE(1));
  assert_int_equal(cr_st_read_into(ctx, f, "s32", d64), CR_OK);
  assert_true(cr_item(d64) == (double)0.1f);
  /* into a strided view of a persistent tensor: writes through the view */
  cr_tensor *pd = cr_tensor_new(ctx, CR_F64, CR_SHAPE(2, 3, 4));
  cr_tensor *pdt = cr_transpose(ctx, pd, 0, 2);
  assert_int_equal(cr_st_read_into(ctx, f, "bt", pdt), CR_OK);
  for (int i = 0; i < 24; i++)
    assert_true(cr_get_flat(pd, i) == cr_get_flat(b3, i));
  cr_tensor_free(pd);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
  cr_st_close(f);
  cr_rng_free(rng);
}

/* ---- exact bytes */

static const char exact_header[] =
    "{\"__metadata__\":{\"k\":\"v\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
    "\"b\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]}}   "; /* 133 + 3 pad */

static void test_exact_bytes(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  /* the file, built by hand */
  unsigned char want[8 + 136 + 16];
  static const unsigned char len[8] = {136, 0, 0, 0, 0, 0, 0, 0};
  static const unsigned char one_f32[4] = {0x00, 0x00, 0x80, 0x3f};
  static const unsigned char minus_two_f32[4] = {0x00, 0x00, 0x00, 0xc0};
  static const unsigned char half_f64[8] = {0, 0, 0, 0, 0, 0, 0xe0, 0x3f};
  assert_int_equal(strlen(exact_header), 136);
  memcpy(want, len, 8);
  memcpy(want + 8, exact_header, 136);
  memcpy(want + 144, one_f32, 4);
  memcpy(want + 148, minus_two_f32, 4);
  memcpy(want + 152, half_f64, 8);

  /* the writer produces exactly these bytes */
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "k", "v"), CR_OK);
  assert_int_equal(
      cr_st_writer_add(ctx, w, "a", cr_from_array(ctx, CR_F32, CR_SHAPE(2), (float[]){1, -2})),
      CR_OK);
  assert_int_equal(
      cr_st_writer_add(ctx, w, "b", cr_from_array(ctx, CR_F64, CR_SHAPE(1), (double[]){0.5})),
      CR_OK);
  const char *p = path(x, "exact.safetensors");
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  size_t n;
  unsigned char *got = read_bytes(p, &n);
  assert_int_equal(n, sizeof want);
  assert_memory_equal(got, want, 8);              /* header length */
  assert_memory_equal(got + 8, want + 8, 136);    /* header */
  assert_memory_equal(got + 144, want + 144, 16); /* data */
  free(got);

  /* and the hand-built bytes read back as these values */
  const char *q = path(x, "hand.safetensors");
  write_bytes(q, want, sizeof want);
  cr_st_file *f = cr_st_open(ctx, q);
  assert_non_null(f);
  cr_tensor *a = cr_st_get(ctx, f, "a"), *b = cr_st_get(ctx, f, "b");
  assert_true(cr_get_flat(a, 0) == 1.0 && cr_get_flat(a, 1) == -2.0);
  assert_true(cr_item(b) == 0.5);
  assert_string_equal(cr_st_meta(f, "k"), "v");
  cr_tensor_free(a);
  cr_tensor_free(b);
  cr_st_close(f);

  /* an empty writer saves a valid file: "{}" and padding */
  w = cr_st_writer_new();
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  got = read_bytes(p, &n);
  assert_int_equal(n, 16);
  assert_memory_equal(got, "\x08\0\0\0\0\0\0\0{}      ", 16);
  free(got);
  f = cr_st_open(ctx, p);
  assert_int_equal(cr_st_count(f), 0);
  cr_st_close(f);
}

/* ---- malformed files */

typedef struct bad_case {
  const char *header;
  size_t ndata;
  const char *want; /* the key part of the message */
} bad_case;

#define E1(dt, shape, off)                                                                         \
  "{\"w\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}}"

static const bad_case bad_cases[] = {
    {"", 0, "invalid JSON header"},
    {"{\"a\":", 0, "invalid JSON header"},
    {"{} x", 0, "invalid JSON header"},
    {"{\"w\":1,\"w\":2}", 0, "duplicate object key"},
    {"[1,2]", 0, "header is not a JSON object"},
    {"{\"w\":3}", 0, "entry 'w' is not an object"},
    {"{\"w\":[]}", 0, "entry 'w' is not an object"},
    {E1("BF16", "[2]", "[0,4]"), 4, "unsupported dtype BF16 for tensor 'w'"},
    {E1("f32", "[2]", "[0,8]"), 8, "unsupported dtype f32 for tensor 'w'"},
    {"{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'w' has no \"dtype\" string"},
    {"{\"w\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "tensor 'w' has no \"dtype\" string"},
    {E1("F32", "3", "[0,12]"), 12, "shape of tensor 'w' is not an array of non-negative integers"},
    {E1("F32", "[-1]", "[0,0]"), 0, "shape of tensor 'w' is not an array of non-negative integers"},
    {E1("F32", "[2.0]", "[0,8]"), 8,
     "shape of tensor 'w' is not an array of non-negative integers"},
    {E1("F32", "[\"2\"]", "[0,8]"), 8,
     "shape of tensor 'w' is not an array of non-negative integers"},
    {E1("F32", "[2,null]", "[0,8]"), 8,
     "shape of tensor 'w' is not an array of non-negative integers"},
    {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
     "shape of tensor 'w' is not an array of non-negative integers"},
    {E1("F32", "[1,1,1,1,1,1,1]", "[0,4]"), 4, "tensor 'w' has 7 dims, more than CR_MAX_DIMS (6)"},
    {E1("F32", "[4294967296,4294967296,4294967296]", "[0,8]"), 8,
     "shape of tensor 'w' is too large"},
    {E1("F32", "[2]", "[8,0]"), 8, "data_offsets of tensor 'w' must be two integers [begin, end]"},
    {E1("F32", "[2]", "[0]"), 8, "data_offsets of tensor 'w' must be two integers [begin, end]"},
    {E1("F32", "[2]", "[0,8,8]"), 8,
     "data_offsets of tensor 'w' must be two integers [begin, end]"},
    {E1("F32", "[2]", "[\"0\",\"8\"]"), 8, "data_offsets of tensor 'w' must be two integers"},
    {E1("F32", "[2]", "[-8,0]"), 8, "data_offsets of tensor 'w' must be two integers"},
    {E1("F32", "[2]", "[0.0,8.0]"), 8, "data_offsets of tensor 'w' must be two integers"},
    {E1("F32", "[2]", "{}"), 8, "data_offsets of tensor 'w' must be two integers"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
     "data_offsets of tensor 'w' must be two integers"},
    {E1("F32", "[4]", "[0,16]"), 8,
     "data_offsets [0,16] of tensor 'w' end beyond the data section (8 bytes)"},
    {E1("F32", "[2]", "[9223372036854775800,9223372036854775807]"), 8,
     "end beyond the data section (8 bytes)"},
    {E1("F32", "[3]", "[0,8]"), 8, "tensor 'w' has 8 bytes of data, but shape [3] of F32 needs 12"},
    {E1("F64", "[2]", "[0,8]"), 8, "tensor 'w' has 8 bytes of data, but shape [2] of F64 needs 16"},
    {E1("F64", "[]", "[0,4]"), 8, "tensor 'w' has 4 bytes of data, but shape [] of F64 needs 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, "tensors 'a' [0,8] and 'b' [4,12] overlap"},
    {"{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
     "\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}",
     16, "tensors 'a' [0,16] and 'b' [4,8] overlap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, "tensors 'a' [0,8] and 'b' [0,8] overlap"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value for key 'k' is not a string"},
    {"{\"__metadata__\":{\"a\":\"x\",\"k\":null}}", 0,
     "__metadata__ value for key 'k' is not a string"},
    {"{\"__metadata__\":[\"x\"]}", 0, "__metadata__ is not an object of strings"},
    {"{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object of strings"},
    /* a good entry first does not hide a bad one later */
    {"{\"ok\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12]}}",
     12, "unsupported dtype I64 for tensor 'w'"},
};

static void expect_open_fails(fx *x, const char *p, cr_status st, const char *want, int i) {
  cr_ctx *ctx = x->ctx;
  cr_st_file *f = cr_st_open(ctx, p);
  if (f)
    fail_msg("case %d: opened, but should fail with '%s'", i, want);
  const char *msg = cr_ctx_error(ctx);
  if (getenv("ST_VERBOSE"))
    print_message("case %d: %s\n", i, msg);
  if (cr_ctx_status(ctx) != st || !starts_with(msg, p) || strncmp(msg + strlen(p), ": ", 2) ||
      !strstr(msg, want))
    fail_msg("case %d: got %s '%s', want %s '...%s...'", i, cr_status_name(cr_ctx_status(ctx)), msg,
             cr_status_name(st), want);
  cr_ctx_clear_error(ctx);
}

static void test_malformed_files(void **state) {
  fx *x = *state;
  static unsigned char buf[4096];
  const char *p = path(x, "bad.safetensors");
  int nc = (int)(sizeof bad_cases / sizeof bad_cases[0]);
  for (int i = 0; i < nc; i++) {
    size_t n = make_st(buf, bad_cases[i].header, bad_cases[i].ndata);
    write_bytes(p, buf, n);
    expect_open_fails(x, p, CR_ERR_FORMAT, bad_cases[i].want, i);
  }

  /* too short for the length field */
  write_bytes(p, "\x05\0\0\0\0", 5);
  expect_open_fails(x, p, CR_ERR_FORMAT, "file is 5 bytes, shorter than the 8-byte header length",
                    100);
  write_bytes(p, "", 0);
  expect_open_fails(x, p, CR_ERR_FORMAT, "file is 0 bytes, shorter than", 101);
  /* header length past the end of the file */
  memcpy(buf, "\xe8\x03\0\0\0\0\0\0{}        ", 18); /* 1000 */
  write_bytes(p, buf, 18);
  expect_open_fails(x, p, CR_ERR_FORMAT, "header length 1000 is larger than the 10 bytes after it",
                    102);
  /* absurd header lengths */
  memcpy(buf, "\0\0\0\0\0\0\0\x80{}      ", 16); /* 2^63 */
  write_bytes(p, buf, 16);
  expect_open_fails(x, p, CR_ERR_FORMAT, "header length 9223372036854775808 is absurd", 103);
  memcpy(buf, "\x00\xc2\xeb\x0b\0\0\0\0{}      ", 16); /* 200,000,000 */
  write_bytes(p, buf, 16);
  expect_open_fails(x, p, CR_ERR_FORMAT, "header length 200000000 is absurd", 104);
  /* NUL bytes inside the header are not JSON */
  memcpy(buf, "\x08\0\0\0\0\0\0\0{\"\0\":1}", 16);
  write_bytes(p, buf, 16);
  expect_open_fails(x, p, CR_ERR_FORMAT, "invalid JSON header", 105);

  /* not a file at all */
  expect_open_fails(x, path(x, "missing.safetensors"), CR_ERR_IO,
                    "cannot open: No such file or directory", 106);
  expect_open_fails(x, x->dir, CR_ERR_IO, "not a regular file", 107);
  /* the same checks from memory, with the name used in messages */
  cr_ctx *ctx = x->ctx;
  size_t n = make_st(buf, E1("BF16", "[2]", "[0,4]"), 4);
  assert_null(cr_st_open_mem(ctx, buf, n, "mem.safetensors"));
  assert_string_equal(cr_ctx_error(ctx), "mem.safetensors: unsupported dtype BF16 for tensor "
                                         "'w' (chainrule reads F32 and F64)");
  cr_ctx_clear_error(ctx);
  assert_null(cr_st_open_mem(ctx, buf, 3, NULL));
  assert_string_equal(cr_ctx_error(ctx),
                      "<memory>: file is 3 bytes, shorter than the 8-byte header length");
  cr_ctx_clear_error(ctx);
}

/* Files that are unusual but valid. */
static void test_unusual_valid_files(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  static unsigned char buf[1024];
  /* a scalar, a size-0 tensor inside another's bytes, a gap, unknown fields,
   * unpadded header, trailing bytes */
  size_t n = make_st(buf,
                     "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]},"
                     "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[12,12]},"
                     "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[20,24],"
                     "\"extra\":{\"x\":[1]}}}",
                     32);
  const double half = 0.5;
  const float three = 3.0f;
  unsigned char *data = buf + n - 32;
  memcpy(data + 8, &half, 8); /* the test host is little-endian like the format */
  memcpy(data + 20, &three, 4);
  const char *p = path(x, "odd.safetensors");
  write_bytes(p, buf, n);
  cr_st_file *f = cr_st_open(ctx, p);
  if (!f)
    fail_msg("%s", cr_ctx_error(ctx));
  assert_int_equal(cr_st_count(f), 3);

  const cr_st_info *si = cr_st_find(f, "s");
  assert_int_equal(si->ndim, 0);
  assert_int_equal(si->numel, 1);
  cr_tensor *s = cr_st_get(ctx, f, "s"); /* a scalar loads as shape [1] */
  assert_int_equal(cr_ndim(s), 1);
  assert_int_equal(cr_dim(s, 0), 1);
  assert_true(cr_item(s) == 0.5);
  cr_tensor *d = cr_zeros(ctx, CR_F32, CR_SHAPE(1));
  assert_int_equal(cr_st_read_into(ctx, f, "s", d), CR_OK);
  assert_true(cr_item(d) == 0.5);
  cr_tensor *v = cr_st_get(ctx, f, "v");
  assert_true(cr_item(v) == 3.0);

  const cr_st_info *zi = cr_st_find(f, "z");
  assert_int_equal(zi->numel, 0);
  assert_int_equal(zi->nbytes, 0);
  assert_null(cr_st_get(ctx, f, "z"));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_SHAPE);
  char want[600];
  snprintf(want, sizeof want,
           "%s: tensor 'z' has shape [0,3]: chainrule tensors have every dim >= 1", p);
  assert_string_equal(cr_ctx_error(ctx), want);
  cr_ctx_clear_error(ctx);
  cr_tensor_free(s);
  cr_tensor_free(v);
  cr_st_close(f);
}

/* ---- lookup and read_into errors */

static void test_get_and_read_into_errors(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(cr_st_writer_add(ctx, w, "a", cr_ones(ctx, CR_F32, CR_SHAPE(2, 3))), CR_OK);
  assert_int_equal(cr_st_writer_add(ctx, w, "b", cr_ones(ctx, CR_F64, CR_SHAPE(4))), CR_OK);
  const char *p = path(x, "m.safetensors");
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  cr_st_file *f = cr_st_open(ctx, p);
  assert_non_null(f);
  char want[700];

  assert_null(cr_st_get(ctx, f, "x"));
  assert_int_equal(cr_ctx_status(ctx), CR_ERR_ARG);
  snprintf(want, sizeof want, "%s: no tensor named 'x' (it holds 2: 'a', 'b')", p);
  assert_string_equal(cr_ctx_error(ctx), want);
  cr_ctx_clear_error(ctx);

  /* wrong shape: an exact message, and dst keeps its values */
  cr_tensor *dst = cr_full(ctx, CR_F32, CR_SHAPE(3, 2), 7);
  assert_int_equal(cr_st_read_into(ctx, f, "a", dst), CR_ERR_SHAPE);
  snprintf(want, sizeof want,
           "%s: tensor 'a' has shape [2,3] in the file, but the destination has shape [3,2]", p);
  assert_string_equal(cr_ctx_error(ctx), want);
  for (int i = 0; i < 6; i++)
    assert_true(cr_get_flat(dst, i) == 7.0);
  cr_ctx_clear_error(ctx);
  cr_tensor *dst4 = cr_full(ctx, CR_F64, CR_SHAPE(4, 1), 7);
  assert_int_equal(cr_st_read_into(ctx, f, "b", dst4), CR_ERR_SHAPE);
  assert_non_null(strstr(cr_ctx_error(ctx), "has shape [4] in the file, but the destination "
                                            "has shape [4,1]"));
  for (int i = 0; i < 4; i++)
    assert_true(cr_get_flat(dst4, i) == 7.0);
  cr_ctx_clear_error(ctx);
  /* no such tensor: dst unchanged */
  assert_int_equal(cr_st_read_into(ctx, f, "zz", dst), CR_ERR_ARG);
  assert_true(cr_get_flat(dst, 0) == 7.0);
  cr_ctx_clear_error(ctx);
  /* a stale destination is reported like an op would */
  cr_ctx_reset(ctx);
  assert_int_equal(cr_st_read_into(ctx, f, "a", dst), CR_ERR_STATE);
  assert_non_null(strstr(cr_ctx_error(ctx), "st_read_into: input 0"));
  cr_ctx_clear_error(ctx);
  /* NULLs */
  assert_int_equal(cr_st_read_into(ctx, f, "a", NULL), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  assert_null(cr_st_get(ctx, NULL, "a"));
  assert_string_equal(cr_ctx_error(ctx), "st_get: file is NULL");
  cr_ctx_clear_error(ctx);
  assert_null(cr_st_get(ctx, f, NULL));
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_count(NULL), 0);
  assert_null(cr_st_name(NULL, 0));
  assert_null(cr_st_find(NULL, "a"));
  assert_null(cr_st_meta(NULL, "a"));
  assert_null(cr_st_meta(f, NULL));
  assert_int_equal(cr_st_meta_count(NULL), 0);
  assert_null(cr_st_open(ctx, NULL));
  cr_ctx_clear_error(ctx);

  /* a pending error is kept, and nothing happens */
  cr_ctx_set_error(ctx, CR_ERR_ARG, "earlier");
  assert_null(cr_st_open(ctx, p));
  assert_null(cr_st_get(ctx, f, "a"));
  assert_string_equal(cr_ctx_error(ctx), "earlier");
  cr_ctx_clear_error(ctx);
  cr_st_close(f);
  cr_st_close(NULL);
}

static void test_writer_errors(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_st_writer *w = cr_st_writer_new();
  cr_tensor *t = cr_ones(ctx, CR_F32, CR_SHAPE(2));
  assert_int_equal(cr_st_writer_add(ctx, w, "w", t), CR_OK);

  assert_int_equal(cr_st_writer_add(ctx, w, "w", t), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx),
                      "st_writer_add: a tensor named 'w' was already added (names must be unique)");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_add(ctx, w, "__metadata__", t), CR_ERR_ARG);
  assert_non_null(strstr(cr_ctx_error(ctx), "reserved"));
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_add(ctx, w, "bad\xff", t), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "st_writer_add: tensor name is not valid UTF-8");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_add(ctx, w, "\xed\xa0\x80", t), CR_ERR_ARG); /* surrogate */
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_add(ctx, w, "\xc0\xaf", t), CR_ERR_ARG); /* overlong */
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_add(ctx, w, "n", NULL), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "st_writer_add: tensor 'n' is NULL");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_add(ctx, w, NULL, t), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_add(ctx, NULL, "n", t), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "k", "\xff"), CR_ERR_ARG);
  assert_string_equal(cr_ctx_error(ctx), "st_writer_set_meta: value is not valid UTF-8");
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, NULL, "v"), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_writer_save(ctx, w, NULL), CR_ERR_ARG);
  cr_ctx_clear_error(ctx);
  /* a stale tensor */
  cr_ctx_reset(ctx);
  assert_int_equal(cr_st_writer_add(ctx, w, "stale", t), CR_ERR_STATE);
  cr_ctx_clear_error(ctx);
  /* non-ASCII names are fine */
  assert_int_equal(cr_st_writer_add(ctx, w, "\xce\xb8", cr_ones(ctx, CR_F64, CR_SHAPE(1))), CR_OK);

  /* the failed calls left the writer unchanged */
  const char *p = path(x, "w.safetensors");
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  cr_st_writer_free(NULL);
  cr_st_file *f = cr_st_open(ctx, p);
  assert_non_null(f);
  assert_int_equal(cr_st_count(f), 2);
  assert_string_equal(cr_st_name(f, 0), "w");
  assert_string_equal(cr_st_name(f, 1), "\xce\xb8");
  assert_int_equal(cr_st_meta_count(f), 0);
  cr_st_close(f);
}

/* ---- atomic saving */

static cr_st_writer *small_writer(cr_ctx *ctx, int64_t n) {
  cr_st_writer *w = cr_st_writer_new();
  assert_non_null(w);
  assert_int_equal(cr_st_writer_add(ctx, w, "w", cr_ones(ctx, CR_F64, 1, &n)), CR_OK);
  return w;
}

static void test_atomic_save_failures(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_st_writer *w = small_writer(ctx, 8);
  const char *old = path(x, "m.safetensors");
  write_bytes(old, "OLD CONTENT", 11);

  /* the directory does not exist */
  const char *p = path(x, "nodir/m.safetensors");
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_ERR_IO);
  assert_true(starts_with(cr_ctx_error(ctx), p));
  assert_non_null(strstr(cr_ctx_error(ctx), "No such file or directory"));
  cr_ctx_clear_error(ctx);
  /* a "directory" that is a file */
  p = path(x, "m.safetensors/x.safetensors");
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_ERR_IO);
  assert_non_null(strstr(cr_ctx_error(ctx), "Not a directory"));
  cr_ctx_clear_error(ctx);
  /* the target is a directory: the rename fails after the temporary file
   * was written, and that file is removed */
  p = path(x, "adir");
  assert_int_equal(mkdir(p, 0700), 0);
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_ERR_IO);
  assert_non_null(strstr(cr_ctx_error(ctx), "rename"));
  assert_non_null(strstr(cr_ctx_error(ctx), "Is a directory"));
  cr_ctx_clear_error(ctx);
  assert_int_equal(count_temps(x->dir), 0);
  assert_file_is(old, "OLD CONTENT");

  /* success replaces the old file, leaving no temporary behind */
  assert_int_equal(cr_st_writer_save(ctx, w, old), CR_OK);
  assert_int_equal(count_temps(x->dir), 0);
  cr_st_file *f = cr_st_open(ctx, old);
  assert_non_null(f);
  assert_int_equal(cr_st_find(f, "w")->numel, 8);
  cr_st_close(f);
  /* a relative path (directory ".") */
  char cwd[1024];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(x->dir), 0);
  assert_int_equal(cr_st_writer_save(ctx, w, "rel.safetensors"), CR_OK);
  assert_int_equal(chdir(cwd), 0);
  assert_int_equal(count_temps(x->dir), 0);
  cr_st_writer_free(w);
}

/* Run fn in a child process (to drop privileges or lower limits there);
 * returns its exit code. */
static int in_child(int (*fn)(fx *), fx *x) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(fn(x));
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

/* 0 if saving into the read-only directory fails cleanly, 77 to skip. */
static int save_into_readonly(fx *x) {
  if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
    return 77;
  const char *p = path(x, "ro/m.safetensors");
  if (access(path(x, "ro"), W_OK) == 0)
    return 77; /* still writable (e.g. CAP_DAC_OVERRIDE) */
  cr_st_writer *w = small_writer(x->ctx, 8);
  cr_status st = cr_st_writer_save(x->ctx, w, p);
  cr_st_writer_free(w);
  if (st != CR_ERR_IO || !starts_with(cr_ctx_error(x->ctx), p) ||
      !strstr(cr_ctx_error(x->ctx), "Permission denied")) {
    fprintf(stderr, "save into read-only dir: %s\n", cr_ctx_error(x->ctx));
    return 1;
  }
  return 0;
}

static void test_atomic_save_readonly_dir(void **state) {
  fx *x = *state;
  assert_int_equal(chmod(x->dir, 0755), 0);
  assert_int_equal(mkdir(path(x, "ro"), 0755), 0);
  write_bytes(path(x, "ro/m.safetensors"), "OLD CONTENT", 11);
  assert_int_equal(chmod(path(x, "ro"), 0555), 0);
  int rc = in_child(save_into_readonly, x);
  if (rc == 77)
    skip();
  assert_int_equal(rc, 0);
  assert_file_is(path(x, "ro/m.safetensors"), "OLD CONTENT");
  assert_int_equal(count_temps(path(x, "ro")), 0);
}

/* 0 if a save that hits the file size limit mid-write fails cleanly. */
static int save_past_size_limit(fx *x) {
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_FSIZE, &rl) != 0)
    return 77;
  rl.rlim_cur = 1000;
  if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
    return 77;
  cr_st_writer *w = small_writer(x->ctx, 4096); /* 32 KB of data */
  cr_status st = cr_st_writer_save(x->ctx, w, path(x, "m.safetensors"));
  cr_st_writer_free(w);
  if (st != CR_ERR_IO || !strstr(cr_ctx_error(x->ctx), "write of the temporary file") ||
      !strstr(cr_ctx_error(x->ctx),
              "File too large (the file size limit, ulimit -f, is reached)")) {
    fprintf(stderr, "save past the size limit: %s\n", cr_ctx_error(x->ctx));
    return 1;
  }
  return 0;
}

static void test_atomic_save_write_error(void **state) {
  fx *x = *state;
  write_bytes(path(x, "m.safetensors"), "OLD CONTENT", 11);
  int rc = in_child(save_past_size_limit, x);
  if (rc == 77)
    skip();
  assert_int_equal(rc, 0);
  assert_file_is(path(x, "m.safetensors"), "OLD CONTENT");
  assert_int_equal(count_temps(x->dir), 0);
}

/* ---- robustness: mutated files open or fail with a message, never crash */

/* Open n bytes (through a file when via_file) and, if that works, use
 * everything in it.  Returns true if it opened. */
static bool try_open(fx *x, const unsigned char *b, size_t n, bool via_file) {
  cr_ctx *ctx = x->ctx;
  const char *p = path(x, "fuzz.safetensors");
  cr_st_file *f;
  if (via_file) {
    write_bytes(p, b, n);
    f = cr_st_open(ctx, p);
  } else {
    f = cr_st_open_mem(ctx, b, n, p);
  }
  if (!f) {
    const char *msg = cr_ctx_error(ctx);
    if (cr_ctx_status(ctx) == CR_OK || !starts_with(msg, p) || strlen(msg) <= strlen(p) + 2)
      fail_msg("failed without a proper message: '%s'", msg);
    cr_ctx_clear_error(ctx);
    return false;
  }
  for (int i = 0; i < cr_st_count(f); i++) {
    const char *name = cr_st_name(f, i);
    const cr_st_info *info = cr_st_find(f, name);
    assert_non_null(info);
    cr_tensor *t = cr_st_get(ctx, f, name);
    if (t) {
      volatile double sum = 0;
      for (int64_t k = 0; k < cr_numel(t); k++)
        sum += cr_get_flat(t, k);
      (void)sum;
      cr_tensor *d =
          cr_tensor_new(ctx, info->dtype == CR_F32 ? CR_F64 : CR_F32, cr_ndim(t), cr_shape(t));
      assert_int_equal(cr_st_read_into(ctx, f, name, d), CR_OK);
      cr_tensor_free(d);
      cr_tensor_free(t);
    } else {
      assert_int_equal(info->numel, 0); /* the only reason a valid entry cannot load */
      cr_ctx_clear_error(ctx);
    }
  }
  for (int i = 0; i < cr_st_meta_count(f); i++)
    assert_non_null(cr_st_meta(f, cr_st_meta_key(f, i)));
  cr_st_close(f);
  assert_int_equal(cr_ctx_status(ctx), CR_OK);
  return true;
}

static unsigned char *fuzz_seed_file(fx *x, size_t *n) {
  cr_ctx *ctx = x->ctx;
  cr_rng *rng = cr_rng_new(3);
  cr_st_writer *w = cr_st_writer_new();
  assert_int_equal(
      cr_st_writer_add(ctx, w, "w", cr_rand_normal(ctx, rng, CR_F32, CR_SHAPE(2, 3), 0, 1)), CR_OK);
  assert_int_equal(cr_st_writer_add(ctx, w, "b", cr_ones(ctx, CR_F64, CR_SHAPE(3))), CR_OK);
  assert_int_equal(cr_st_writer_add(ctx, w, "h0", cr_zeros(ctx, CR_F32, CR_SHAPE(1, 1, 2))), CR_OK);
  assert_int_equal(cr_st_writer_set_meta(ctx, w, "k", "v"), CR_OK);
  const char *p = path(x, "seed.safetensors");
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  cr_st_writer_free(w);
  cr_rng_free(rng);
  return read_bytes(p, n);
}

static void test_fuzz_truncate(void **state) {
  fx *x = *state;
  size_t n;
  unsigned char *good = fuzz_seed_file(x, &n);
  assert_true(try_open(x, good, n, true));
  /* the last tensor ends at the end of the file, so every cut is an error */
  for (size_t len = 0; len < n; len++) {
    assert_false(try_open(x, good, len, true));
    assert_false(try_open(x, good, len, false));
  }
  free(good);
}

static void test_fuzz_mutate(void **state) {
  fx *x = *state;
  size_t n;
  unsigned char *good = fuzz_seed_file(x, &n);
  unsigned char *b = malloc(n);
  assert_non_null(b);
  size_t hend = 8 + (size_t)good[0] + ((size_t)good[1] << 8); /* end of the header */
  static const unsigned char values[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '{', '}', '[',  ']',
                                         '"',  ',',  ':',  '-',  '0',  '9', ' ', '\\', 'e'};
  int opened = 0, failed = 0;
  /* every header byte (and the length field) set to each interesting value
   * and flipped bit by bit */
  for (size_t pos = 0; pos < hend; pos++) {
    for (size_t v = 0; v < sizeof values + 8; v++) {
      memcpy(b, good, n);
      if (v < sizeof values)
        b[pos] = values[v];
      else
        b[pos] ^= (unsigned char)(1u << (v - sizeof values));
      if (try_open(x, b, n, false))
        opened++;
      else
        failed++;
    }
  }
  /* a few through the file path too */
  for (size_t pos = 0; pos < hend; pos += 7) {
    memcpy(b, good, n);
    b[pos] ^= 0x55;
    try_open(x, b, n, true);
  }
  /* random multi-byte damage, reproducible */
  cr_rng *rng = cr_rng_new(2024);
  for (int it = 0; it < 4000; it++) {
    memcpy(b, good, n);
    int k = 1 + (int)cr_rng_below(rng, 4);
    for (int j = 0; j < k; j++)
      b[cr_rng_below(rng, hend)] = (unsigned char)cr_rng_below(rng, 256);
    size_t len = cr_rng_below(rng, 4) ? n : (size_t)cr_rng_below(rng, n + 1);
    if (try_open(x, b, len, false))
      opened++;
    else
      failed++;
  }
  cr_rng_free(rng);
  print_message("mutations: %d opened, %d rejected\n", opened, failed);
  assert_true(opened > 0 && failed > 0);
  free(b);
  free(good);
}

/* The temporary file is one per target: a killed save's debris is replaced
 * by the next save (never piles up), and a writability check before a long
 * computation creates and removes it. */
static void test_tmp_per_target(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  cr_st_writer *w = small_writer(ctx, 8);
  const char *p = path(x, "m.safetensors");
  char debris[1024];
  snprintf(debris, sizeof debris, "%s", path(x, ".m.safetensors.tmp"));
  write_bytes(debris, "DEBRIS OF A KILLED SAVE, LONGER THAN THE NEW FILE WILL BE ........", 67);
  for (int i = 0; i < 5; i++)
    assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  assert_int_equal(count_temps(x->dir), 0);
  cr_st_file *f = cr_st_open(ctx, p);
  assert_non_null(f);
  assert_int_equal(cr_st_find(f, "w")->numel, 8);
  cr_st_close(f);

  /* the check: fine here (debris removed), refused for a missing directory
   * or a directory target, and it leaves nothing behind */
  write_bytes(debris, "DEBRIS", 6);
  assert_int_equal(cr_st_check_writable(ctx, p), CR_OK);
  assert_int_equal(count_temps(x->dir), 0);
  const char *q = path(x, "nodir/m.safetensors");
  assert_int_equal(cr_st_check_writable(ctx, q), CR_ERR_IO);
  char want[1200];
  snprintf(want, sizeof want, "%s: cannot create the temporary file %s: No such file or directory",
           q, path(x, "nodir/.m.safetensors.tmp"));
  assert_string_equal(cr_ctx_error(ctx), want);
  cr_ctx_clear_error(ctx);
  assert_int_equal(cr_st_check_writable(ctx, x->dir), CR_ERR_IO);
  assert_non_null(strstr(cr_ctx_error(ctx), "is a directory"));
  cr_ctx_clear_error(ctx);
  assert_int_equal(count_temps(x->dir), 0);
  cr_st_writer_free(w);
}

/* A second process saving to the same target while a save runs fails with
 * a message (it does not write into the same temporary file). */
static void test_concurrent_save_refused(void **state) {
  fx *x = *state;
  cr_ctx *ctx = x->ctx;
  const char *p = path(x, "m.safetensors");
  write_bytes(p, "OLD CONTENT", 11);
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path(x, ".m.safetensors.tmp"));
  int locked[2], done[2];
  assert_int_equal(pipe(locked), 0);
  assert_int_equal(pipe(done), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) { /* the other process: holds the lock until told to stop */
    int fd = open(tmp, O_WRONLY | O_CREAT, 0666);
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    char c = fd >= 0 && fcntl(fd, F_SETLK, &lk) == 0 ? 'y' : 'n';
    if (write(locked[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
      _exit(1);
    _exit(0);
  }
  char c = 0;
  assert_int_equal(read(locked[0], &c, 1), 1);
  assert_int_equal(c, 'y');
  cr_st_writer *w = small_writer(ctx, 8);
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_ERR_IO);
  char want[1200];
  snprintf(want, sizeof want, "%s: another process is saving it (%s is locked)", p, tmp);
  assert_string_equal(cr_ctx_error(ctx), want);
  cr_ctx_clear_error(ctx);
  assert_int_equal(write(done[1], "x", 1), 1);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_file_is(p, "OLD CONTENT");
  /* once the other process is gone its debris is simply reused */
  assert_int_equal(cr_st_writer_save(ctx, w, p), CR_OK);
  assert_int_equal(count_temps(x->dir), 0);
  cr_st_writer_free(w);
  close(locked[0]);
  close(locked[1]);
  close(done[0]);
  close(done[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_roundtrip_f32, setup, teardown),
      cmocka_unit_test_setup_teardown(test_roundtrip_f64_and_read_into, setup, teardown),
      cmocka_unit_test_setup_teardown(test_exact_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unusual_valid_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_and_read_into_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writer_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_atomic_save_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_atomic_save_readonly_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(test_atomic_save_write_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tmp_per_target, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_save_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fuzz_truncate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fuzz_mutate, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
