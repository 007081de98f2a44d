/*
 * cuda_counter: a CUDA device made of host memory that counts what is asked of it, for measuring
 * how a program drives a GPU on a machine without one.
 *
 * Preloaded (LD_PRELOAD) into a program built with candle's `cuda` feature, it answers the CUDA
 * driver, cuBLAS and cuRAND calls candle makes: memory is host memory (malloc, never touched unless
 * the program copies to or from it), copies between the host and the device are memcpy, and kernels,
 * matrix products, device-to-device copies, memsets and random draws are counted, not run, so what the
 * program reads back is meaningless. The host time of a program on it is what driving a GPU costs
 * the host (kernel launches, allocations, the program's own work) with a device that takes no time.
 * A kernel must be an entry of the PTX module it is looked up in, as on a GPU, so a kernel candle does
 * not have for a dtype fails here too. What it counts is exact: kernel launches (per kernel name), cuBLAS products, host-to-device and
 * device-to-host copies with their bytes, device-to-device copies, memsets, explicit
 * synchronisations, allocations and the bytes in use. A device-to-host copy into pageable memory
 * waits for the stream, so it is a synchronisation too (counted as a copy, not under `syncs`).
 *
 * Read the counters from the program with dlsym(RTLD_DEFAULT, "cuda_counter_read") and
 * "cuda_counter_kernels" (see the declarations below). Build: tools/cuda-counter/build.sh.
 * The program still needs libcuda.so.1, libcublas.so.13, libcurand.so.10 and libcudart.so.13 to
 * start: the link names of scripts/cuda-env.sh serve.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUstream, *CUevent, *CUmodule, *CUfunction;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_NOT_FOUND = 500,
};

/* What the counters hold; `cuda_counter_read` copies them out. */
struct cuda_counts {
    uint64_t launches;   /* kernels launched (cuLaunchKernel) */
    uint64_t gemms;      /* cuBLAS matrix products */
    uint64_t randoms;    /* cuRAND generations */
    uint64_t htod;       /* host-to-device copies */
    uint64_t htod_bytes;
    uint64_t dtoh;       /* device-to-host copies (each waits for the stream) */
    uint64_t dtoh_bytes;
    uint64_t dtod;       /* device-to-device copies */
    uint64_t memsets;
    uint64_t syncs;      /* cuStreamSynchronize, cuCtxSynchronize */
    uint64_t allocs;
    uint64_t frees;
    uint64_t bytes_in_use;
    uint64_t peak_bytes;
};

static _Atomic uint64_t n_launches, n_gemms, n_randoms, n_htod, n_htod_bytes, n_dtoh, n_dtoh_bytes, n_dtod,
    n_memsets, n_syncs, n_allocs, n_frees, n_in_use, n_peak;

void cuda_counter_read(struct cuda_counts *c) {
    c->launches = n_launches;
    c->gemms = n_gemms;
    c->randoms = n_randoms;
    c->htod = n_htod;
    c->htod_bytes = n_htod_bytes;
    c->dtoh = n_dtoh;
    c->dtoh_bytes = n_dtoh_bytes;
    c->dtod = n_dtod;
    c->memsets = n_memsets;
    c->syncs = n_syncs;
    c->allocs = n_allocs;
    c->frees = n_frees;
    c->bytes_in_use = n_in_use;
    c->peak_bytes = n_peak;
}

/* Kernels by name: cuModuleGetFunction hands out 1-based indices into this table as handles. */
#define MAX_KERNELS 4096
static const char *kernel_names[MAX_KERNELS];
static _Atomic uint64_t kernel_launches[MAX_KERNELS];
static size_t n_kernels;
static pthread_mutex_t kernels_lock = PTHREAD_MUTEX_INITIALIZER;

/* Up to `cap` kernels with their launch counts so far; returns how many kernels there are. */
size_t cuda_counter_kernels(const char **names, uint64_t *launches, size_t cap) {
    pthread_mutex_lock(&kernels_lock);
    size_t n = n_kernels;
    for (size_t i = 0; i < n && i < cap; i++) {
        names[i] = kernel_names[i];
        launches[i] = kernel_launches[i];
    }
    pthread_mutex_unlock(&kernels_lock);
    return n;
}

/* ---- the driver ---- */

static const uint64_t TOTAL_MEMORY = 80ull << 30;
static int the_context; /* its address is the one primary context */
static __thread CUcontext current;

CUresult cuInit(unsigned flags) { (void)flags; return CUDA_SUCCESS; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return CUDA_SUCCESS; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return CUDA_SUCCESS; }

CUresult cuDeviceGet(CUdevice *dev, int ordinal) {
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *dev = 0;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    (void)dev;
    if (len > 0) {
        strncpy(name, "cuda_counter (host memory, kernels counted)", (size_t)len - 1);
        name[len - 1] = 0;
    }
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice dev) {
    (void)dev;
    switch (attribute) {
    case 10: *value = 32; break;       /* warp size */
    case 16: *value = 132; break;      /* multiprocessors (an H100) */
    case 75: *value = 9; break;        /* compute capability 9.0 */
    case 76: *value = 0; break;
    case 97: *value = 232448; break;   /* shared memory per block, opt-in */
    case 115: *value = 1; break;       /* memory pools: stream-ordered allocation */
    default: *value = 0;
    }
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) { (void)dev; *bytes = TOTAL_MEMORY; return CUDA_SUCCESS; }

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev) {
    (void)dev;
    *ctx = &the_context;
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) { (void)dev; return CUDA_SUCCESS; }
CUresult cuCtxGetCurrent(CUcontext *ctx) { *ctx = current; return CUDA_SUCCESS; }
CUresult cuCtxSetCurrent(CUcontext ctx) { current = ctx; return CUDA_SUCCESS; }
CUresult cuCtxGetDevice(CUdevice *dev) { *dev = 0; return CUDA_SUCCESS; }
CUresult cuCtxSynchronize(void) { n_syncs++; return CUDA_SUCCESS; }

CUresult cuStreamCreate(CUstream *s, unsigned flags) {
    (void)flags;
    *s = malloc(1);
    return CUDA_SUCCESS;
}
CUresult cuStreamDestroy_v2(CUstream s) { free(s); return CUDA_SUCCESS; }
CUresult cuStreamSynchronize(CUstream s) { (void)s; n_syncs++; return CUDA_SUCCESS; }
CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned flags) { (void)s; (void)e; (void)flags; return CUDA_SUCCESS; }
CUresult cuStreamIsCapturing(CUstream s, int *status) { (void)s; *status = 0; return CUDA_SUCCESS; }
CUresult cuEventCreate(CUevent *e, unsigned flags) { (void)flags; *e = malloc(1); return CUDA_SUCCESS; }
CUresult cuEventRecord(CUevent e, CUstream s) { (void)e; (void)s; return CUDA_SUCCESS; }
CUresult cuEventDestroy_v2(CUevent e) { free(e); return CUDA_SUCCESS; }

/* Device memory: host blocks with their size in front. */
#define HEADER 64
static CUresult allocate(CUdeviceptr *ptr, size_t bytes) {
    char *block = malloc(bytes + HEADER);
    if (!block) return CUDA_ERROR_OUT_OF_MEMORY;
    *(size_t *)block = bytes;
    *ptr = (CUdeviceptr)(block + HEADER);
    n_allocs++;
    uint64_t in_use = (n_in_use += bytes);
    uint64_t peak = n_peak;
    while (in_use > peak && !atomic_compare_exchange_weak(&n_peak, &peak, in_use)) {
    }
    return CUDA_SUCCESS;
}
static CUresult release(CUdeviceptr ptr) {
    if (!ptr) return CUDA_SUCCESS;
    char *block = (char *)ptr - HEADER;
    n_in_use -= *(size_t *)block;
    n_frees++;
    free(block);
    return CUDA_SUCCESS;
}
CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) { return allocate(ptr, bytes); }
CUresult cuMemAllocAsync(CUdeviceptr *ptr, size_t bytes, CUstream s) { (void)s; return allocate(ptr, bytes); }
CUresult cuMemFree_v2(CUdeviceptr ptr) { return release(ptr); }
CUresult cuMemFreeAsync(CUdeviceptr ptr, CUstream s) { (void)s; return release(ptr); }

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    *total = TOTAL_MEMORY;
    *free_bytes = TOTAL_MEMORY - n_in_use;
    return CUDA_SUCCESS;
}

CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) {
    (void)dst, (void)v, (void)n, (void)s;
    n_memsets++;
    return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s) {
    (void)s;
    memcpy((void *)dst, src, n);
    n_htod++;
    n_htod_bytes += n;
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s) {
    (void)s;
    memcpy(dst, (const void *)src, n);
    n_dtoh++;
    n_dtoh_bytes += n;
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    (void)dst, (void)src, (void)n, (void)s;
    n_dtod++;
    return CUDA_SUCCESS;
}
CUresult cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n, CUstream s) {
    (void)dc;
    (void)sc;
    return cuMemcpyDtoDAsync_v2(dst, src, n, s);
}

/* A module is a copy of its PTX text (the caller may free its own); a function must be one of its
 * entries, as the real driver requires. */
CUresult cuModuleLoadData(CUmodule *m, const void *image) {
    char *copy = strdup((const char *)image);
    if (!copy) return CUDA_ERROR_OUT_OF_MEMORY;
    *m = copy;
    return CUDA_SUCCESS;
}

static int has_entry(const char *ptx, const char *name) {
    size_t n = strlen(name);
    for (const char *p = strstr(ptx, ".entry "); p; p = strstr(p + 1, ".entry ")) {
        const char *q = p + strlen(".entry ");
        if (strncmp(q, name, n) == 0 && (q[n] == '(' || q[n] == ' ' || q[n] == '\n' || q[n] == '\r')) return 1;
    }
    return 0;
}

/* Lookups already checked, (module, kernel): a lookup scans its module's PTX once, not at every launch
 * (candle looks a kernel up before each launch; the real driver answers that from a table too). */
#define MAX_CHECKED 8192
static struct { const void *module; size_t kernel; } checked[MAX_CHECKED];
static size_t n_checked;

/* An unloaded module's lookups are forgotten (a later module may get its address). */
CUresult cuModuleUnload(CUmodule m) {
    pthread_mutex_lock(&kernels_lock);
    size_t kept = 0;
    for (size_t c = 0; c < n_checked; c++)
        if (checked[c].module != m) checked[kept++] = checked[c];
    n_checked = kept;
    pthread_mutex_unlock(&kernels_lock);
    free(m);
    return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
    pthread_mutex_lock(&kernels_lock);
    size_t i = 0;
    while (i < n_kernels && strcmp(kernel_names[i], name) != 0) i++;
    int known = 0;
    for (size_t c = 0; i < n_kernels && c < n_checked && !known; c++) known = checked[c].module == m && checked[c].kernel == i;
    pthread_mutex_unlock(&kernels_lock);
    if (!known && !has_entry((const char *)m, name)) {
        fprintf(stderr, "cuda_counter: no kernel `%s` in the module it was looked up in\n", name);
        return CUDA_ERROR_NOT_FOUND;
    }
    pthread_mutex_lock(&kernels_lock);
    i = 0;
    while (i < n_kernels && strcmp(kernel_names[i], name) != 0) i++;
    if (i == n_kernels) {
        if (n_kernels == MAX_KERNELS) {
            pthread_mutex_unlock(&kernels_lock);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        kernel_names[n_kernels++] = strdup(name);
    }
    if (!known && n_checked < MAX_CHECKED) {
        checked[n_checked].module = m;
        checked[n_checked].kernel = i;
        n_checked++;
    }
    pthread_mutex_unlock(&kernels_lock);
    *f = (CUfunction)(uintptr_t)(i + 1);
    return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, CUstream s, void **params, void **extra) {
    (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)s, (void)params, (void)extra;
    uintptr_t i = (uintptr_t)f;
    if (i == 0 || i > MAX_KERNELS) return CUDA_ERROR_INVALID_VALUE;
    kernel_launches[i - 1]++;
    n_launches++;
    return CUDA_SUCCESS;
}

/* A profiler's capture range (stsa-check brackets its profiled frames): nothing to capture here. */
CUresult cuProfilerStart(void) { return CUDA_SUCCESS; }
CUresult cuProfilerStop(void) { return CUDA_SUCCESS; }
CUresult cuGetErrorString(CUresult e, const char **s) { (void)e; *s = "cuda_counter: no such operation"; return CUDA_SUCCESS; }
CUresult cuGetErrorName(CUresult e, const char **s) { (void)e; *s = "CUDA_COUNTER_ERROR"; return CUDA_SUCCESS; }

/* ---- cuBLAS ---- */

static int a_handle;
int cublasCreate_v2(void **h) { *h = &a_handle; return 0; }
int cublasDestroy_v2(void *h) { (void)h; return 0; }
int cublasSetStream_v2(void *h, void *s) { (void)h; (void)s; return 0; }
int cublasSetWorkspace_v2(void *h, void *w, size_t n) { (void)h; (void)w; (void)n; return 0; }
int cublasGemmStridedBatchedEx(void) { n_gemms++; return 0; }
int cublasSgemmStridedBatched(void) { n_gemms++; return 0; }
int cublasDgemmStridedBatched(void) { n_gemms++; return 0; }
int cublasHgemmStridedBatched(void) { n_gemms++; return 0; }

/* ---- cuRAND ---- */

static int a_generator;
int curandCreateGenerator(void **g, int kind) { (void)kind; *g = &a_generator; return 0; }
int curandDestroyGenerator(void *g) { (void)g; return 0; }
int curandSetStream(void *g, void *s) { (void)g; (void)s; return 0; }
int curandSetPseudoRandomGeneratorSeed(void *g, unsigned long long seed) { (void)g; (void)seed; return 0; }
int curandGenerateUniform(void) { n_randoms++; return 0; }
int curandGenerateUniformDouble(void) { n_randoms++; return 0; }
int curandGenerateNormal(void) { n_randoms++; return 0; }
int curandGenerateNormalDouble(void) { n_randoms++; return 0; }
