/* libFuzzer target: the agent<->collector wire (core/pp_wire.c), whose replies come from
 * another process. The first byte says how the rest is read: as a reply's bytes, as a
 * whole frame, or as a request. What unpacks must keep every bound pp_wire.h promises
 * (its readers size arrays by them), its mappings must become a pp_maps, and it must pack
 * and unpack again. */
#include "pp_wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void bound(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "an unpacked reply breaks its bound: %s\n", what);
        abort();
    }
}

static void string_ok(const char *s)
{
    bound(!s || strlen(s) < PP_WIRE_MAX_STRING + 1, "string length");
}

static void check_reply(const pp_wire_reply *m)
{
    size_t i;
    pp_maps *maps;

    string_ok(m->error);
    bound(m->n_mappings <= PP_WIRE_MAX_MAPPINGS, "mappings");
    for (i = 0; i < m->n_mappings; i++) {
        bound(m->mappings[i]->start < m->mappings[i]->end, "mapping start < end");
        string_ok(m->mappings[i]->path);
    }
    bound(m->n_counters <= PP_WIRE_MAX_COUNTERS, "counters");
    for (i = 0; i < m->n_counters; i++) {
        string_ok(m->counters[i]->name);
    }
    bound(m->n_stacks <= PP_WIRE_MAX_STACKS, "stacks");
    for (i = 0; i < m->n_stacks; i++) {
        bound(m->stacks[i]->n_pcs <= PP_WIRE_MAX_PCS, "a stack's PCs");
        bound(m->stacks[i]->n_values <= PP_WIRE_MAX_VALUES, "a stack's values");
    }
    bound(m->n_tags <= PP_WIRE_MAX_TAGS, "tags");
    for (i = 0; i < m->n_tags; i++) {
        string_ok(m->tags[i]->handler);
        string_ok(m->tags[i]->vhost);
    }
    bound(m->n_threads <= PP_WIRE_MAX_THREADS, "threads");
    for (i = 0; i < m->n_threads; i++) {
        const pp_wire_thread *t = m->threads[i];
        bound(t->n_pcs <= PP_WIRE_MAX_PCS, "a thread's PCs");
        string_ok(t->name);
        string_ok(t->role);
        string_ok(t->status);
        string_ok(t->client);
        string_ok(t->vhost);
        string_ok(t->request);
        string_ok(t->handler);
    }
    bound(m->n_sections <= PP_WIRE_MAX_SECTIONS, "sections");
    (void)pp_wire_get_counter(m, "dropped", 0);
    if ((maps = pp_wire_maps(m))) {
        for (i = 0; i < pp_maps_count(maps); i++) {
            (void)pp_maps_find(maps, pp_maps_get(maps, i)->start);
        }
        pp_maps_free(maps);
    }
}

/* Whether m or a message in it kept fields it does not know. protobuf-c keeps them and
 * packs them again as they came, and may then refuse its own bytes (a field numbered 0,
 * read from an over-long tag, comes back in its short form, which it refuses): a message
 * with any is not required to pack and unpack again. */
static int unknown_fields(const pp_wire_reply *m)
{
    size_t i, n = m->base.n_unknown_fields;

#define PP_UNKNOWN(arr, cnt) \
    for (i = 0; i < m->cnt; i++) { \
        n += m->arr[i]->base.n_unknown_fields; \
    }
    PP_UNKNOWN(mappings, n_mappings)
    PP_UNKNOWN(counters, n_counters)
    PP_UNKNOWN(stacks, n_stacks)
    PP_UNKNOWN(tags, n_tags)
    PP_UNKNOWN(threads, n_threads)
    PP_UNKNOWN(sections, n_sections)
    PP_UNKNOWN(samples, n_samples)
#undef PP_UNKNOWN
    return n > 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_wire_reply *m = NULL, *again;
    pp_wire_request *q;
    unsigned char *out = NULL;
    size_t len = 0;

    if (size < 1) {
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        m = pp_wire_unpack_reply(data + 1, size - 1);
        break;
    case 1:
        if (size - 1 >= PP_WIRE_FRAME) {
            (void)pp_wire_frame_length(data + 1, PP_WIRE_MAX_REPLY);
        }
        m = pp_wire_unpack_reply_frame(data + 1, size - 1);
        break;
    default:
        if ((q = pp_wire_unpack_request(data + 1, size - 1))) {
            if (pp_wire_pack_request(q, &out, &len) == 0) {
                free(out);
            }
            pp_wire_free_request(q);
        }
        return 0;
    }
    if (!m) {
        return 0;
    }
    check_reply(m);
    if (pp_wire_pack_reply(m, &out, &len) == 0) {
        again = pp_wire_unpack_reply_frame(out, len);
        if (!again && !unknown_fields(m)) {
            fprintf(stderr, "a reply that unpacked does not unpack once packed again\n");
            abort();
        }
        if (again) {
            check_reply(again);
            pp_wire_free_reply(again);
        }
        free(out);
    }
    pp_wire_free_reply(m);
    return 0;
}
