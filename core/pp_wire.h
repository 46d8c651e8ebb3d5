/* The wire between processes: how raw profile data of one process (its maps, stacks,
 * threads, trace records) travels to another that merges it. The messages are described
 * in proto/pprof_wire.proto and encoded with protobuf-c; this is the one place that
 * frames, encodes, decodes and checks them.
 *
 * A frame is a little-endian u32 length, then that many bytes of one message. A reader
 * reads the PP_WIRE_FRAME bytes of the head, asks pp_wire_frame_length whether the length
 * is acceptable (before allocating anything), reads exactly that many bytes, and unpacks
 * them. A reply comes from another process and is untrusted: pp_wire_unpack_reply checks
 * every count and length against the bounds below, so that whoever reads a decoded reply
 * may size its arrays by them. What the bounds do not say (which counter names a kind
 * sends, what a stack's key means) each kind says in its own file.
 *
 * The types are protobuf-c's, named here once. Decoded messages are malloc'ed by
 * protobuf-c and freed with pp_wire_free_*; nothing here keeps state. Thread-safe; not
 * async-signal-safe (malloc). Internal to mod_pprof and libpprofcore's tests: the header
 * is not installed (it includes the generated pprof_wire.pb-c.h). */
#ifndef PP_WIRE_H
#define PP_WIRE_H

#include <stddef.h>
#include <sys/uio.h>
#include <stdint.h>

#include "pprof_wire.pb-c.h"
#include "pp_maps.h"

typedef Ppwire__Request pp_wire_request;
typedef Ppwire__Reply pp_wire_reply;
typedef Ppwire__Mapping pp_wire_mapping;
typedef Ppwire__Counter pp_wire_counter;
typedef Ppwire__Stack pp_wire_stack;
typedef Ppwire__RequestTag pp_wire_tag;
typedef Ppwire__Thread pp_wire_thread;
typedef Ppwire__TraceSection pp_wire_section;
typedef Ppwire__TraceSample pp_wire_sample;

#define PP_WIRE_START PPWIRE__OP__START
#define PP_WIRE_TAKE PPWIRE__OP__TAKE
#define PP_WIRE_STOP PPWIRE__OP__STOP
#define PP_WIRE_QUIT PPWIRE__OP__QUIT
#define PP_WIRE_OK PPWIRE__STATUS__OK
#define PP_WIRE_NONE PPWIRE__STATUS__NONE
#define PP_WIRE_ERROR PPWIRE__STATUS__ERROR

/* The frame head's size. */
#define PP_WIRE_FRAME 4

/* Bounds of a whole message, frame head excluded. */
#define PP_WIRE_MAX_REQUEST 4096u
#define PP_WIRE_MAX_REPLY (256u * 1024 * 1024)

/* Bounds that pp_wire_unpack_reply (and _request) enforce on what they return. */
#define PP_WIRE_MAX_STRING 4096u        /* bytes of any string (paths, names, texts) */
#define PP_WIRE_MAX_PCS 1024u           /* PCs of one stack, thread or sample */
#define PP_WIRE_MAX_VALUES 8u           /* values of one stack */
#define PP_WIRE_MAX_MAPPINGS 65536u
#define PP_WIRE_MAX_COUNTERS 256u
#define PP_WIRE_MAX_STACKS (1u << 20)
#define PP_WIRE_MAX_TAGS 65536u
#define PP_WIRE_MAX_THREADS 65536u
#define PP_WIRE_MAX_SECTIONS 65536u
#define PP_WIRE_MAX_SAMPLES (1u << 22)

/* Encode m with its frame head into *out (malloc'ed, *len bytes with the head). 0, or -1
 * when out of memory or larger than PP_WIRE_MAX_REQUEST / PP_WIRE_MAX_REPLY. */
int pp_wire_pack_request(const pp_wire_request *m, unsigned char **out, size_t *len);
int pp_wire_pack_reply(const pp_wire_reply *m, unsigned char **out, size_t *len);

/* Encode reply m as the same frame, handed to write (0: all n pieces written, else
 * failed; it may change iov) as it is encoded, without the whole frame in memory: a
 * trace's take is megabytes of records, which pp_wire_pack_reply would copy once more.
 * The pieces are gathered, up to 64 a call: a trace section's records are given where
 * they are, the rest is copied into a chunk of 32 KiB. 0; -1 when a write
 * failed (what was written is a truncated frame); -2 when m is larger than
 * PP_WIRE_MAX_REPLY (nothing written). Uses 32 KiB of the caller's stack. */
int pp_wire_write_reply(const pp_wire_reply *m,
                        int (*write)(void *baton, struct iovec *iov, int n), void *baton);

/* The length a frame head announces, or -1 when it is larger than max. */
long pp_wire_frame_length(const unsigned char head[PP_WIRE_FRAME], size_t max);

/* Decode one message (without its frame head). NULL when the bytes are no such message,
 * or when anything in it exceeds a bound above; a mapping must also have start < end.
 * Strings are NUL-terminated. */
pp_wire_request *pp_wire_unpack_request(const void *buf, size_t len);
pp_wire_reply *pp_wire_unpack_reply(const void *buf, size_t len);

/* Decode a whole frame (head and message, exactly len bytes): NULL unless the head
 * announces exactly the bytes that follow and they unpack as above. */
pp_wire_reply *pp_wire_unpack_reply_frame(const void *buf, size_t len);

void pp_wire_free_request(pp_wire_request *m);
void pp_wire_free_reply(pp_wire_reply *m);

/* The counter called name in m, or dflt when m has none. */
int64_t pp_wire_get_counter(const pp_wire_reply *m, const char *name, int64_t dflt);

/* m's mappings as a pp_maps (sorted by start, for pp_maps_find), or NULL when out of
 * memory. The caller frees it with pp_maps_free. */
pp_maps *pp_wire_maps(const pp_wire_reply *m);

#endif
