/* deploysnake's in-process Triton backend: libtriton_deploysnake.so.
 *
 * The bundled tritonserver (nvidia-pytriton wheel) has only the python backend, whose model runs in a
 * separate stub process: every batch crosses shared memory twice and waits on the stub, which cost
 * 43% of the throughput at batch 256 on a 2-core machine. This backend embeds the
 * interpreter in the server process instead and calls the model's Python runner (the same runtime.py
 * the python flavour uses) on the server's own thread: one gather of the batch's inputs, one runtime
 * call (which releases the GIL); a responder thread per instance copies each output into the
 * responses and sends them while the execute thread takes the next batch.
 *
 * Built by `python -m deploysnake.inprocess build` (scripts/setup.sh). Only the subset of Triton's
 * C API this file calls is declared below; that API is C and ABI-stable within major version 1.
 */
#include <Python.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Triton C API, the part used here -------------------------------------------------------- */
typedef struct TRITONSERVER_Error TRITONSERVER_Error;
typedef struct TRITONSERVER_Message TRITONSERVER_Message;
typedef struct TRITONBACKEND_Backend TRITONBACKEND_Backend;
typedef struct TRITONBACKEND_Model TRITONBACKEND_Model;
typedef struct TRITONBACKEND_ModelInstance TRITONBACKEND_ModelInstance;
typedef struct TRITONBACKEND_Request TRITONBACKEND_Request;
typedef struct TRITONBACKEND_Input TRITONBACKEND_Input;
typedef struct TRITONBACKEND_Response TRITONBACKEND_Response;
typedef struct TRITONBACKEND_Output TRITONBACKEND_Output;
typedef int TRITONSERVER_DataType;
typedef int TRITONSERVER_MemoryType;
typedef int TRITONSERVER_InstanceGroupKind;
typedef int TRITONBACKEND_ArtifactType;

enum { ERROR_INTERNAL = 1, ERROR_INVALID_ARG = 3, ERROR_UNSUPPORTED = 5 };
enum { MEMORY_CPU = 0 };
enum { KIND_GPU = 2 };
enum { LOG_INFO = 0, LOG_ERROR = 2 };
enum { RESPONSE_FINAL = 1, RELEASE_ALL = 1 };

TRITONSERVER_Error* TRITONSERVER_ErrorNew(int code, const char* msg);
const char* TRITONSERVER_ErrorMessage(TRITONSERVER_Error* error);
void TRITONSERVER_ErrorDelete(TRITONSERVER_Error* error);
TRITONSERVER_Error* TRITONSERVER_MessageSerializeToJson(TRITONSERVER_Message* message, const char** base, size_t* byte_size);
TRITONSERVER_Error* TRITONSERVER_MessageDelete(TRITONSERVER_Message* message);
TRITONSERVER_Error* TRITONSERVER_LogMessage(int level, const char* filename, const int line, const char* msg);

TRITONSERVER_Error* TRITONBACKEND_ModelConfig(TRITONBACKEND_Model* model, const uint32_t config_version, TRITONSERVER_Message** model_config);
TRITONSERVER_Error* TRITONBACKEND_ModelRepository(TRITONBACKEND_Model* model, TRITONBACKEND_ArtifactType* artifact_type, const char** location);
TRITONSERVER_Error* TRITONBACKEND_ModelVersion(TRITONBACKEND_Model* model, uint64_t* version);
TRITONSERVER_Error* TRITONBACKEND_ModelName(TRITONBACKEND_Model* model, const char** name);
TRITONSERVER_Error* TRITONBACKEND_ModelSetState(TRITONBACKEND_Model* model, void* state);
TRITONSERVER_Error* TRITONBACKEND_ModelState(TRITONBACKEND_Model* model, void** state);
TRITONSERVER_Error* TRITONBACKEND_ModelInstanceModel(TRITONBACKEND_ModelInstance* instance, TRITONBACKEND_Model** model);
TRITONSERVER_Error* TRITONBACKEND_ModelInstanceKind(TRITONBACKEND_ModelInstance* instance, TRITONSERVER_InstanceGroupKind* kind);
TRITONSERVER_Error* TRITONBACKEND_ModelInstanceDeviceId(TRITONBACKEND_ModelInstance* instance, int32_t* device_id);
TRITONSERVER_Error* TRITONBACKEND_ModelInstanceSetState(TRITONBACKEND_ModelInstance* instance, void* state);
TRITONSERVER_Error* TRITONBACKEND_ModelInstanceState(TRITONBACKEND_ModelInstance* instance, void** state);
TRITONSERVER_Error* TRITONBACKEND_ModelInstanceReportStatistics(
    TRITONBACKEND_ModelInstance* instance, TRITONBACKEND_Request* request, const bool success, const uint64_t exec_start_ns,
    const uint64_t compute_start_ns, const uint64_t compute_end_ns, const uint64_t exec_end_ns);
TRITONSERVER_Error* TRITONBACKEND_ModelInstanceReportBatchStatistics(
    TRITONBACKEND_ModelInstance* instance, const uint64_t batch_size, const uint64_t exec_start_ns, const uint64_t compute_start_ns,
    const uint64_t compute_end_ns, const uint64_t exec_end_ns);
TRITONSERVER_Error* TRITONBACKEND_RequestInput(TRITONBACKEND_Request* request, const char* name, TRITONBACKEND_Input** input);
TRITONSERVER_Error* TRITONBACKEND_InputProperties(
    TRITONBACKEND_Input* input, const char** name, TRITONSERVER_DataType* datatype, const int64_t** shape, uint32_t* dims_count,
    uint64_t* byte_size, uint32_t* buffer_count);
TRITONSERVER_Error* TRITONBACKEND_InputBuffer(
    TRITONBACKEND_Input* input, const uint32_t index, const void** buffer, uint64_t* buffer_byte_size,
    TRITONSERVER_MemoryType* memory_type, int64_t* memory_type_id);
TRITONSERVER_Error* TRITONBACKEND_ResponseNew(TRITONBACKEND_Response** response, TRITONBACKEND_Request* request);
TRITONSERVER_Error* TRITONBACKEND_ResponseOutput(
    TRITONBACKEND_Response* response, TRITONBACKEND_Output** output, const char* name, const TRITONSERVER_DataType datatype,
    const int64_t* shape, const uint32_t dims_count);
TRITONSERVER_Error* TRITONBACKEND_OutputBuffer(
    TRITONBACKEND_Output* output, void** buffer, const uint64_t buffer_byte_size, TRITONSERVER_MemoryType* memory_type,
    int64_t* memory_type_id);
TRITONSERVER_Error* TRITONBACKEND_ResponseSend(TRITONBACKEND_Response* response, const uint32_t send_flags, TRITONSERVER_Error* error);
TRITONSERVER_Error* TRITONBACKEND_RequestRelease(TRITONBACKEND_Request* request, uint32_t release_flags);

/* ---- helpers ----------------------------------------------------------------------------------- */
#define MAX_DIMS 16

typedef struct {
    PyObject* runner;     /* deploysnake_model.TritonModel */
    int max_batch_size;
    int n_inputs, n_outputs;
    char** input_names;   /* as many as the config has: no limit of ours */
    char** output_names;
    TRITONSERVER_DataType* output_types;
    char* model_config;   /* JSON */
    char* version_dir;
} ModelState;

/* A computed batch on its way out: what the responder needs to answer and release its requests. */
typedef struct Job {
    struct Job* next;
    TRITONBACKEND_ModelInstance* instance;
    ModelState* model;
    uint32_t count;
    TRITONBACKEND_Request** requests; /* a copy (Triton's array lives only during the execute call) */
    int64_t* rows;                    /* requests and rows sit in the same allocation, after the job */
    int64_t total_rows;
    PyObject* outputs;                /* kept alive while views[] point into it */
    Py_buffer* views;                 /* one per output, in the same allocation */
    Py_ssize_t* offsets;              /* bytes of each output sent so far, in the same allocation */
    int n_views;
    TRITONSERVER_Error* err;
    uint64_t exec_start, compute_start, compute_end;
} Job;

typedef struct {
    ModelState* model;
    PyObject* runner;     /* this instance's runner: its own runtime session and threads */
    /* The responder thread: it copies outputs into responses, sends them and releases the requests,
     * so the instance's execute thread returns to Triton right after compute and starts the next
     * batch while this one's responses go out (at batch 256 that was ~5% of the execute thread). */
    pthread_t responder;
    bool has_responder, stopping;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    Job *head, *tail;
} InstanceState;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* Triton's steady_clock */
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static TRITONSERVER_Error* error_new(int code, const char* fmt, const char* detail) {
    char msg[2048];
    snprintf(msg, sizeof msg, fmt, detail ? detail : "");
    return TRITONSERVER_ErrorNew(code, msg);
}

/* The current Python exception as a Triton error (the GIL is held). */
static TRITONSERVER_Error* python_error(const char* where) {
    PyObject *type, *value, *trace;
    PyErr_Fetch(&type, &value, &trace);
    PyErr_NormalizeException(&type, &value, &trace);
    PyObject* text = value ? PyObject_Str(value) : NULL;
    const char* what = text ? PyUnicode_AsUTF8(text) : "unknown Python error";
    const char* kind = type ? ((PyTypeObject*)type)->tp_name : "Error";
    char msg[2048];
    snprintf(msg, sizeof msg, "deploysnake backend, %s: %s: %s", where, kind, what ? what : "");
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(trace);
    PyErr_Clear();
    return TRITONSERVER_ErrorNew(ERROR_INTERNAL, msg);
}

static const char* DATATYPES[] = {"INVALID", "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                  "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16"};

static TRITONSERVER_DataType datatype_of(const char* config_type) {
    /* config JSON spells types "TYPE_FP32"; the C API numbers them in DATATYPES' order */
    if (strncmp(config_type, "TYPE_", 5) == 0) config_type += 5;
    for (int i = 0; i < (int)(sizeof DATATYPES / sizeof *DATATYPES); ++i)
        if (strcmp(config_type, DATATYPES[i]) == 0) return i;
    return 0;
}

static void* respond_loop(void* arg); /* the responder thread, below */

/* ---- backend entry points ---------------------------------------------------------------------- */
TRITONSERVER_Error* TRITONBACKEND_Initialize(TRITONBACKEND_Backend* backend) {
    (void)backend;
    /* Extension modules (numpy, onnxruntime) resolve libpython's symbols globally; Triton opened
     * this library with local symbols, so promote libpython's. */
    Dl_info info;
    if (dladdr((void*)&Py_InitializeEx, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    if (!Py_IsInitialized()) {
        Py_InitializeEx(0); /* 0: leave the server's signal handlers alone */
        PyEval_SaveThread(); /* release the GIL: each execute thread takes it as needed */
    }
    TRITONSERVER_LogMessage(LOG_INFO, __FILE__, __LINE__, "deploysnake backend: Python runner in the server process");
    return NULL;
}

static TRITONSERVER_Error* read_config(TRITONBACKEND_Model* model, ModelState* state) {
    TRITONSERVER_Message* message;
    TRITONSERVER_Error* err = TRITONBACKEND_ModelConfig(model, 1, &message);
    if (err) return err;
    const char* json;
    size_t size;
    err = TRITONSERVER_MessageSerializeToJson(message, &json, &size);
    if (!err) {
        state->model_config = strndup(json, size);
    }
    TRITONSERVER_MessageDelete(message);
    return err;
}

TRITONSERVER_Error* TRITONBACKEND_ModelInitialize(TRITONBACKEND_Model* model) {
    ModelState* state = calloc(1, sizeof *state);
    TRITONSERVER_Error* err = TRITONBACKEND_ModelSetState(model, state); /* ModelFinalize frees it */
    if (!err) err = read_config(model, state);
    if (err) return err;
    TRITONBACKEND_ArtifactType artifact_type;
    const char* location;
    uint64_t version;
    if ((err = TRITONBACKEND_ModelRepository(model, &artifact_type, &location))) return err;
    if ((err = TRITONBACKEND_ModelVersion(model, &version))) return err;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%llu", location, (unsigned long long)version);
    state->version_dir = strdup(dir);

    /* Names and types from the config, parsed by Python's json (no JSON parser in C here). */
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject* json = PyImport_ImportModule("json");
    PyObject* cfg = json ? PyObject_CallMethod(json, "loads", "s", state->model_config) : NULL;
    Py_XDECREF(json);
    if (!cfg) { err = python_error("reading config"); PyGILState_Release(gil); return err; }
    PyObject* mbs = PyDict_GetItemString(cfg, "max_batch_size");
    state->max_batch_size = mbs ? (int)PyLong_AsLong(mbs) : 0;
    const char* kinds[2] = {"input", "output"};
    for (int k = 0; k < 2 && !err; ++k) {
        PyObject* list = PyDict_GetItemString(cfg, kinds[k]);
        Py_ssize_t n = list ? PyList_Size(list) : 0;
        if (k == 0) {
            state->input_names = calloc((size_t)n + 1, sizeof *state->input_names);
        } else {
            state->output_names = calloc((size_t)n + 1, sizeof *state->output_names);
            state->output_types = calloc((size_t)n + 1, sizeof *state->output_types);
        }
        if (!state->input_names || (k == 1 && (!state->output_names || !state->output_types))) {
            err = error_new(ERROR_INTERNAL, "deploysnake backend: out of memory for the %ss", kinds[k]);
            break;
        }
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* tensor = PyList_GetItem(list, i);
            PyObject* name = PyDict_GetItemString(tensor, "name");
            PyObject* type = PyDict_GetItemString(tensor, "data_type");
            if (!name || !type) { err = error_new(ERROR_INVALID_ARG, "deploysnake backend: an %s without name or data_type", kinds[k]); break; }
            if (k == 0) {
                state->input_names[state->n_inputs++] = strdup(PyUnicode_AsUTF8(name));
            } else {
                state->output_types[state->n_outputs] = datatype_of(PyUnicode_AsUTF8(type));
                state->output_names[state->n_outputs++] = strdup(PyUnicode_AsUTF8(name));
            }
        }
    }
    Py_DECREF(cfg);
    PyGILState_Release(gil);
    return err;
}

TRITONSERVER_Error* TRITONBACKEND_ModelFinalize(TRITONBACKEND_Model* model) {
    void* vstate;
    TRITONSERVER_Error* err = TRITONBACKEND_ModelState(model, &vstate);
    if (err) return err;
    ModelState* state = vstate;
    if (!state) return NULL;
    for (int i = 0; i < state->n_inputs; ++i) free(state->input_names[i]);
    for (int i = 0; i < state->n_outputs; ++i) free(state->output_names[i]);
    free(state->input_names);
    free(state->output_names);
    free(state->output_types);
    free(state->model_config);
    free(state->version_dir);
    free(state);
    return NULL;
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceInitialize(TRITONBACKEND_ModelInstance* instance) {
    TRITONBACKEND_Model* model;
    void* vstate;
    TRITONSERVER_Error* err;
    if ((err = TRITONBACKEND_ModelInstanceModel(instance, &model))) return err;
    if ((err = TRITONBACKEND_ModelState(model, &vstate))) return err;
    TRITONSERVER_InstanceGroupKind kind;
    int32_t device_id = 0;
    if ((err = TRITONBACKEND_ModelInstanceKind(instance, &kind))) return err;
    if ((err = TRITONBACKEND_ModelInstanceDeviceId(instance, &device_id))) return err;
    char device[32];
    if (kind == KIND_GPU) snprintf(device, sizeof device, "cuda:%d", (int)device_id);
    else snprintf(device, sizeof device, "cpu");

    ModelState* state = vstate;
    PyGILState_STATE gil = PyGILState_Ensure();
    /* deploysnake_model.py sits in the version folder beside runtime.py and the artifact. */
    PyObject* runner = NULL;
    PyObject* sys_path = PySys_GetObject("path");
    PyObject* dir = PyUnicode_FromString(state->version_dir);
    if (sys_path && dir && PySequence_Contains(sys_path, dir) == 0) PyList_Insert(sys_path, 0, dir);
    Py_XDECREF(dir);
    PyObject* module = PyImport_ImportModule("deploysnake_model");
    if (module) {
        runner = PyObject_CallMethod(module, "TritonModel", "sss", state->model_config, state->version_dir, device);
        Py_DECREF(module);
    }
    if (!runner) err = python_error("loading the model");
    PyGILState_Release(gil);
    if (err) return err;
    InstanceState* istate = calloc(1, sizeof *istate);
    istate->model = state;
    istate->runner = runner;
    pthread_mutex_init(&istate->lock, NULL);
    pthread_cond_init(&istate->wake, NULL);
    istate->has_responder = pthread_create(&istate->responder, NULL, respond_loop, istate) == 0;
    if (!istate->has_responder)
        TRITONSERVER_LogMessage(LOG_ERROR, __FILE__, __LINE__, "deploysnake backend: no responder thread; the execute thread answers its batches");
    return TRITONBACKEND_ModelInstanceSetState(instance, istate);
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceFinalize(TRITONBACKEND_ModelInstance* instance) {
    void* vstate;
    TRITONSERVER_Error* err = TRITONBACKEND_ModelInstanceState(instance, &vstate);
    if (err) return err;
    InstanceState* istate = vstate;
    if (!istate) return NULL; /* Triton finalizes an instance whose initialize failed, too */
    if (istate->has_responder) { /* answer what is queued, then stop (the responder takes the GIL: not held here) */
        pthread_mutex_lock(&istate->lock);
        istate->stopping = true;
        pthread_cond_signal(&istate->wake);
        pthread_mutex_unlock(&istate->lock);
        pthread_join(istate->responder, NULL);
    }
    pthread_mutex_destroy(&istate->lock);
    pthread_cond_destroy(&istate->wake);
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_XDECREF(istate->runner);
    PyGILState_Release(gil);
    free(istate);
    return NULL;
}

/* Gather input `name` of every request into one bytearray; its shape is the first request's with
 * the batch dim summed (the dynamic batcher only joins requests whose other dims agree). */
static TRITONSERVER_Error* gather(TRITONBACKEND_Request** requests, uint32_t count, const char* name, int batched,
                                  PyObject** data, PyObject** shape, int64_t* rows) {
    uint64_t total = 0;
    int64_t dims[MAX_DIMS];
    uint32_t ndims = 0;
    TRITONSERVER_Error* err;
    for (uint32_t r = 0; r < count; ++r) {
        TRITONBACKEND_Input* input;
        const int64_t* s;
        uint32_t nd, buffers;
        uint64_t size;
        if ((err = TRITONBACKEND_RequestInput(requests[r], name, &input))) return err;
        if ((err = TRITONBACKEND_InputProperties(input, NULL, NULL, &s, &nd, &size, &buffers))) return err;
        if (nd > MAX_DIMS) return error_new(ERROR_UNSUPPORTED, "deploysnake backend: input %s has more than 16 dims", name);
        if (r == 0) { ndims = nd; memcpy(dims, s, nd * sizeof *s); }
        else if (batched && nd > 0) dims[0] += s[0];
        rows[r] = (batched && nd > 0) ? s[0] : 1;
        total += size;
    }
    PyObject* bytes = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!bytes) return python_error("allocating the batch");
    char* out = PyByteArray_AsString(bytes);
    for (uint32_t r = 0; r < count; ++r) {
        TRITONBACKEND_Input* input;
        uint32_t buffers;
        TRITONBACKEND_RequestInput(requests[r], name, &input);
        TRITONBACKEND_InputProperties(input, NULL, NULL, NULL, NULL, NULL, &buffers);
        for (uint32_t b = 0; b < buffers; ++b) {
            const void* buffer;
            uint64_t size;
            TRITONSERVER_MemoryType memory = MEMORY_CPU;
            int64_t memory_id = 0;
            if ((err = TRITONBACKEND_InputBuffer(input, b, &buffer, &size, &memory, &memory_id))) { Py_DECREF(bytes); return err; }
            if (memory != MEMORY_CPU && memory != 1 /* pinned */) {
                Py_DECREF(bytes);
                return error_new(ERROR_UNSUPPORTED, "deploysnake backend: input %s is in GPU memory; send it from CPU memory", name);
            }
            memcpy(out, buffer, size);
            out += size;
        }
    }
    PyObject* tuple = PyTuple_New(ndims);
    for (uint32_t d = 0; d < ndims; ++d) PyTuple_SET_ITEM(tuple, d, PyLong_FromLongLong(dims[d]));
    *data = bytes;
    *shape = tuple;
    return NULL;
}

/* Answer a computed batch: split each output by request rows into that request's response, send
 * it, report statistics, release the requests. Needs the GIL only to let go of the outputs. */
static void finish(Job* job) {
    ModelState* state = job->model;
    int batched = state->max_batch_size > 0;
    TRITONSERVER_Error* err = job->err;
    Py_ssize_t* offsets = job->offsets;
    for (uint32_t r = 0; r < job->count; ++r) {
        TRITONBACKEND_Response* response = NULL;
        TRITONSERVER_Error* rerr = err ? NULL : TRITONBACKEND_ResponseNew(&response, job->requests[r]);
        for (int o = 0; o < state->n_outputs && !err && !rerr; ++o) {
            Py_buffer* view = &job->views[o];
            int64_t shape[MAX_DIMS];
            for (int d = 0; d < view->ndim; ++d) shape[d] = view->shape[d];
            Py_ssize_t bytes = view->len;
            if (batched) {
                shape[0] = job->rows[r];
                bytes = view->len / job->total_rows * job->rows[r];
            }
            TRITONBACKEND_Output* output;
            void* buffer;
            TRITONSERVER_MemoryType memory = MEMORY_CPU;
            int64_t memory_id = 0;
            rerr = TRITONBACKEND_ResponseOutput(response, &output, state->output_names[o], state->output_types[o], shape, (uint32_t)view->ndim);
            if (!rerr) rerr = TRITONBACKEND_OutputBuffer(output, &buffer, (uint64_t)bytes, &memory, &memory_id);
            if (!rerr && memory != MEMORY_CPU && memory != 1) rerr = error_new(ERROR_UNSUPPORTED, "deploysnake backend: output %s was given GPU memory", state->output_names[o]);
            if (!rerr) memcpy(buffer, (char*)view->buf + offsets[o], (size_t)bytes);
            offsets[o] += bytes;
        }
        if (err || rerr) {
            /* an error for this request; a response that failed to start is created for it */
            TRITONSERVER_Error* send = err ? TRITONSERVER_ErrorNew(ERROR_INTERNAL, TRITONSERVER_ErrorMessage(err)) : rerr;
            if (!response) TRITONBACKEND_ResponseNew(&response, job->requests[r]);
            if (response) TRITONBACKEND_ResponseSend(response, RESPONSE_FINAL, send);
            TRITONSERVER_ErrorDelete(send);
        } else {
            TRITONBACKEND_ResponseSend(response, RESPONSE_FINAL, NULL);
        }
    }
    if (job->outputs) {
        PyGILState_STATE gil = PyGILState_Ensure();
        for (int o = 0; o < job->n_views; ++o) PyBuffer_Release(&job->views[o]);
        Py_DECREF(job->outputs);
        PyGILState_Release(gil);
    }

    uint64_t exec_end = now_ns();
    uint64_t compute_start = job->compute_start ? job->compute_start : exec_end;
    uint64_t compute_end = job->compute_start ? job->compute_end : exec_end;
    for (uint32_t r = 0; r < job->count; ++r) {
        TRITONBACKEND_ModelInstanceReportStatistics(job->instance, job->requests[r], err == NULL, job->exec_start, compute_start, compute_end, exec_end);
        TRITONBACKEND_RequestRelease(job->requests[r], RELEASE_ALL);
    }
    if (!err) TRITONBACKEND_ModelInstanceReportBatchStatistics(job->instance, (uint64_t)job->total_rows, job->exec_start, compute_start, compute_end, exec_end);
    if (err) {
        TRITONSERVER_LogMessage(LOG_ERROR, __FILE__, __LINE__, TRITONSERVER_ErrorMessage(err));
        TRITONSERVER_ErrorDelete(err);
    }
    free(job); /* its requests and rows with it */
}

static void* respond_loop(void* arg) {
    InstanceState* istate = arg;
    /* One Python thread state for the thread's life, so each batch's GIL take does not create one. */
    PyGILState_STATE outer = PyGILState_Ensure();
    PyThreadState* saved = PyEval_SaveThread();
    pthread_mutex_lock(&istate->lock);
    for (;;) {
        while (!istate->head && !istate->stopping) pthread_cond_wait(&istate->wake, &istate->lock);
        Job* job = istate->head;
        if (!job) break; /* stopping, and every queued batch answered */
        istate->head = job->next;
        if (!istate->head) istate->tail = NULL;
        pthread_mutex_unlock(&istate->lock);
        finish(job);
        pthread_mutex_lock(&istate->lock);
    }
    pthread_mutex_unlock(&istate->lock);
    PyEval_RestoreThread(saved);
    PyGILState_Release(outer);
    return NULL;
}

/* Hand a batch to the responder (or answer it here where the responder could not start). */
static void respond(InstanceState* istate, Job* job) {
    if (!istate->has_responder) {
        finish(job);
        return;
    }
    pthread_mutex_lock(&istate->lock);
    if (istate->tail) istate->tail->next = job;
    else istate->head = job;
    istate->tail = job;
    pthread_cond_signal(&istate->wake);
    pthread_mutex_unlock(&istate->lock);
}

/* Run requests [0, count) as one batch through the runner; the responder answers them. */
static void run_batch(TRITONBACKEND_ModelInstance* instance, InstanceState* istate, TRITONBACKEND_Request** requests, uint32_t count,
                      uint64_t exec_start) {
    ModelState* state = istate->model;
    int batched = state->max_batch_size > 0;
    /* One allocation: the job, then its copy of the request pointers, each request's rows, then
     * each output's view and offset. */
    size_t outputs_n = (size_t)state->n_outputs;
    Job* job = calloc(1, sizeof *job + count * (sizeof *job->requests + sizeof *job->rows) +
                             outputs_n * (sizeof *job->views + sizeof *job->offsets));
    if (!job) {
        /* no memory to queue the batch: answer every request with the error, here */
        TRITONSERVER_Error* oom = TRITONSERVER_ErrorNew(ERROR_INTERNAL, "deploysnake backend: out of memory queueing a batch");
        for (uint32_t r = 0; r < count; ++r) {
            TRITONBACKEND_Response* response = NULL;
            if (!TRITONBACKEND_ResponseNew(&response, requests[r]) && response) TRITONBACKEND_ResponseSend(response, RESPONSE_FINAL, TRITONSERVER_ErrorNew(ERROR_INTERNAL, TRITONSERVER_ErrorMessage(oom)));
            TRITONBACKEND_RequestRelease(requests[r], RELEASE_ALL);
        }
        TRITONSERVER_ErrorDelete(oom);
        return;
    }
    TRITONBACKEND_Request** copy = (TRITONBACKEND_Request**)(job + 1);
    int64_t* rows = (int64_t*)(copy + count);
    Py_buffer* views = (Py_buffer*)(rows + count);
    Py_ssize_t* offsets = (Py_ssize_t*)(views + outputs_n);
    memcpy(copy, requests, count * sizeof *copy);
    *job = (Job){.instance = instance, .model = state, .count = count, .requests = copy, .rows = rows, .views = views,
                 .offsets = offsets, .exec_start = exec_start};
    TRITONSERVER_Error* err = NULL;

    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject* datas = PyList_New(state->n_inputs);
    PyObject* shapes = PyList_New(state->n_inputs);
    for (int i = 0; i < state->n_inputs && !err; ++i) {
        PyObject *data = NULL, *shape = NULL;
        err = gather(requests, count, state->input_names[i], batched, &data, &shape, rows);
        if (!err) { PyList_SET_ITEM(datas, i, data); PyList_SET_ITEM(shapes, i, shape); }
        else { Py_INCREF(Py_None); Py_INCREF(Py_None); PyList_SET_ITEM(datas, i, Py_None); PyList_SET_ITEM(shapes, i, Py_None); }
    }
    for (uint32_t r = 0; r < count; ++r) job->total_rows += rows[r];
    PyObject* outputs = NULL;
    if (!err) {
        job->compute_start = now_ns();
        outputs = PyObject_CallMethod(istate->runner, "execute", "OO", datas, shapes);
        job->compute_end = now_ns();
        if (!outputs) err = python_error("execute");
        else if (!PyList_Check(outputs) || PyList_Size(outputs) != state->n_outputs) {
            err = error_new(ERROR_INTERNAL, "deploysnake backend: execute returned %s, not one array per output", Py_TYPE(outputs)->tp_name);
        }
    }
    Py_DECREF(datas);
    Py_DECREF(shapes);
    /* Views of the outputs for the responder, which copies from them without the GIL. */
    for (int o = 0; o < state->n_outputs && !err; ++o) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(outputs, o), &job->views[o], PyBUF_C_CONTIGUOUS | PyBUF_ND) != 0) {
            err = python_error("reading an output");
            break;
        }
        job->n_views++;
        Py_buffer* view = &job->views[o];
        if (view->ndim > MAX_DIMS || (batched && (view->ndim == 0 || view->shape[0] != job->total_rows))) {
            err = error_new(ERROR_INTERNAL, "deploysnake backend: output %s does not have one row per input row", state->output_names[o]);
        }
    }
    if (err) {
        for (int o = 0; o < job->n_views; ++o) PyBuffer_Release(&job->views[o]);
        job->n_views = 0;
        Py_XDECREF(outputs);
        outputs = NULL;
    }
    PyGILState_Release(gil);
    job->outputs = outputs;
    job->err = err;
    respond(istate, job);
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceExecute(TRITONBACKEND_ModelInstance* instance, TRITONBACKEND_Request** requests,
                                                       const uint32_t request_count) {
    uint64_t exec_start = now_ns();
    void* vstate;
    TRITONSERVER_Error* err = TRITONBACKEND_ModelInstanceState(instance, &vstate);
    if (err) return err;
    InstanceState* istate = vstate;
    if (istate->model->max_batch_size > 0) {
        run_batch(instance, istate, requests, request_count, exec_start);
    } else {
        for (uint32_t r = 0; r < request_count; ++r) run_batch(instance, istate, &requests[r], 1, r ? now_ns() : exec_start);
    }
    return NULL; /* every request is answered and released by finish(), here or on the responder */
}
