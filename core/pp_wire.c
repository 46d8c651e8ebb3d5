#include "pp_wire.h"

#include <stdlib.h>
#include <string.h>

static int pack(const ProtobufCMessage *m, size_t max, unsigned char **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    unsigned char *buf;

    if (n > max || !(buf = malloc(PP_WIRE_FRAME + n))) {
        return -1;
    }
    buf[0] = (unsigned char)n;
    buf[1] = (unsigned char)(n >> 8);
    buf[2] = (unsigned char)(n >> 16);
    buf[3] = (unsigned char)(n >> 24);
    if (protobuf_c_message_pack(m, buf + PP_WIRE_FRAME) != n) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = PP_WIRE_FRAME + n;
    return 0;
}

/* A protobuf-c output that hands what it is given to a writer in chunks. */
typedef struct {
    ProtobufCBuffer base;
    unsigned char *chunk;
    size_t cap, len;
    int (*write)(void *baton, const void *data, size_t len);
    void *baton;
    int failed;
} stream_out;

static void stream_flush(stream_out *o)
{
    if (o->len && !o->failed && o->write(o->baton, o->chunk, o->len) != 0) {
        o->failed = 1;
    }
    o->len = 0;
}

static void stream_append(ProtobufCBuffer *pb, size_t len, const uint8_t *data)
{
    stream_out *o = (stream_out *)pb;

    if (o->failed) {
        return;
    }
    if (len >= o->cap) {
        /* A large bytes field (a trace's records) goes out as it is, uncopied. */
        stream_flush(o);
        if (!o->failed && o->write(o->baton, data, len) != 0) {
            o->failed = 1;
        }
        return;
    }
    if (o->cap - o->len < len) {
        stream_flush(o);
    }
    memcpy(o->chunk + o->len, data, len);
    o->len += len;
}

int pp_wire_write_reply(const pp_wire_reply *m,
                        int (*write)(void *baton, const void *data, size_t len), void *baton)
{
    unsigned char chunk[32768];
    size_t n = protobuf_c_message_get_packed_size(&m->base);
    stream_out o;

    if (n > PP_WIRE_MAX_REPLY) {
        return -2;
    }
    memset(&o, 0, sizeof(o));
    o.base.append = stream_append;
    o.chunk = chunk;
    o.cap = sizeof(chunk);
    o.write = write;
    o.baton = baton;
    chunk[0] = (unsigned char)n;
    chunk[1] = (unsigned char)(n >> 8);
    chunk[2] = (unsigned char)(n >> 16);
    chunk[3] = (unsigned char)(n >> 24);
    o.len = PP_WIRE_FRAME;
    if (protobuf_c_message_pack_to_buffer(&m->base, &o.base) != n) {
        o.failed = 1;
    }
    stream_flush(&o);
    return o.failed ? -1 : 0;
}

int pp_wire_pack_request(const pp_wire_request *m, unsigned char **out, size_t *len)
{
    return pack(&m->base, PP_WIRE_MAX_REQUEST, out, len);
}

int pp_wire_pack_reply(const pp_wire_reply *m, unsigned char **out, size_t *len)
{
    return pack(&m->base, PP_WIRE_MAX_REPLY, out, len);
}

long pp_wire_frame_length(const unsigned char head[PP_WIRE_FRAME], size_t max)
{
    uint32_t n = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 |
                 (uint32_t)head[3] << 24;

    return n > max ? -1 : (long)n;
}

/* protobuf-c has checked the encoding (lengths within the buffer, varints, wire types);
 * these are the bounds a reader of a decoded message relies on. */
static int str_ok(const char *s)
{
    return s && strnlen(s, PP_WIRE_MAX_STRING + 1) <= PP_WIRE_MAX_STRING;
}

static int stacks_ok(const pp_wire_reply *m)
{
    size_t i;

    if (m->n_stacks > PP_WIRE_MAX_STACKS) {
        return 0;
    }
    for (i = 0; i < m->n_stacks; i++) {
        if (m->stacks[i]->n_pcs > PP_WIRE_MAX_PCS ||
            m->stacks[i]->n_values > PP_WIRE_MAX_VALUES) {
            return 0;
        }
    }
    return 1;
}

static int threads_ok(const pp_wire_reply *m)
{
    size_t i;

    if (m->n_threads > PP_WIRE_MAX_THREADS) {
        return 0;
    }
    for (i = 0; i < m->n_threads; i++) {
        const pp_wire_thread *t = m->threads[i];
        if (t->n_pcs > PP_WIRE_MAX_PCS || !str_ok(t->name) || !str_ok(t->role) ||
            !str_ok(t->status) || !str_ok(t->client) || !str_ok(t->vhost) ||
            !str_ok(t->request) || !str_ok(t->handler)) {
            return 0;
        }
    }
    return 1;
}

static int trace_ok(const pp_wire_reply *m)
{
    size_t i;

    if (m->n_sections > PP_WIRE_MAX_SECTIONS || m->n_samples > PP_WIRE_MAX_SAMPLES) {
        return 0;
    }
    for (i = 0; i < m->n_samples; i++) {
        if (m->samples[i]->n_pcs > PP_WIRE_MAX_PCS) {
            return 0;
        }
    }
    return 1;
}

static int reply_ok(const pp_wire_reply *m)
{
    size_t i;

    if (!str_ok(m->error) || m->n_mappings > PP_WIRE_MAX_MAPPINGS ||
        m->n_counters > PP_WIRE_MAX_COUNTERS || m->n_tags > PP_WIRE_MAX_TAGS) {
        return 0;
    }
    for (i = 0; i < m->n_mappings; i++) {
        if (!str_ok(m->mappings[i]->path) || m->mappings[i]->start >= m->mappings[i]->end) {
            return 0;
        }
    }
    for (i = 0; i < m->n_counters; i++) {
        if (!str_ok(m->counters[i]->name)) {
            return 0;
        }
    }
    for (i = 0; i < m->n_tags; i++) {
        if (!str_ok(m->tags[i]->handler) || !str_ok(m->tags[i]->vhost)) {
            return 0;
        }
    }
    return stacks_ok(m) && threads_ok(m) && trace_ok(m);
}

pp_wire_request *pp_wire_unpack_request(const void *buf, size_t len)
{
    pp_wire_request *m;

    if (len > PP_WIRE_MAX_REQUEST) {
        return NULL;
    }
    m = ppwire__request__unpack(NULL, len, buf);
    if (m && !str_ok(m->kind)) {
        pp_wire_free_request(m);
        return NULL;
    }
    return m;
}

pp_wire_reply *pp_wire_unpack_reply(const void *buf, size_t len)
{
    pp_wire_reply *m;

    if (len > PP_WIRE_MAX_REPLY) {
        return NULL;
    }
    m = ppwire__reply__unpack(NULL, len, buf);
    if (m && !reply_ok(m)) {
        pp_wire_free_reply(m);
        return NULL;
    }
    return m;
}

pp_wire_reply *pp_wire_unpack_reply_frame(const void *buf, size_t len)
{
    long n;

    if (len < PP_WIRE_FRAME || (n = pp_wire_frame_length(buf, PP_WIRE_MAX_REPLY)) < 0 ||
        (size_t)n != len - PP_WIRE_FRAME) {
        return NULL;
    }
    return pp_wire_unpack_reply((const unsigned char *)buf + PP_WIRE_FRAME, (size_t)n);
}

void pp_wire_free_request(pp_wire_request *m)
{
    if (m) {
        ppwire__request__free_unpacked(m, NULL);
    }
}

void pp_wire_free_reply(pp_wire_reply *m)
{
    if (m) {
        ppwire__reply__free_unpacked(m, NULL);
    }
}

int64_t pp_wire_get_counter(const pp_wire_reply *m, const char *name, int64_t dflt)
{
    size_t i;

    for (i = 0; m && i < m->n_counters; i++) {
        if (strcmp(m->counters[i]->name, name) == 0) {
            return m->counters[i]->value;
        }
    }
    return dflt;
}

pp_maps *pp_wire_maps(const pp_wire_reply *m)
{
    pp_map_entry *e = calloc(m->n_mappings ? m->n_mappings : 1, sizeof(*e));
    pp_maps *maps;
    size_t i;

    if (!e) {
        return NULL;
    }
    for (i = 0; i < m->n_mappings; i++) {
        e[i].start = m->mappings[i]->start;
        e[i].end = m->mappings[i]->end;
        e[i].offset = m->mappings[i]->offset;
        e[i].path = m->mappings[i]->path;
    }
    maps = pp_maps_from_entries(e, m->n_mappings);
    free(e);
    return maps;
}
