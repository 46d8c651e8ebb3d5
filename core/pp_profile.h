/* The profile builder: collects sample types, samples (with numeric and string labels),
 * locations, functions and mappings, deduplicating as it goes, and encodes the result as
 * a pprof profile.proto message, optionally gzip-compressed (what `go tool pprof` reads).
 *
 * A pp_profile owns copies of every string it is given. Not thread-safe; never use it
 * from a signal handler. Ids returned are 1-based, as profile.proto wants; 0 means
 * failure (out of memory). */
#ifndef PP_PROFILE_H
#define PP_PROFILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct pp_profile pp_profile;

typedef struct {
    uint64_t memory_start;
    uint64_t memory_limit;
    uint64_t file_offset;
    const char *filename;
    const char *build_id;       /* hex string, or NULL */
    int has_functions;
    int has_filenames;
    int has_line_numbers;
    int has_inline_frames;
} pp_mapping_info;

typedef struct {
    uint64_t function_id;
    int64_t line;
} pp_line;

/* A label: str set means a string label; otherwise num (with optional num_unit). */
typedef struct {
    const char *key;
    const char *str;
    int64_t num;
    const char *num_unit;
} pp_label;

pp_profile *pp_profile_new(void);
void pp_profile_free(pp_profile *p);

/* Index of s in the string table, adding it if needed; -1 on out of memory. */
int64_t pp_profile_string(pp_profile *p, const char *s);

/* Sample types in order; every sample then carries one value per type. */
int pp_profile_add_sample_type(pp_profile *p, const char *type, const char *unit);
size_t pp_profile_num_sample_types(const pp_profile *p);
int pp_profile_set_period(pp_profile *p, const char *type, const char *unit, int64_t period);
int pp_profile_set_default_sample_type(pp_profile *p, const char *type);
void pp_profile_set_time(pp_profile *p, int64_t time_nanos, int64_t duration_nanos);
int pp_profile_add_comment(pp_profile *p, const char *comment);

uint64_t pp_profile_add_mapping(pp_profile *p, const pp_mapping_info *m);

/* Deduplicated by all four fields; NULL strings are "". */
uint64_t pp_profile_function(pp_profile *p, const char *name, const char *system_name,
                             const char *filename, int64_t start_line);

/* lines: innermost inlined call first. Not deduplicated: callers key their own. */
uint64_t pp_profile_add_location(pp_profile *p, uint64_t mapping_id, uint64_t address,
                                 const pp_line *lines, size_t nlines);

/* Add values to the sample with these locations (leaf first) and labels, creating it if
 * it is new: identical stacks with identical labels merge. values has one entry per
 * sample type. 0 on success, -1 on out of memory. */
int pp_profile_add_sample(pp_profile *p, const uint64_t *locs, size_t nlocs,
                          const int64_t *values, const pp_label *labels, size_t nlabels);

size_t pp_profile_num_samples(const pp_profile *p);

/* Encode to profile.proto (gzip-compressed when gzip is non-zero). *out is malloc'ed and
 * owned by the caller. 0 on success, -1 on failure. */
int pp_profile_encode(pp_profile *p, int gzip, unsigned char **out, size_t *outlen);

/* gzip-compress a buffer (RFC 1952, as Go's pprof writes). *out is malloc'ed. */
int pp_gzip(const unsigned char *in, size_t inlen, unsigned char **out, size_t *outlen);

#endif
