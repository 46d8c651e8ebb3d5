#include "pp_profile.h"
#include "pp_hash.h"
#include "profile.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef Perftools__Profiles__ValueType pb_valuetype;
typedef Perftools__Profiles__Sample pb_sample;
typedef Perftools__Profiles__Label pb_label;
typedef Perftools__Profiles__Mapping pb_mapping;
typedef Perftools__Profiles__Location pb_location;
typedef Perftools__Profiles__Line pb_line;
typedef Perftools__Profiles__Function pb_function;

typedef struct {
    int64_t type, unit;
} vt;

typedef struct {
    uint64_t *locs;
    size_t nlocs;
    int64_t *values;
    pb_label *labels;
    size_t nlabels;
} sample;

typedef struct {
    uint64_t mapping_id, address;
    pp_line *lines;
    size_t nlines;
} location;

typedef struct {
    int64_t name, system_name, filename, start_line;
} function;

typedef struct {
    uint64_t start, limit, offset;
    int64_t filename, build_id;
    int flags[4];
} mapping;

/* A growable array of fixed-size elements. */
typedef struct {
    void *v;
    size_t n, cap, elem;
} vec;

struct pp_profile {
    vec strings;                /* char * */
    pp_hash *string_ix;
    vec types;                  /* vt */
    vt period_type;
    int64_t period;
    int64_t default_type;
    int64_t time_nanos, duration_nanos;
    vec comments;               /* int64_t */
    vec mappings;               /* mapping */
    vec functions;              /* function */
    pp_hash *function_ix;
    vec locations;              /* location */
    vec samples;                /* sample */
    pp_hash *sample_ix;
};

static void *vec_push(vec *a)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 16;
        void *nv = realloc(a->v, ncap * a->elem);
        if (!nv) {
            return NULL;
        }
        a->v = nv;
        a->cap = ncap;
    }
    return (char *)a->v + a->elem * a->n++;
}

#define VEC_AT(a, T, i) (((T *)(a).v)[i])

pp_profile *pp_profile_new(void)
{
    pp_profile *p = calloc(1, sizeof(*p));

    if (!p) {
        return NULL;
    }
    p->strings.elem = sizeof(char *);
    p->types.elem = sizeof(vt);
    p->comments.elem = sizeof(int64_t);
    p->mappings.elem = sizeof(mapping);
    p->functions.elem = sizeof(function);
    p->locations.elem = sizeof(location);
    p->samples.elem = sizeof(sample);
    p->string_ix = pp_hash_new();
    p->function_ix = pp_hash_new();
    p->sample_ix = pp_hash_new();
    /* profile.proto requires string_table[0] == "". */
    if (!p->string_ix || !p->function_ix || !p->sample_ix || pp_profile_string(p, "") != 0) {
        pp_profile_free(p);
        return NULL;
    }
    return p;
}

void pp_profile_free(pp_profile *p)
{
    size_t i;

    if (!p) {
        return;
    }
    for (i = 0; i < p->strings.n; i++) {
        free(VEC_AT(p->strings, char *, i));
    }
    for (i = 0; i < p->locations.n; i++) {
        free(VEC_AT(p->locations, location, i).lines);
    }
    for (i = 0; i < p->samples.n; i++) {
        sample *s = &VEC_AT(p->samples, sample, i);
        free(s->locs);
        free(s->values);
        free(s->labels);
    }
    free(p->strings.v);
    free(p->types.v);
    free(p->comments.v);
    free(p->mappings.v);
    free(p->functions.v);
    free(p->locations.v);
    free(p->samples.v);
    pp_hash_free(p->string_ix);
    pp_hash_free(p->function_ix);
    pp_hash_free(p->sample_ix);
    free(p);
}

int64_t pp_profile_string(pp_profile *p, const char *s)
{
    size_t len;
    uint64_t ix;
    char *copy, **slot;
    int rc;

    if (!s) {
        s = "";
    }
    len = strlen(s);
    ix = p->strings.n;
    rc = pp_hash_intern(p->string_ix, s, len, &ix);
    if (rc == 1) {
        return (int64_t)ix;
    }
    if (rc < 0 || !(copy = strdup(s)) || !(slot = vec_push(&p->strings))) {
        /* The hash now names an index we failed to fill; the profile is unusable. */
        return -1;
    }
    *slot = copy;
    return (int64_t)ix;
}

static int vt_of(pp_profile *p, const char *type, const char *unit, vt *out)
{
    out->type = pp_profile_string(p, type);
    out->unit = pp_profile_string(p, unit);
    return (out->type < 0 || out->unit < 0) ? -1 : 0;
}

int pp_profile_add_sample_type(pp_profile *p, const char *type, const char *unit)
{
    vt v, *slot;

    if (vt_of(p, type, unit, &v) != 0 || !(slot = vec_push(&p->types))) {
        return -1;
    }
    *slot = v;
    return 0;
}

size_t pp_profile_num_sample_types(const pp_profile *p)
{
    return p->types.n;
}

int pp_profile_set_period(pp_profile *p, const char *type, const char *unit, int64_t period)
{
    p->period = period;
    return vt_of(p, type, unit, &p->period_type);
}

int pp_profile_set_default_sample_type(pp_profile *p, const char *type)
{
    p->default_type = pp_profile_string(p, type);
    return p->default_type < 0 ? -1 : 0;
}

void pp_profile_set_time(pp_profile *p, int64_t time_nanos, int64_t duration_nanos)
{
    p->time_nanos = time_nanos;
    p->duration_nanos = duration_nanos;
}

int pp_profile_add_comment(pp_profile *p, const char *comment)
{
    int64_t ix = pp_profile_string(p, comment), *slot;

    if (ix < 0 || !(slot = vec_push(&p->comments))) {
        return -1;
    }
    *slot = ix;
    return 0;
}

uint64_t pp_profile_add_mapping(pp_profile *p, const pp_mapping_info *m)
{
    mapping mp, *slot;

    memset(&mp, 0, sizeof(mp));
    mp.start = m->memory_start;
    mp.limit = m->memory_limit;
    mp.offset = m->file_offset;
    mp.filename = pp_profile_string(p, m->filename);
    mp.build_id = pp_profile_string(p, m->build_id);
    mp.flags[0] = m->has_functions;
    mp.flags[1] = m->has_filenames;
    mp.flags[2] = m->has_line_numbers;
    mp.flags[3] = m->has_inline_frames;
    if (mp.filename < 0 || mp.build_id < 0 || !(slot = vec_push(&p->mappings))) {
        return 0;
    }
    *slot = mp;
    return p->mappings.n;
}

uint64_t pp_profile_function(pp_profile *p, const char *name, const char *system_name,
                             const char *filename, int64_t start_line)
{
    function f, *slot;
    uint64_t id = p->functions.n + 1;
    int rc;

    f.name = pp_profile_string(p, name);
    f.system_name = pp_profile_string(p, system_name ? system_name : name);
    f.filename = pp_profile_string(p, filename);
    f.start_line = start_line;
    if (f.name < 0 || f.system_name < 0 || f.filename < 0) {
        return 0;
    }
    rc = pp_hash_intern(p->function_ix, &f, sizeof(f), &id);
    if (rc == 1) {
        return id;
    }
    if (rc < 0 || !(slot = vec_push(&p->functions))) {
        return 0;
    }
    *slot = f;
    return id;
}

uint64_t pp_profile_add_location(pp_profile *p, uint64_t mapping_id, uint64_t address,
                                 const pp_line *lines, size_t nlines)
{
    location l, *slot;

    l.mapping_id = mapping_id;
    l.address = address;
    l.nlines = nlines;
    l.lines = NULL;
    if (nlines) {
        if (!(l.lines = malloc(nlines * sizeof(pp_line)))) {
            return 0;
        }
        memcpy(l.lines, lines, nlines * sizeof(pp_line));
    }
    if (!(slot = vec_push(&p->locations))) {
        free(l.lines);
        return 0;
    }
    *slot = l;
    return p->locations.n;
}

int pp_profile_add_sample(pp_profile *p, const uint64_t *locs, size_t nlocs,
                          const int64_t *values, const pp_label *labels, size_t nlabels)
{
    size_t ntypes = p->types.n, i, keylen;
    pb_label *lb = NULL;
    unsigned char *key = NULL;
    uint64_t ix = p->samples.n;
    sample *s;
    int rc = -1, found;

    if (nlabels && !(lb = calloc(nlabels, sizeof(pb_label)))) {
        goto done;
    }
    for (i = 0; i < nlabels; i++) {
        perftools__profiles__label__init(&lb[i]);
        lb[i].key = pp_profile_string(p, labels[i].key);
        if (labels[i].str) {
            lb[i].str = pp_profile_string(p, labels[i].str);
        } else {
            lb[i].num = labels[i].num;
            lb[i].num_unit = labels[i].num_unit ? pp_profile_string(p, labels[i].num_unit) : 0;
        }
        if (lb[i].key < 0 || lb[i].str < 0 || lb[i].num_unit < 0) {
            goto done;
        }
    }
    /* The merge key: the stack, then each label's four numbers. */
    keylen = (nlocs + 1) * sizeof(uint64_t) + nlabels * 4 * sizeof(int64_t);
    if (!(key = malloc(keylen))) {
        goto done;
    }
    memcpy(key, &nlocs, sizeof(uint64_t));
    memcpy(key + sizeof(uint64_t), locs, nlocs * sizeof(uint64_t));
    for (i = 0; i < nlabels; i++) {
        int64_t four[4] = { lb[i].key, lb[i].str, lb[i].num, lb[i].num_unit };
        memcpy(key + (nlocs + 1) * sizeof(uint64_t) + i * sizeof(four), four, sizeof(four));
    }
    found = pp_hash_intern(p->sample_ix, key, keylen, &ix);
    if (found < 0) {
        goto done;
    }
    if (found) {
        s = &VEC_AT(p->samples, sample, ix);
        for (i = 0; i < ntypes; i++) {
            s->values[i] += values[i];
        }
        rc = 0;
        goto done;
    }
    if (!(s = vec_push(&p->samples))) {
        goto done;
    }
    memset(s, 0, sizeof(*s));
    s->locs = malloc((nlocs ? nlocs : 1) * sizeof(uint64_t));
    s->values = malloc((ntypes ? ntypes : 1) * sizeof(int64_t));
    if (!s->locs || !s->values) {
        goto done;
    }
    memcpy(s->locs, locs, nlocs * sizeof(uint64_t));
    memcpy(s->values, values, ntypes * sizeof(int64_t));
    s->nlocs = nlocs;
    s->labels = lb;
    s->nlabels = nlabels;
    lb = NULL;
    rc = 0;
done:
    free(lb);
    free(key);
    return rc;
}

size_t pp_profile_num_samples(const pp_profile *p)
{
    return p->samples.n;
}

int pp_gzip(const unsigned char *in, size_t inlen, unsigned char **out, size_t *outlen)
{
    z_stream z;
    unsigned char *buf;
    size_t cap;
    int rc;

    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip wrapper, not zlib's. */
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return -1;
    }
    cap = deflateBound(&z, inlen) + 32;
    if (!(buf = malloc(cap))) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    rc = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = cap - z.avail_out;
    return 0;
}

int pp_profile_encode(pp_profile *p, int gzip, unsigned char **out, size_t *outlen)
{
    Perftools__Profiles__Profile pb = PERFTOOLS__PROFILES__PROFILE__INIT;
    pb_valuetype *types = NULL, period_type = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
    pb_valuetype **typeptrs = NULL;
    pb_sample *samples = NULL, **sampleptrs = NULL;
    pb_label **labelptrs = NULL;
    pb_mapping *mappings = NULL, **mappingptrs = NULL;
    pb_location *locations = NULL, **locationptrs = NULL;
    pb_line *lines = NULL, **lineptrs = NULL;
    pb_function *functions = NULL, **functionptrs = NULL;
    unsigned char *raw = NULL;
    size_t i, j, nlabels = 0, nlines = 0, li = 0, ln = 0, rawlen;
    int rc = -1;

    for (i = 0; i < p->samples.n; i++) {
        nlabels += VEC_AT(p->samples, sample, i).nlabels;
    }
    for (i = 0; i < p->locations.n; i++) {
        nlines += VEC_AT(p->locations, location, i).nlines;
    }
    /* calloc(0) may return NULL; ask for at least one element each. */
#define ALLOC(ptr, n) if (!((ptr) = calloc((n) ? (n) : 1, sizeof(*(ptr))))) goto done
    ALLOC(types, p->types.n);
    ALLOC(typeptrs, p->types.n);
    ALLOC(samples, p->samples.n);
    ALLOC(sampleptrs, p->samples.n);
    ALLOC(labelptrs, nlabels);
    ALLOC(mappings, p->mappings.n);
    ALLOC(mappingptrs, p->mappings.n);
    ALLOC(locations, p->locations.n);
    ALLOC(locationptrs, p->locations.n);
    ALLOC(lines, nlines);
    ALLOC(lineptrs, nlines);
    ALLOC(functions, p->functions.n);
    ALLOC(functionptrs, p->functions.n);
#undef ALLOC

    for (i = 0; i < p->types.n; i++) {
        perftools__profiles__value_type__init(&types[i]);
        types[i].type = VEC_AT(p->types, vt, i).type;
        types[i].unit = VEC_AT(p->types, vt, i).unit;
        typeptrs[i] = &types[i];
    }
    pb.n_sample_type = p->types.n;
    pb.sample_type = typeptrs;

    for (i = 0; i < p->samples.n; i++) {
        sample *s = &VEC_AT(p->samples, sample, i);
        perftools__profiles__sample__init(&samples[i]);
        samples[i].n_location_id = s->nlocs;
        samples[i].location_id = s->locs;
        samples[i].n_value = p->types.n;
        samples[i].value = s->values;
        samples[i].n_label = s->nlabels;
        samples[i].label = &labelptrs[li];
        for (j = 0; j < s->nlabels; j++) {
            labelptrs[li++] = &s->labels[j];
        }
        sampleptrs[i] = &samples[i];
    }
    pb.n_sample = p->samples.n;
    pb.sample = sampleptrs;

    for (i = 0; i < p->mappings.n; i++) {
        mapping *m = &VEC_AT(p->mappings, mapping, i);
        perftools__profiles__mapping__init(&mappings[i]);
        mappings[i].id = i + 1;
        mappings[i].memory_start = m->start;
        mappings[i].memory_limit = m->limit;
        mappings[i].file_offset = m->offset;
        mappings[i].filename = m->filename;
        mappings[i].build_id = m->build_id;
        mappings[i].has_functions = m->flags[0];
        mappings[i].has_filenames = m->flags[1];
        mappings[i].has_line_numbers = m->flags[2];
        mappings[i].has_inline_frames = m->flags[3];
        mappingptrs[i] = &mappings[i];
    }
    pb.n_mapping = p->mappings.n;
    pb.mapping = mappingptrs;

    for (i = 0; i < p->locations.n; i++) {
        location *l = &VEC_AT(p->locations, location, i);
        perftools__profiles__location__init(&locations[i]);
        locations[i].id = i + 1;
        locations[i].mapping_id = l->mapping_id;
        locations[i].address = l->address;
        locations[i].n_line = l->nlines;
        locations[i].line = &lineptrs[ln];
        for (j = 0; j < l->nlines; j++) {
            perftools__profiles__line__init(&lines[ln]);
            lines[ln].function_id = l->lines[j].function_id;
            lines[ln].line = l->lines[j].line;
            lineptrs[ln] = &lines[ln];
            ln++;
        }
        locationptrs[i] = &locations[i];
    }
    pb.n_location = p->locations.n;
    pb.location = locationptrs;

    for (i = 0; i < p->functions.n; i++) {
        function *f = &VEC_AT(p->functions, function, i);
        perftools__profiles__function__init(&functions[i]);
        functions[i].id = i + 1;
        functions[i].name = f->name;
        functions[i].system_name = f->system_name;
        functions[i].filename = f->filename;
        functions[i].start_line = f->start_line;
        functionptrs[i] = &functions[i];
    }
    pb.n_function = p->functions.n;
    pb.function = functionptrs;

    pb.n_string_table = p->strings.n;
    pb.string_table = (char **)p->strings.v;
    pb.time_nanos = p->time_nanos;
    pb.duration_nanos = p->duration_nanos;
    if (p->period_type.type || p->period_type.unit) {
        period_type.type = p->period_type.type;
        period_type.unit = p->period_type.unit;
        pb.period_type = &period_type;
    }
    pb.period = p->period;
    pb.n_comment = p->comments.n;
    pb.comment = (int64_t *)p->comments.v;
    pb.default_sample_type = p->default_type;

    rawlen = perftools__profiles__profile__get_packed_size(&pb);
    if (!(raw = malloc(rawlen ? rawlen : 1))) {
        goto done;
    }
    perftools__profiles__profile__pack(&pb, raw);
    if (gzip) {
        rc = pp_gzip(raw, rawlen, out, outlen);
    } else {
        *out = raw;
        *outlen = rawlen;
        raw = NULL;
        rc = 0;
    }
done:
    free(raw);
    free(types);
    free(typeptrs);
    free(samples);
    free(sampleptrs);
    free(labelptrs);
    free(mappings);
    free(mappingptrs);
    free(locations);
    free(locationptrs);
    free(lines);
    free(lineptrs);
    free(functions);
    free(functionptrs);
    return rc;
}
