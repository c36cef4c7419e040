/*
 * A simulated NVML (libnvidia-ml.so.1) for hosts without an NVIDIA GPU.
 *
 * Built against NVIDIA's own nvml.h (PyPI: nvidia-nvml-dev), it exports the NVML functions
 * gpuspawner calls through pynvml, under the names pynvml resolves (versioned ones included).
 * Every value comes from a text state file that tests rewrite while processes run; the file is
 * read again whenever its inode, size or mtime changes, so a running sampler sees new values on
 * its next call. Format (one record a line, tab-separated key=value fields, '#' comments):
 *
 *   system  driver=550.54.15  cuda=12040  [init_error=<nvmlReturn_t>]
 *   gpu     index=0 uuid=GPU-.. name=.. memory_total=<bytes> memory_used=.. memory_reserved=..
 *           util_gpu=.. util_memory=.. temperature=.. power=<mW> power_limit=<mW> pci=<busId>
 *           numa=.. bridge=.. switch=.. nvlink=<group> mig=0|1 lost=0|1 fail=<fn>:<code>,..
 *   mig     parent=GPU-.. uuid=MIG-.. name=.. memory_total=.. memory_used=.. gi=.. ci=.. fail=..
 *   proc    device=<uuid> pid=.. used=<bytes> kind=compute|graphics
 *
 * The state file is $SIMNVML_STATE, else /run/simnvml/host/state (inside a container, where
 * the stand-in nvidia-container-cli mounts the host's inventory), else
 * /var/lib/simnvml/hosts/default/state. No state file: nvmlInit fails with DRIVER_NOT_LOADED.
 *
 * Visibility: $SIMNVML_VISIBLE, else /run/simnvml/visible, lists UUIDs (GPU or MIG; commas or
 * newlines). When that file exists only the listed devices are enumerated (a GPU appears when
 * it or one of its MIG instances is listed; a listed GPU brings all its instances); when it
 * does not exist every device is.
 */
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXPORT __attribute__((visibility("default")))
#define MAX_GPUS 64
#define MAX_MIGS 7
#define MAX_PROCS 256
#define MAX_FAILS 8
#define TEXT 128

struct fail {
    char fn[64];
    nvmlReturn_t code;
};

/* A GPU or a MIG instance; the handle NVML hands out is a pointer to one of these slots.
 * Slots are never freed: a handle stays valid across reloads, and a device that vanished
 * from the state answers GPU_IS_LOST. */
struct nvmlDevice_st {
    int used;          /* slot allocated */
    int present;       /* in the current state */
    int is_mig;
    struct nvmlDevice_st *parent;
    char uuid[TEXT], name[TEXT], pci[32];
    unsigned long long mem_total, mem_used, mem_reserved;
    unsigned int util_gpu, util_mem, temperature, power, power_limit;
    int index, numa, bridge, pcie_switch, nvlink, mig_enabled, lost;
    unsigned int gi, ci;
    struct fail fails[MAX_FAILS];
    int nfails;
    int visible;
};

struct proc {
    struct nvmlDevice_st *dev;
    unsigned int pid;
    unsigned long long used;
    int graphics;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count;
static struct nvmlDevice_st gpus[MAX_GPUS], migs[MAX_GPUS * MAX_MIGS];
static struct proc procs[MAX_PROCS];
static int nprocs;
static char driver_version[TEXT] = "550.54.15";
static int cuda_version = 12040;
static nvmlReturn_t init_error;
static int have_state;
static struct stat state_seen, visible_seen;
static int visible_exists;

static const char *state_path(void)
{
    const char *env = getenv("SIMNVML_STATE");
    struct stat st;
    if (env && *env)
        return env;
    if (stat("/run/simnvml/host/state", &st) == 0)
        return "/run/simnvml/host/state";
    return "/var/lib/simnvml/hosts/default/state";
}

static const char *visible_path(void)
{
    const char *env = getenv("SIMNVML_VISIBLE");
    return env && *env ? env : "/run/simnvml/visible";
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    if (!f)
        return NULL;
    do {
        if (cap - len < 4096) {
            char *grown = realloc(buf, cap + 65536);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
            cap += 65536;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static struct nvmlDevice_st *slot_for(struct nvmlDevice_st *table, int size, const char *uuid)
{
    int i;
    for (i = 0; i < size; i++)
        if (table[i].used && strcmp(table[i].uuid, uuid) == 0)
            return &table[i];
    for (i = 0; i < size; i++)
        if (!table[i].used) {
            memset(&table[i], 0, sizeof(table[i]));
            table[i].used = 1;
            snprintf(table[i].uuid, sizeof(table[i].uuid), "%s", uuid);
            return &table[i];
        }
    return NULL;
}

static struct nvmlDevice_st *find_uuid(const char *uuid)
{
    int i;
    for (i = 0; i < MAX_GPUS; i++)
        if (gpus[i].present && strcmp(gpus[i].uuid, uuid) == 0)
            return &gpus[i];
    for (i = 0; i < MAX_GPUS * MAX_MIGS; i++)
        if (migs[i].present && strcmp(migs[i].uuid, uuid) == 0)
            return &migs[i];
    return NULL;
}

/* value of key in a record: fields are "\tkey=value" */
static const char *field(char **fields, int n, const char *key)
{
    size_t k = strlen(key);
    int i;
    for (i = 1; i < n; i++)
        if (strncmp(fields[i], key, k) == 0 && fields[i][k] == '=')
            return fields[i] + k + 1;
    return NULL;
}

static unsigned long long num(char **fields, int n, const char *key, unsigned long long fallback)
{
    const char *v = field(fields, n, key);
    return v && *v ? strtoull(v, NULL, 0) : fallback;
}

static void text(char *dst, size_t size, char **fields, int n, const char *key,
                 const char *fallback)
{
    const char *v = field(fields, n, key);
    snprintf(dst, size, "%s", v ? v : fallback);
}

static void parse_fails(struct nvmlDevice_st *d, const char *spec)
{
    char copy[1024], *save = NULL, *item;
    d->nfails = 0;
    if (!spec)
        return;
    snprintf(copy, sizeof(copy), "%s", spec);
    for (item = strtok_r(copy, ",", &save); item && d->nfails < MAX_FAILS;
         item = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(item, ':');
        if (!colon)
            continue;
        *colon = '\0';
        snprintf(d->fails[d->nfails].fn, sizeof(d->fails[0].fn), "%s", item);
        d->fails[d->nfails].code = (nvmlReturn_t)strtol(colon + 1, NULL, 0);
        d->nfails++;
    }
}

static void parse_common(struct nvmlDevice_st *d, char **f, int n)
{
    text(d->name, sizeof(d->name), f, n, "name", "NVIDIA A100-SXM4-80GB");
    d->mem_total = num(f, n, "memory_total", 85899345920ULL);
    d->mem_used = num(f, n, "memory_used", 0);
    d->mem_reserved = num(f, n, "memory_reserved", 0);
    parse_fails(d, field(f, n, "fail"));
    d->present = 1;
}

static void parse_state(char *buf)
{
    char *save = NULL, *line;
    int i;
    for (i = 0; i < MAX_GPUS; i++)
        gpus[i].present = 0;
    for (i = 0; i < MAX_GPUS * MAX_MIGS; i++)
        migs[i].present = 0;
    nprocs = 0;
    init_error = NVML_SUCCESS;
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *fields[64], *fsave = NULL, *tok;
        int n = 0;
        const char *uuid;
        if (*line == '#')
            continue;
        for (tok = strtok_r(line, "\t", &fsave); tok && n < 64; tok = strtok_r(NULL, "\t", &fsave))
            fields[n++] = tok;
        if (n == 0)
            continue;
        if (strcmp(fields[0], "system") == 0) {
            text(driver_version, sizeof(driver_version), fields, n, "driver", "550.54.15");
            cuda_version = (int)num(fields, n, "cuda", 12040);
            init_error = (nvmlReturn_t)num(fields, n, "init_error", 0);
            continue;
        }
        uuid = field(fields, n, "uuid");
        if (!uuid || !*uuid)
            continue;
        if (strcmp(fields[0], "gpu") == 0) {
            struct nvmlDevice_st *d = slot_for(gpus, MAX_GPUS, uuid);
            if (!d)
                continue;
            parse_common(d, fields, n);
            d->is_mig = 0;
            d->parent = NULL;
            text(d->pci, sizeof(d->pci), fields, n, "pci", "00000000:00:00.0");
            d->index = (int)num(fields, n, "index", 0);
            d->util_gpu = (unsigned int)num(fields, n, "util_gpu", 0);
            d->util_mem = (unsigned int)num(fields, n, "util_memory", 0);
            d->temperature = (unsigned int)num(fields, n, "temperature", 35);
            d->power = (unsigned int)num(fields, n, "power", 60000);
            d->power_limit = (unsigned int)num(fields, n, "power_limit", 400000);
            d->numa = (int)num(fields, n, "numa", 0);
            d->bridge = (int)num(fields, n, "bridge", 0);
            d->pcie_switch = (int)num(fields, n, "switch", 0);
            d->nvlink = (int)num(fields, n, "nvlink", 0);
            d->mig_enabled = (int)num(fields, n, "mig", 0);
            d->lost = (int)num(fields, n, "lost", 0);
        }
    }
}

/* MIG and process records name their parent device by UUID, so they are read after the GPUs */
static void parse_children(char *buf)
{
    char *save = NULL, *line;
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *fields[64], *fsave = NULL, *tok;
        int n = 0;
        for (tok = strtok_r(line, "\t", &fsave); tok && n < 64; tok = strtok_r(NULL, "\t", &fsave))
            fields[n++] = tok;
        if (n == 0 || *fields[0] == '#')
            continue;
        if (strcmp(fields[0], "mig") == 0) {
            const char *uuid = field(fields, n, "uuid"), *parent = field(fields, n, "parent");
            struct nvmlDevice_st *p = parent ? find_uuid(parent) : NULL, *d;
            if (!uuid || !p || p->is_mig)
                continue;
            d = slot_for(migs, MAX_GPUS * MAX_MIGS, uuid);
            if (!d)
                continue;
            parse_common(d, fields, n);
            d->is_mig = 1;
            d->parent = p;
            d->gi = (unsigned int)num(fields, n, "gi", 0);
            d->ci = (unsigned int)num(fields, n, "ci", 0);
        } else if (strcmp(fields[0], "proc") == 0 && nprocs < MAX_PROCS) {
            const char *device = field(fields, n, "device"), *kind = field(fields, n, "kind");
            struct nvmlDevice_st *d = device ? find_uuid(device) : NULL;
            if (!d)
                continue;
            procs[nprocs].dev = d;
            procs[nprocs].pid = (unsigned int)num(fields, n, "pid", 0);
            procs[nprocs].used = num(fields, n, "used", 0);
            procs[nprocs].graphics = kind && strcmp(kind, "graphics") == 0;
            nprocs++;
        }
    }
}

static int listed(const char *list, const char *uuid)
{
    size_t k = strlen(uuid);
    const char *p = list;
    while ((p = strstr(p, uuid)) != NULL) {
        int starts = p == list || strchr(", \t\r\n", p[-1]) != NULL;
        int ends = p[k] == '\0' || strchr(", \t\r\n", p[k]) != NULL;
        if (starts && ends)
            return 1;
        p += k;
    }
    return 0;
}

static void apply_visibility(const char *list)
{
    int i;
    for (i = 0; i < MAX_GPUS; i++)
        gpus[i].visible = gpus[i].present && (!list || listed(list, gpus[i].uuid));
    for (i = 0; i < MAX_GPUS * MAX_MIGS; i++) {
        struct nvmlDevice_st *m = &migs[i];
        m->visible = m->present && (!list || listed(list, m->uuid) || m->parent->visible);
    }
    for (i = 0; i < MAX_GPUS * MAX_MIGS; i++)
        if (migs[i].visible)
            migs[i].parent->visible = 1;
}

/* re-read the state and visibility files when they changed; called with the lock held */
static void refresh(void)
{
    struct stat st, vst;
    int state_ok = stat(state_path(), &st) == 0;
    int vis_ok = stat(visible_path(), &vst) == 0;
    char *buf, *copy, *list = NULL;
    if (state_ok == have_state && (!state_ok || same_file(&st, &state_seen)) &&
        vis_ok == visible_exists && (!vis_ok || same_file(&vst, &visible_seen)))
        return;
    buf = state_ok ? slurp(state_path()) : NULL;
    if (!buf) {
        int i;
        have_state = 0;
        for (i = 0; i < MAX_GPUS; i++)
            gpus[i].present = gpus[i].visible = 0;
        for (i = 0; i < MAX_GPUS * MAX_MIGS; i++)
            migs[i].present = migs[i].visible = 0;
        nprocs = 0;
        return;
    }
    copy = strdup(buf);
    parse_state(buf);
    if (copy)
        parse_children(copy);
    free(buf);
    free(copy);
    if (vis_ok)
        list = slurp(visible_path());
    apply_visibility(vis_ok ? (list ? list : "") : NULL);
    free(list);
    have_state = 1;
    state_seen = st;
    visible_exists = vis_ok;
    if (vis_ok)
        visible_seen = vst;
}

/* ---- helpers shared by the device calls ---- */

static int is_device(nvmlDevice_t d)
{
    return (d >= gpus && d < gpus + MAX_GPUS) || (d >= migs && d < migs + MAX_GPUS * MAX_MIGS);
}

/* an error the state injects for this function: "nvmlDeviceGetMemoryInfo" names every
 * version of it (nvmlDeviceGetMemoryInfo_v2 too), a versioned name only that version */
static nvmlReturn_t injected(nvmlDevice_t d, const char *fn)
{
    int i;
    for (i = 0; i < d->nfails; i++) {
        size_t k = strlen(d->fails[i].fn);
        if (strncmp(d->fails[i].fn, fn, k) == 0 &&
            (fn[k] == '\0' || (fn[k] == '_' && fn[k + 1] == 'v')))
            return d->fails[i].code;
    }
    return NVML_SUCCESS;
}

/* The checks every device call starts with: initialised, a real handle, still there, not
 * lost, no error injected for this function. */
static nvmlReturn_t check(nvmlDevice_t d, const char *fn)
{
    nvmlReturn_t r;
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (!d || !is_device(d) || !d->used)
        return NVML_ERROR_INVALID_ARGUMENT;
    refresh();
    if (!d->present || !d->visible || d->lost || (d->parent && d->parent->lost))
        return NVML_ERROR_GPU_IS_LOST;
    r = injected(d, fn);
    return r;
}

#define DEVICE_CALL(d, out)                                                                    \
    nvmlReturn_t r;                                                                            \
    pthread_mutex_lock(&lock);                                                                 \
    r = check(d, __func__);                                                                    \
    if (r == NVML_SUCCESS && !(out))                                                           \
        r = NVML_ERROR_INVALID_ARGUMENT;                                                       \
    if (r != NVML_SUCCESS) {                                                                   \
        pthread_mutex_unlock(&lock);                                                           \
        return r;                                                                              \
    }

#define DONE(value)                                                                            \
    do {                                                                                       \
        r = (value);                                                                           \
        pthread_mutex_unlock(&lock);                                                           \
        return r;                                                                              \
    } while (0)

static nvmlReturn_t copy_text(char *dst, unsigned int length, const char *src)
{
    if (strlen(src) + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

/* the visible GPUs in index order: the n-th one */
static struct nvmlDevice_st *visible_gpu(unsigned int n)
{
    int best, i;
    unsigned int seen = 0;
    int last = -1;
    for (;;) {
        best = -1;
        for (i = 0; i < MAX_GPUS; i++)
            if (gpus[i].visible && gpus[i].index > last &&
                (best < 0 || gpus[i].index < gpus[best].index))
                best = i;
        if (best < 0)
            return NULL;
        if (seen++ == n)
            return &gpus[best];
        last = gpus[best].index;
    }
}

static unsigned int visible_count(void)
{
    unsigned int n = 0;
    int i;
    for (i = 0; i < MAX_GPUS; i++)
        n += gpus[i].visible != 0;
    return n;
}

/* ---- initialisation ---- */

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    nvmlReturn_t r = NVML_SUCCESS;
    (void)flags;
    pthread_mutex_lock(&lock);
    refresh();
    if (!have_state)
        r = NVML_ERROR_DRIVER_NOT_LOADED;
    else if (init_error != NVML_SUCCESS)
        r = init_error;
    else
        init_count++;
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

EXPORT nvmlReturn_t nvmlShutdown(void)
{
    nvmlReturn_t r = NVML_SUCCESS;
    pthread_mutex_lock(&lock);
    if (init_count == 0)
        r = NVML_ERROR_UNINITIALIZED;
    else
        init_count--;
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER: return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt Request Issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    case NVML_ERROR_NOT_READY: return "The system is not ready for the request";
    case NVML_ERROR_GPU_NOT_FOUND: return "No GPUs were found";
    default: return "Unknown Error";
    }
}

/* ---- system queries ---- */

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    nvmlReturn_t r;
    if (!version)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    if (init_count == 0)
        r = NVML_ERROR_UNINITIALIZED;
    else {
        refresh();
        r = copy_text(version, length, driver_version);
    }
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    char text[TEXT + 16];
    nvmlReturn_t r;
    if (!version)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    refresh();
    snprintf(text, sizeof(text), "%d.%s", cuda_version / 1000, driver_version);
    r = copy_text(version, length, text);
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version)
{
    if (!version)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    refresh();
    *version = cuda_version;
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version)
{
    return nvmlSystemGetCudaDriverVersion(version);
}

/* ---- enumeration ---- */

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    nvmlReturn_t r = NVML_SUCCESS;
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    if (init_count == 0)
        r = NVML_ERROR_UNINITIALIZED;
    else {
        refresh();
        *count = visible_count();
    }
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    nvmlReturn_t r = NVML_SUCCESS;
    struct nvmlDevice_st *d;
    if (!device)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    if (init_count == 0)
        r = NVML_ERROR_UNINITIALIZED;
    else {
        refresh();
        d = visible_gpu(index);
        if (!d)
            r = NVML_ERROR_INVALID_ARGUMENT;
        else if (d->lost)
            r = NVML_ERROR_GPU_IS_LOST;
        else if ((r = injected(d, "nvmlDeviceGetHandleByIndex")) == NVML_SUCCESS)
            *device = d;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    nvmlReturn_t r = NVML_SUCCESS;
    struct nvmlDevice_st *d;
    if (!uuid || !device)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    if (init_count == 0)
        r = NVML_ERROR_UNINITIALIZED;
    else {
        refresh();
        d = find_uuid(uuid);
        if (!d || !d->visible)
            r = NVML_ERROR_NOT_FOUND;
        else if (d->lost || (d->parent && d->parent->lost))
            r = NVML_ERROR_GPU_IS_LOST;
        else
            *device = d;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus, nvmlDevice_t *device)
{
    nvmlReturn_t r = NVML_ERROR_NOT_FOUND;
    int i;
    if (!bus || !device)
        return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    if (init_count == 0)
        r = NVML_ERROR_UNINITIALIZED;
    else {
        refresh();
        for (i = 0; i < MAX_GPUS; i++)
            if (gpus[i].visible && strcasecmp(gpus[i].pci, bus) == 0) {
                r = gpus[i].lost ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS;
                if (r == NVML_SUCCESS)
                    *device = &gpus[i];
                break;
            }
    }
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *bus, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByPciBusId_v2(bus, device);
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    unsigned int n;
    DEVICE_CALL(device, index);
    if (device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    for (n = 0; visible_gpu(n); n++)
        if (visible_gpu(n) == device) {
            *index = n;
            DONE(NVML_SUCCESS);
        }
    DONE(NVML_ERROR_GPU_IS_LOST);
}

/* ---- identity ---- */

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    DEVICE_CALL(device, name);
    DONE(copy_text(name, length, device->name));
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    DEVICE_CALL(device, uuid);
    DONE(copy_text(uuid, length, device->uuid));
}

EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor)
{
    DEVICE_CALL(device, minor);
    if (device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *minor = (unsigned int)device->index;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    unsigned int domain = 0, bus = 0, dev = 0, fn = 0;
    const char *busid;
    DEVICE_CALL(device, pci);
    busid = device->is_mig ? device->parent->pci : device->pci;
    memset(pci, 0, sizeof(*pci));
    sscanf(busid, "%x:%x:%x.%x", &domain, &bus, &dev, &fn);
    snprintf(pci->busId, sizeof(pci->busId), "%s", busid);
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04x:%02x:%02x.%x", domain & 0xffff,
             bus, dev, fn);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = dev;
    pci->pciDeviceId = 0x20B210DE;
    pci->pciSubSystemId = 0x147E10DE;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    return nvmlDeviceGetPciInfo_v3(device, pci);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    return nvmlDeviceGetPciInfo_v3(device, pci);
}

EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
    DEVICE_CALL(device, major && minor);
    *major = 8;
    *minor = 0;
    DONE(NVML_SUCCESS);
}

/* ---- readings ---- */

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    DEVICE_CALL(device, memory);
    /* v1 counts the driver's reservation as used */
    memory->total = device->mem_total;
    memory->used = device->mem_used + device->mem_reserved;
    memory->free = memory->total > memory->used ? memory->total - memory->used : 0;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    unsigned long long taken;
    DEVICE_CALL(device, memory);
    if (memory->version != nvmlMemory_v2)
        DONE(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    memory->total = device->mem_total;
    memory->reserved = device->mem_reserved;
    memory->used = device->mem_used;
    taken = device->mem_used + device->mem_reserved;
    memory->free = device->mem_total > taken ? device->mem_total - taken : 0;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *rates)
{
    DEVICE_CALL(device, rates);
    /* not supported on MIG instances, nor on a GPU in MIG mode */
    if (device->is_mig || device->mig_enabled)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    rates->gpu = device->util_gpu;
    rates->memory = device->util_mem;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensor,
                                             unsigned int *temp)
{
    DEVICE_CALL(device, temp);
    if (device->is_mig || sensor != NVML_TEMPERATURE_GPU)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *temp = device->temperature;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    DEVICE_CALL(device, power);
    if (device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *power = device->power;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    DEVICE_CALL(device, limit);
    if (device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *limit = device->power_limit;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit)
{
    DEVICE_CALL(device, limit);
    if (device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *limit = device->power_limit;
    DONE(NVML_SUCCESS);
}

/* ---- processes: the three struct layouts NVML has had ---- */

static nvmlReturn_t list_processes(nvmlDevice_t device, int graphics, unsigned int *count,
                                   void *infos, int layout)
{
    unsigned int n = 0, i;
    int k;
    for (k = 0; k < nprocs; k++)
        n += procs[k].dev == device && procs[k].graphics == graphics;
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (!infos || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (k = 0, i = 0; k < nprocs; k++) {
        unsigned long long used;
        if (procs[k].dev != device || procs[k].graphics != graphics)
            continue;
        /* per-process memory is not available under MIG */
        used = device->is_mig ? (unsigned long long)NVML_VALUE_NOT_AVAILABLE : procs[k].used;
        if (layout == 1) {
            nvmlProcessInfo_v1_t *p = (nvmlProcessInfo_v1_t *)infos + i;
            p->pid = procs[k].pid;
            p->usedGpuMemory = used;
        } else {
            nvmlProcessInfo_v2_t *p = (nvmlProcessInfo_v2_t *)infos + i;
            p->pid = procs[k].pid;
            p->usedGpuMemory = used;
            p->gpuInstanceId = device->is_mig ? device->gi : 0xFFFFFFFFu;
            p->computeInstanceId = device->is_mig ? device->ci : 0xFFFFFFFFu;
        }
        i++;
    }
    *count = n;
    return NVML_SUCCESS;
}

#define PROCESS_CALL(fname, graphics, type, layout)                                           \
    EXPORT nvmlReturn_t fname(nvmlDevice_t device, unsigned int *count, type *infos)           \
    {                                                                                          \
        DEVICE_CALL(device, count);                                                            \
        DONE(list_processes(device, graphics, count, infos, layout));                          \
    }

PROCESS_CALL(nvmlDeviceGetComputeRunningProcesses, 0, nvmlProcessInfo_v1_t, 1)
PROCESS_CALL(nvmlDeviceGetComputeRunningProcesses_v2, 0, nvmlProcessInfo_v2_t, 2)
PROCESS_CALL(nvmlDeviceGetComputeRunningProcesses_v3, 0, nvmlProcessInfo_t, 3)
PROCESS_CALL(nvmlDeviceGetGraphicsRunningProcesses, 1, nvmlProcessInfo_v1_t, 1)
PROCESS_CALL(nvmlDeviceGetGraphicsRunningProcesses_v2, 1, nvmlProcessInfo_v2_t, 2)
PROCESS_CALL(nvmlDeviceGetGraphicsRunningProcesses_v3, 1, nvmlProcessInfo_t, 3)

EXPORT nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v3(nvmlDevice_t device,
                                                               unsigned int *count,
                                                               nvmlProcessInfo_t *infos)
{
    (void)infos;
    DEVICE_CALL(device, count);
    *count = 0;
    DONE(NVML_SUCCESS);
}

/* ---- MIG ---- */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current,
                                         unsigned int *pending)
{
    DEVICE_CALL(device, current && pending);
    if (device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *current = *pending = device->mig_enabled ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count)
{
    DEVICE_CALL(device, count);
    if (device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *count = device->mig_enabled ? MAX_MIGS : 0;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                        nvmlDevice_t *mig)
{
    unsigned int seen = 0;
    int i;
    DEVICE_CALL(device, mig);
    if (device->is_mig || !device->mig_enabled)
        DONE(NVML_ERROR_INVALID_ARGUMENT);
    if (index >= MAX_MIGS)
        DONE(NVML_ERROR_INVALID_ARGUMENT);
    for (i = 0; i < MAX_GPUS * MAX_MIGS; i++)
        if (migs[i].visible && migs[i].parent == device && seen++ == index) {
            *mig = &migs[i];
            DONE(NVML_SUCCESS);
        }
    DONE(NVML_ERROR_NOT_FOUND);
}

EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *is_mig)
{
    DEVICE_CALL(device, is_mig);
    *is_mig = (unsigned int)device->is_mig;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t mig,
                                                                 nvmlDevice_t *device)
{
    DEVICE_CALL(mig, device);
    if (!mig->is_mig)
        DONE(NVML_ERROR_INVALID_ARGUMENT);
    *device = mig->parent;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id)
{
    DEVICE_CALL(device, id);
    if (!device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *id = device->gi;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id)
{
    DEVICE_CALL(device, id);
    if (!device->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    *id = device->ci;
    DONE(NVML_SUCCESS);
}

/* ---- topology: PCIe switch, host bridge and NUMA node from the state; NVLink groups ---- */

EXPORT nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t a, nvmlDevice_t b,
                                                        nvmlGpuTopologyLevel_t *level)
{
    nvmlReturn_t second;
    DEVICE_CALL(a, level);
    second = check(b, __func__);
    if (second != NVML_SUCCESS)
        DONE(second);
    if (a->is_mig || b->is_mig)
        DONE(NVML_ERROR_NOT_SUPPORTED);
    if (a == b)
        *level = NVML_TOPOLOGY_INTERNAL;
    else if (a->pcie_switch == b->pcie_switch && a->bridge == b->bridge)
        *level = NVML_TOPOLOGY_SINGLE;
    else if (a->bridge == b->bridge)
        *level = NVML_TOPOLOGY_HOSTBRIDGE;
    else if (a->numa == b->numa)
        *level = NVML_TOPOLOGY_NODE;
    else
        *level = NVML_TOPOLOGY_SYSTEM;
    DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetP2PStatus(nvmlDevice_t a, nvmlDevice_t b,
                                           nvmlGpuP2PCapsIndex_t index, nvmlGpuP2PStatus_t *status)
{
    nvmlReturn_t second;
    DEVICE_CALL(a, status);
    second = check(b, __func__);
    if (second != NVML_SUCCESS)
        DONE(second);
    if (index == NVML_P2P_CAPS_INDEX_NVLINK)
        *status = a->nvlink > 0 && a->nvlink == b->nvlink ? NVML_P2P_STATUS_OK
                                                          : NVML_P2P_STATUS_NOT_SUPPORTED;
    else
        *status = a->bridge == b->bridge ? NVML_P2P_STATUS_OK
                                         : NVML_P2P_STATUS_CHIPSET_NOT_SUPPORED;
    DONE(NVML_SUCCESS);
}

/* Not NVML: tells a caller (scripts/gpu-check.sh) that this library is the simulation. */
EXPORT const char *simnvmlVersion(void) { return "simnvml 1 (tools/gpuhost)"; }
