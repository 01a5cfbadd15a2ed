/*
 * loraport's one native helper: map byte ranges of a file into memory as ArrayBuffers, the way Python's
 * safetensors.torch.load_file does, so that reading a big checkpoint costs page faults on use instead of a copy.
 *
 *   mapRanges(path: string, ranges: number[], countAsMemory = false): ArrayBuffer[]
 *     ranges = [offset0, length0, offset1, length1, ...]; countAsMemory: see map_one
 *   pageSize(): number
 *
 * Each range is its own mapping, MAP_PRIVATE with PROT_READ|PROT_WRITE: writes copy the page (copy-on-write) and
 * never reach the file; it is unmapped when its ArrayBuffer is garbage-collected. mmap needs a page-aligned file
 * offset, so a range is mapped from the page below its offset: the ArrayBuffer starts at that page and the caller
 * views `offset % pageSize()` bytes into it. Every range is checked against the file's size here, as well as by
 * the caller: a range past the end of the file would SIGBUS on first touch. All ranges are checked before any is
 * mapped, so an error leaves nothing behind.
 *
 * Built by scripts/setup.sh with the system C compiler against node-api-headers (Node-API is ABI-stable, so one
 * build serves every Node >= 18). Without it loraport reads with fs.read and nothing else changes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PATH_BYTES 4096
#define MAX_MESSAGE_BYTES (MAX_PATH_BYTES + 256)

typedef struct {
  void* base;
  size_t length;
  int64_t advance; /* external-memory count cancelled in map_one, given back in unmap */
} Mapping;

static void unmap(napi_env env, void* data, void* hint) {
  (void)data;
  Mapping* m = (Mapping*)hint;
  int64_t ignored;
  napi_adjust_external_memory(env, m->advance, &ignored);  // undo the advance made in map_one
  munmap(m->base, m->length);
  free(m);
}

static void throw_errno(napi_env env, const char* what, const char* path, int err) {
  char msg[MAX_MESSAGE_BYTES];
  snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(err));
  napi_throw_error(env, "E_MMAP", msg);
}

/* A JS number that is an integer in [0, 2^53). */
static int get_u53(napi_env env, napi_value v, int64_t* out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

/* Map [offset, offset + length) of fd (already checked against the file size) into *out. Returns 0 and throws on failure. */
static int map_one(napi_env env, int fd, const char* path, int64_t offset, int64_t length, bool count_as_memory, napi_value* out) {
  if (length == 0) {
    void* data;
    return napi_create_arraybuffer(env, 0, &data, out) == napi_ok;
  }
  long page = sysconf(_SC_PAGESIZE);
  int64_t start = offset - offset % page;
  size_t span = (size_t)(offset + length - start);
  void* base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)start);
  if (base == MAP_FAILED) {
    throw_errno(env, "cannot map", path, errno);
    return 0;
  }
  Mapping* m = (Mapping*)malloc(sizeof *m);
  if (m == NULL) {
    munmap(base, span);
    throw_errno(env, "cannot map", path, ENOMEM);
    return 0;
  }
  m->base = base;
  m->length = span;
  // V8 counts an external buffer's whole length as allocated memory and schedules a full GC every few such
  // buffers (measured: ~200 us per 16 MiB mapping, nearly all of it GC). A file mapping allocates nothing until
  // touched, and clean pages are page cache the kernel can drop, so cancel that count in advance (restored when
  // the mapping is freed). Pages a caller writes become private memory V8 does not see, as with any native memory.
  // A file in /dev/shm is memory, not cache: there the count stays (count_as_memory) so that V8 collects it.
  int64_t ignored;
  int64_t advance = count_as_memory ? 0 : (int64_t)span;
  m->advance = advance;
  napi_adjust_external_memory(env, -advance, &ignored);
  if (napi_create_external_arraybuffer(env, base, span, unmap, m, out) != napi_ok) {
    napi_adjust_external_memory(env, advance, &ignored);
    munmap(base, span);
    free(m);
    napi_throw_error(env, "E_MMAP", "this Node.js does not allow external ArrayBuffers");
    return 0;
  }
  return 1;
}

static napi_value map_ranges(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool count_as_memory = false;
  if (argc == 3 && napi_get_value_bool(env, argv[2], &count_as_memory) != napi_ok) argc = 0;
  char path[MAX_PATH_BYTES];
  size_t plen = 0;
  uint32_t n = 0;
  bool is_array = false;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen >= sizeof path - 1 ||
      napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[1], &n) != napi_ok || n % 2 != 0) {
    napi_throw_type_error(env, "E_MMAP", "mapRanges(path: string (< 4 KiB), ranges: [offset, length, ...] integers >= 0, countAsMemory?: boolean)");
    return NULL;
  }
  int64_t* r = (int64_t*)malloc((n ? n : 1) * sizeof *r);
  if (r == NULL) {
    throw_errno(env, "cannot map", path, ENOMEM);
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || !get_u53(env, v, &r[i])) {
      free(r);
      napi_throw_type_error(env, "E_MMAP", "mapRanges: every offset and length must be an integer in [0, 2^53)");
      return NULL;
    }
  }
  napi_value result = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, "cannot open", path, errno);
    free(r);
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    throw_errno(env, "cannot stat", path, errno);
    goto done;
  }
  for (uint32_t i = 0; i < n; i += 2) {
    if (r[i] + r[i + 1] > (int64_t)st.st_size) {
      char msg[MAX_MESSAGE_BYTES];
      snprintf(msg, sizeof msg, "%s: range [%lld, %lld) is beyond the file's %lld bytes", path, (long long)r[i],
               (long long)(r[i] + r[i + 1]), (long long)st.st_size);
      napi_throw_range_error(env, "E_MMAP", msg);
      goto done;
    }
  }
  napi_value list;
  if (napi_create_array_with_length(env, n / 2, &list) != napi_ok) goto done;
  for (uint32_t i = 0; i < n; i += 2) {
    napi_value buf;
    if (!map_one(env, fd, path, r[i], r[i + 1], count_as_memory, &buf) || napi_set_element(env, list, i / 2, buf) != napi_ok) goto done;
  }
  result = list;
done:
  close(fd);  // the mappings keep the file alive
  free(r);
  return result;
}

static napi_value page_size(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_int64(env, sysconf(_SC_PAGESIZE), &v);
  return v;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"mapRanges", NULL, map_ranges, NULL, NULL, NULL, napi_default, NULL},
      {"pageSize", NULL, page_size, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}
