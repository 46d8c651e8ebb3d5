#include "pp_wire.h"
#include "pp_varint.h"

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

/* A protobuf-c output that hands what it is given to a writer, gathered in iovecs: what
 * protobuf-c appends is copied into a chunk (it packs each sub-message into a temporary
 * buffer that it frees once appended; one larger than the chunk is written before the
 * append returns), and a trace section's records are pointed at where they are (in
 * place in the agent's rings and buffers, valid for the whole write). */
#define PP_WIRE_IOV 64

typedef struct {
    ProtobufCBuffer base;
    unsigned char *chunk;
    size_t cap, len;
    size_t total;               /* bytes given to write so far and pending */
    struct iovec iov[PP_WIRE_IOV];
    int niov;
    int (*write)(void *baton, struct iovec *iov, int n);
    void *baton;
    int failed;
} stream_out;

static void stream_flush(stream_out *o)
{
    if (o->niov && !o->failed && o->write(o->baton, o->iov, o->niov) != 0) {
        o->failed = 1;
    }
    o->niov = 0;
    o->len = 0;
}

/* data, valid until the next flush, as a piece of its own. */
static void stream_in_place(stream_out *o, const void *data, size_t len)
{
    if (o->failed || len == 0) {
        return;
    }
    if (o->niov == PP_WIRE_IOV) {
        stream_flush(o);
    }
    o->iov[o->niov].iov_base = (void *)(uintptr_t)data;     /* only read */
    o->iov[o->niov].iov_len = len;
    o->niov++;
    o->total += len;
}

static void stream_append(ProtobufCBuffer *pb, size_t len, const uint8_t *data)
{
    stream_out *o = (stream_out *)pb;
    struct iovec *last;

    if (o->failed || len == 0) {
        return;
    }
    if (len >= o->cap) {
        /* Larger than the chunk: written now, while it is valid. */
        stream_in_place(o, data, len);
        stream_flush(o);
        return;
    }
    if (o->cap - o->len < len) {
        stream_flush(o);
    }
    last = o->niov ? &o->iov[o->niov - 1] : NULL;
    if (!last || (unsigned char *)last->iov_base + last->iov_len != o->chunk + o->len) {
        /* not the chunk's tail: a piece of its own */
        if (o->niov == PP_WIRE_IOV) {
            stream_flush(o);
        }
        last = &o->iov[o->niov++];
        last->iov_base = o->chunk + o->len;
        last->iov_len = 0;
    }
    memcpy(o->chunk + o->len, data, len);
    o->len += len;
    o->total += len;
    last->iov_len += len;
}

/* A TraceSection's body as protobuf-c packs it (proto3: zero fields left out). */
static size_t section_body_len(const pp_wire_section *s)
{
    return (s->slot ? 1 + pp_varint_len(s->slot) : 0) + (s->tid ? 1 + pp_varint_len(s->tid) : 0) +
           (s->records.len ? 1 + pp_varint_len(s->records.len) + s->records.len : 0);
}

/* Reply field 9 (sections), each section: its head and numbers into the chunk, its
 * records in place. protobuf-c would pack every section into a buffer of its own
 * (malloc'ed and grown by doubling past 256 bytes) and then append it, which the chunk
 * copied again: the agent's memmove and malloc in perf of a traced server. */
static void stream_sections(stream_out *o, const pp_wire_reply *m)
{
    size_t i;

    for (i = 0; i < m->n_sections && !o->failed; i++) {
        const pp_wire_section *s = m->sections[i];
        unsigned char h[4 * 11];
        size_t n = 0;
        h[n++] = (9 << 3) | 2;
        n += pp_varint_put(h + n, section_body_len(s));
        if (s->slot) {
            h[n++] = (1 << 3) | 0;
            n += pp_varint_put(h + n, s->slot);
        }
        if (s->tid) {
            h[n++] = (2 << 3) | 0;
            n += pp_varint_put(h + n, s->tid);
        }
        if (s->records.len) {
            h[n++] = (3 << 3) | 2;
            n += pp_varint_put(h + n, s->records.len);
        }
        stream_append(&o->base, n, h);
        stream_in_place(o, s->records.data, s->records.len);
    }
}

/* Whether before, m's sections as stream_sections writes them and after make the n bytes
 * protobuf-c counts for m (else m is packed by protobuf-c whole). */
static int sections_fit(const pp_wire_reply *m, const pp_wire_reply *before,
                        const pp_wire_reply *after, size_t n)
{
    size_t i, len = protobuf_c_message_get_packed_size(&before->base) +
                    protobuf_c_message_get_packed_size(&after->base);

    for (i = 0; i < m->n_sections; i++) {
        size_t body = section_body_len(m->sections[i]);
        len += 1 + pp_varint_len(body) + body;
    }
    return len == n;
}

int pp_wire_write_reply(const pp_wire_reply *m,
                        int (*write)(void *baton, struct iovec *iov, int n), void *baton)
{
    unsigned char chunk[32768];
    unsigned char head[PP_WIRE_FRAME];
    size_t n = protobuf_c_message_get_packed_size(&m->base);
    pp_wire_reply before = *m, after = PPWIRE__REPLY__INIT;
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
    head[0] = (unsigned char)n;
    head[1] = (unsigned char)(n >> 8);
    head[2] = (unsigned char)(n >> 16);
    head[3] = (unsigned char)(n >> 24);
    stream_append(&o.base, sizeof(head), head);
    before.n_sections = 0;
    before.n_samples = 0;
    after.n_samples = m->n_samples;
    after.samples = m->samples;
    if (m->n_sections && !m->base.n_unknown_fields && sections_fit(m, &before, &after, n)) {
        /* Field by field in number order, as protobuf-c packs them: those before the
         * sections (1-8), the sections, then the samples (10): the same bytes. */
        protobuf_c_message_pack_to_buffer(&before.base, &o.base);
        stream_sections(&o, m);
        protobuf_c_message_pack_to_buffer(&after.base, &o.base);
    } else {
        protobuf_c_message_pack_to_buffer(&m->base, &o.base);
    }
    if (o.total != PP_WIRE_FRAME + n) {
        o.failed = 1;           /* not the frame it announced: never sent whole */
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
