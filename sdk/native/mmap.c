/*
 * loraport's one native helper: map a byte range of a file into memory as an ArrayBuffer, the way Python's
 * safetensors.torch.load_file does, so that reading a big checkpoint costs page faults on use instead of a copy.
 *
 *   mapRange(path: string, offset: number, length: number): ArrayBuffer
 *
 * The mapping is MAP_PRIVATE with PROT_READ|PROT_WRITE: writes to the tensor copy the page (copy-on-write) and
 * never reach the file. It is unmapped when the ArrayBuffer is garbage-collected. mmap needs a page-aligned file
 * offset, so the range is mapped from the page below `offset`; the returned ArrayBuffer starts at that page and the
 * caller views `offset % pageSize` bytes into it. Bounds are checked here against the file's size as well as by
 * the caller: a range past the end of the file would SIGBUS on first touch.
 *
 * Built by scripts/setup.sh with the system C compiler against node-api-headers (Node-API is ABI-stable, so one
 * build serves every Node >= 18). Without it loraport reads with fs.read and nothing else changes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  void* base;
  size_t length;
} Mapping;

static void unmap(napi_env env, void* data, void* hint) {
  (void)env;
  (void)data;
  Mapping* m = (Mapping*)hint;
  munmap(m->base, m->length);
  free(m);
}

static napi_value fail(napi_env env, const char* what, const char* path, int err) {
  char msg[4400];
  snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(err));
  napi_throw_error(env, "E_MMAP", msg);
  return NULL;
}

static int get_u53(napi_env env, napi_value v, int64_t* out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 9007199254740991.0 || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

static napi_value map_range(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  size_t plen = 0;
  int64_t offset, length;
  if (argc != 3 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen >= sizeof path - 1 ||
      !get_u53(env, argv[1], &offset) || !get_u53(env, argv[2], &length)) {
    napi_throw_type_error(env, "E_MMAP", "mapRange(path: string (< 4 KiB), offset: integer >= 0, length: integer >= 0)");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(env, "cannot open", path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fail(env, "cannot stat", path, e);
  }
  if (offset + length > (int64_t)st.st_size) {
    close(fd);
    char msg[4400];
    snprintf(msg, sizeof msg, "%s: range [%lld, %lld) is beyond the file's %lld bytes", path, (long long)offset,
             (long long)(offset + length), (long long)st.st_size);
    napi_throw_range_error(env, "E_MMAP", msg);
    return NULL;
  }
  napi_value result;
  if (length == 0) {
    close(fd);
    void* data;
    napi_create_arraybuffer(env, 0, &data, &result);
    return result;
  }
  long page = sysconf(_SC_PAGESIZE);
  int64_t start = offset - offset % page;
  size_t span = (size_t)(offset + length - start);
  void* base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)start);
  int e = errno;
  close(fd);  // the mapping keeps the file alive
  if (base == MAP_FAILED) return fail(env, "cannot map", path, e);
  Mapping* m = (Mapping*)malloc(sizeof *m);
  if (m == NULL) {
    munmap(base, span);
    return fail(env, "cannot map", path, ENOMEM);
  }
  m->base = base;
  m->length = span;
  if (napi_create_external_arraybuffer(env, base, span, unmap, m, &result) != napi_ok) {
    munmap(base, span);
    free(m);
    napi_throw_error(env, "E_MMAP", "this Node.js does not allow external ArrayBuffers");
    return NULL;
  }
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
      {"mapRange", NULL, map_range, NULL, NULL, NULL, napi_default, NULL},
      {"pageSize", NULL, page_size, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}
