/* chainrule/io.h — checkpoints in the safetensors format.
 *
 * A .safetensors file is: an 8-byte little-endian header length N, N bytes
 * of JSON (each key a tensor name mapping to {"dtype", "shape",
 * "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
 * string -> string), then the raw little-endian tensor data; offsets are
 * relative to the start of that data.  chainrule reads and writes the
 * dtypes F32 and F64.
 *
 * Worked example: save parameters, then load them back into a new model.
 *
 *   cr_st_writer *w = cr_st_writer_new();
 *   if (cr_st_writer_add(ctx, w, "W", W) != CR_OK ||
 *       cr_st_writer_set_meta(ctx, w, "step", "1000") != CR_OK ||
 *       cr_st_writer_save(ctx, w, "model.safetensors") != CR_OK)
 *     fprintf(stderr, "%s\n", cr_ctx_error(ctx));
 *   cr_st_writer_free(w);
 *
 *   cr_st_file *f = cr_st_open(ctx, "model.safetensors");
 *   if (!f || cr_st_read_into(ctx, f, "W", W2) != CR_OK)
 *     fprintf(stderr, "%s\n", cr_ctx_error(ctx));
 *   cr_st_close(f);
 *
 * Errors follow the rule of chainrule/base.h: the function stores a code
 * and a message in the context and returns NULL or the code.  Messages about
 * a file start with its path, e.g.
 *     "model.safetensors: no tensor named 'x'"
 *     "model.safetensors: unsupported dtype BF16 for tensor 'w'"
 * Codes: CR_ERR_IO (the file could not be read or written), CR_ERR_FORMAT
 * (the file is malformed), CR_ERR_ARG (no such tensor: every accessor
 * reports it as "m.safetensors: no tensor named 'x' (it holds 2: 'a', 'b')";
 * bad name), CR_ERR_SHAPE
 * (shape mismatch), CR_ERR_NOMEM.  As with ops, a function called while an
 * error is pending in ctx does nothing and returns NULL or that error.
 */
#ifndef CHAINRULE_IO_H
#define CHAINRULE_IO_H

#include "chainrule/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- reading */

typedef struct cr_st_file cr_st_file;

/* What the file says about one tensor. */
typedef struct cr_st_info {
  const char *name;           /* borrowed from the file */
  cr_dtype dtype;             /* CR_F32 or CR_F64 */
  int ndim;                   /* as stored: 0 for a scalar (shape []) */
  int64_t shape[CR_MAX_DIMS]; /* ndim sizes; a size may be 0 */
  int64_t numel;              /* product of the sizes (1 for a scalar) */
  size_t nbytes;              /* numel * element size */
} cr_st_info;

/* Read the whole file at path into memory and validate it: the header
 * length, the JSON, every entry (dtype, shape, data_offsets within the data
 * section and matching the shape, no two tensors overlapping) and the
 * metadata.  Returns a file owned by the caller (free with cr_st_close), or
 * NULL and an error naming the path and the problem, e.g.
 * "m.safetensors: data_offsets [0,16] of tensor 'w' end beyond the data
 * section (8 bytes)".  A tensor of another dtype makes the whole file
 * fail ("unsupported dtype BF16 for tensor 'w'").  Unused bytes between or
 * after tensors and unknown fields in an entry are accepted.  A malformed
 * file never crashes the reader. */
cr_st_file *cr_st_open(cr_ctx *ctx, const char *path);
/* The same from n bytes in memory, which are copied (the caller keeps its
 * buffer).  name is used in messages in place of a path (NULL: "<memory>"). */
cr_st_file *cr_st_open_mem(cr_ctx *ctx, const void *bytes, size_t n, const char *name);
/* Free the file and everything borrowed from it.  NULL accepted. */
void cr_st_close(cr_st_file *f);

/* The path the file was opened from (the name given to cr_st_open_mem).
 * Borrowed from f; "" for NULL. */
const char *cr_st_path(const cr_st_file *f);
/* Number of tensors in the file (0 for NULL). */
int cr_st_count(const cr_st_file *f);
/* Name of tensor i, 0 <= i < cr_st_count, in the order of the header (the
 * order they were added for files written by cr_st_writer); NULL if i is
 * out of range.  Borrowed from f. */
const char *cr_st_name(const cr_st_file *f, int i);
/* dtype and shape of the tensor called name, without copying its data;
 * NULL if there is none (no error is stored).  Borrowed from f. */
const cr_st_info *cr_st_find(const cr_st_file *f, const char *name);

/* A new persistent tensor (see chainrule/tensor.h: owned by the caller,
 * free with cr_tensor_free) holding a copy of the tensor called name, with
 * the dtype of the file.  A scalar (shape []) is loaded as shape [1].
 * Returns NULL and an error if there is no such tensor
 * ("m.safetensors: no tensor named 'x'"), if it has a size-0 dimension
 * (chainrule tensors have every dim >= 1) or when out of memory. */
cr_tensor *cr_st_get(cr_ctx *ctx, const cr_st_file *f, const char *name);
/* Copy the tensor called name into dst, which must have exactly the same
 * shape (a scalar matches [1]); dst may be a strided view and may be an
 * arena or persistent tensor.  If the dtypes differ the values are
 * converted (F32 <-> F64).  No graph is recorded.  On error (no such
 * tensor; shapes differ: the message names the file, the tensor and both
 * shapes) dst is left unchanged. */
CR_NODISCARD cr_status cr_st_read_into(cr_ctx *ctx, const cr_st_file *f, const char *name,
                                       cr_tensor *dst);

/* Check, without reading any data, that f holds a tensor called name with
 * exactly like's shape (a scalar matches [1]): CR_OK, or an error naming
 * the file, the tensor and both shapes ("m.safetensors: tensor 'w' is
 * [40,6], this model needs [80,6]") or the missing name.  Loaders call it
 * for every tensor before reading any, so a mismatch changes nothing. */
CR_NODISCARD cr_status cr_st_expect(cr_ctx *ctx, const cr_st_file *f, const char *name,
                                    const cr_tensor *like);

/* Value of the metadata entry key, or NULL if absent.  Borrowed from f. */
const char *cr_st_meta(const cr_st_file *f, const char *key);
/* Number of metadata entries and the key of entry i (header order; NULL if
 * out of range).  Borrowed from f. */
int cr_st_meta_count(const cr_st_file *f);
const char *cr_st_meta_key(const cr_st_file *f, int i);

/* ---- writing */

typedef struct cr_st_writer cr_st_writer;

/* An empty writer, owned by the caller (free with cr_st_writer_free).
 * Returns NULL only when out of memory. */
cr_st_writer *cr_st_writer_new(void);
/* Free the writer and the values it copied.  NULL accepted. */
void cr_st_writer_free(cr_st_writer *w);

/* Add t under name.  The values are COPIED now (gathered into row-major
 * order, so contiguous tensors and strided views both work): t may change,
 * be freed or have its arena reset afterwards.  The file stores t's dtype
 * and shape; tensors are stored in the order added.  Errors (CR_ERR_ARG):
 * a NULL argument, a name already added, the reserved name "__metadata__",
 * a name that is not valid UTF-8; an invalid or stale t is reported as by
 * the ops.  On error the writer is unchanged. */
CR_NODISCARD cr_status cr_st_writer_add(cr_ctx *ctx, cr_st_writer *w, const char *name,
                                        const cr_tensor *t);
/* Set the metadata entry key to value (both copied; a second call with the
 * same key replaces the value).  Both must be valid UTF-8 (CR_ERR_ARG). */
CR_NODISCARD cr_status cr_st_writer_set_meta(cr_ctx *ctx, cr_st_writer *w, const char *key,
                                             const char *value);
/* Write everything added so far to path, atomically: the file is written
 * to a temporary file in the same directory, flushed to disk (fsync), then
 * renamed over path, and the directory is synced.  The temporary file is
 * "<dir>/.<name>.tmp", one name per target: debris left by a save that was
 * killed is replaced by the next save, never piles up; while a save runs
 * the file is write-locked, so a second process saving to the same path
 * fails ("another process is saving it") instead of mixing their bytes.
 * On failure (CR_ERR_IO, message naming path and the system's reason, with
 * a hint for EFBIG, ENOSPC and EDQUOT) a file that existed at path is left
 * untouched and the temporary file is removed.  (Only if the final
 * directory sync fails is the new file already in place; the error says
 * so, as the rename may then not survive a crash.)  A program that wants a
 * file size limit (ulimit -f) reported as an error rather than killed by
 * SIGXFSZ ignores that signal: signal(SIGXFSZ, SIG_IGN).  The writer is
 * not changed and may be saved again.  The header is compact JSON with
 * "__metadata__" first (if any metadata was set), padded with spaces to a
 * multiple of 8 bytes; data follows without gaps in the order added. */
CR_NODISCARD cr_status cr_st_writer_save(cr_ctx *ctx, const cr_st_writer *w, const char *path);
/* Check, before a long computation, that cr_st_writer_save(path) could
 * create its temporary file: creates it (replacing debris) and removes it.
 * CR_OK, or the error cr_st_writer_save would give (a missing or read-only
 * directory, path a directory, another process saving to path). */
CR_NODISCARD cr_status cr_st_check_writable(cr_ctx *ctx, const char *path);

#ifdef __cplusplus
}
#endif
#endif
