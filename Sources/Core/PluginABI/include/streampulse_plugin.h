/*
 * StreamPulse plugin protocol — the C boundary between the host and a prober plugin.
 *
 * Only C types cross this boundary: integers, function pointers and byte buffers holding UTF-8 JSON
 * (or raw JPEG bytes for preview frames). Swift types never cross it, so a plugin keeps working when the
 * host's Swift code changes layout. The full contract is in docs/plugin-protocol.md.
 *
 * Versioning: SP_PLUGIN_ABI_VERSION is the major version of this protocol. It is written into every
 * plugin's ELF section ".streampulse_abi" (see streampulse_abi_marker) and is part of the entry point's
 * name, so the host refuses a plugin of another major version before running any of its code.
 * Additions that old hosts can ignore (new optional JSON fields, new function pointers appended to
 * sp_plugin_v1 and announced by struct_size) keep the major version.
 */
#ifndef STREAMPULSE_PLUGIN_H
#define STREAMPULSE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Major version of the plugin protocol implemented by this header. */
#define SP_PLUGIN_ABI_VERSION 1
/** Name of the ELF section holding the marker the host reads before dlopen. */
#define SP_PLUGIN_ABI_SECTION ".streampulse_abi"
/** Eight bytes starting the marker. */
#define SP_PLUGIN_ABI_MAGIC "SPPLUGIN"
/** Name of the entry point every version-1 plugin exports. */
#define SP_PLUGIN_ENTRY_V1 "streampulse_plugin_entry_v1"

/** The marker stored in SP_PLUGIN_ABI_SECTION: read from the file, never executed. */
typedef struct sp_abi_marker {
    char magic[8];          /* SP_PLUGIN_ABI_MAGIC, not NUL-terminated */
    uint32_t abi_version;   /* SP_PLUGIN_ABI_VERSION the plugin was built against */
    uint32_t marker_size;   /* sizeof(sp_abi_marker), for future growth */
} sp_abi_marker;

/** Log levels passed to sp_log_fn (same order as swift-log's Logger.Level). */
enum {
    SP_LOG_TRACE = 0, SP_LOG_DEBUG = 1, SP_LOG_INFO = 2, SP_LOG_NOTICE = 3,
    SP_LOG_WARNING = 4, SP_LOG_ERROR = 5, SP_LOG_CRITICAL = 6
};

/**
 * Completion of a probe or preview. Called exactly once per started call, on any thread.
 * `json` is a UTF-8 ProbeResult object owned by the plugin and valid only during the call.
 */
typedef void (*sp_done_fn)(void *user, const uint8_t *json, size_t length);

/**
 * One preview frame (a complete JPEG image). Called zero or more times before the completion, never
 * after it, never concurrently for one preview. `jpeg` is valid only during the call.
 */
typedef void (*sp_frame_fn)(void *user, const uint8_t *jpeg, size_t length);

/**
 * A log line from the plugin. `message` is UTF-8, NUL-terminated, valid only during the call, and has
 * already had credentials scrubbed by the plugin. May be called from any thread, concurrently.
 */
typedef void (*sp_log_fn)(void *user, int32_t level, const char *message);

/**
 * The table a version-1 plugin returns from its entry point. It lives for the life of the process.
 * Every function may be called from any thread; none of them blocks (probe and preview start work
 * and return at once).
 */
typedef struct sp_plugin_v1 {
    /** SP_PLUGIN_ABI_VERSION the plugin was built against. */
    uint32_t abi_version;
    /** sizeof(sp_plugin_v1) in the plugin's header; lets later minor versions append members. */
    uint32_t struct_size;
    /** Opaque plugin state passed back as the first argument of every function below. */
    void *context;

    /** The plugin's descriptor: NUL-terminated UTF-8 JSON, owned by the plugin, valid forever. */
    const char *(*describe)(void *context);

    /**
     * Installs the log sink. Called once by the host, before the first probe. Until then the plugin
     * discards its log lines.
     */
    void (*set_log)(void *context, void *user, sp_log_fn log);

    /**
     * Starts a probe described by a ProbeRequest JSON object (copied before returning). Returns a
     * non-zero call id usable with `cancel`. `done` is called exactly once, with a ProbeResult.
     */
    uint64_t (*probe)(void *context, const uint8_t *request, size_t length, void *user, sp_done_fn done);

    /**
     * Starts a live preview described by a PreviewRequest JSON object. Frames go to `frame`; the end
     * (duration reached, cancelled, or failed) goes to `done` exactly once, with a ProbeResult.
     */
    uint64_t (*preview)(void *context, const uint8_t *request, size_t length, void *user,
                        sp_frame_fn frame, sp_done_fn done);

    /**
     * Asks a running probe or preview to stop. Safe to call with an id that already finished.
     * The completion is still delivered (reason "cancelled" when it had not finished yet).
     */
    void (*cancel)(void *context, uint64_t call_id);
} sp_plugin_v1;

/** Signature of the entry point named SP_PLUGIN_ENTRY_V1. */
typedef const sp_plugin_v1 *(*sp_plugin_entry_v1_fn)(void);

/** This build's ABI marker (defined in marker.c, placed in SP_PLUGIN_ABI_SECTION). */
extern const sp_abi_marker streampulse_abi_marker;

/** Returns SP_PLUGIN_ABI_VERSION as compiled into the caller's copy of this target. */
static inline uint32_t sp_plugin_abi_version(void) { return SP_PLUGIN_ABI_VERSION; }

#ifdef __cplusplus
}
#endif

#endif /* STREAMPULSE_PLUGIN_H */
