/* Hand-over: what a child that ends during a window holds still reaches the collector.
 * Children end all the time in production (MaxConnectionsPerChild, prefork's spare
 * trimming, event's and worker's idle-child reaping): without this, a CPU profile of a
 * recycling server holds a fraction of the CPU its requests burned.
 *
 * One mechanism for every kind that hands over (pprof_kind.h): the collector opens a
 * hand-over for its window, a directory next to the children's sockets
 *     "<ipc dir>/<kind>-<gen>-<stamp>-<collector pid>.hand"
 * (gen and stamp: a window kind's generation and deadline, as its children know them; a
 * snapshot kind's delta has gen 0 and its start as stamp). A child that ends while it is
 * in that window makes its kind's take() reply as usual, and pprof_agent writes the reply
 * (a pp_wire frame, at most PPROF_HANDOVER_MAX bytes) to "<dir>/<child pid>" (written
 * aside, then renamed: a reader sees it whole). The collector reads such a file exactly
 * like the reply of a live child (pprof_collect), and removes it.
 *
 * Ownership: the directory is the window's. A later window has another name, so it never
 * reads a stale file; the collector seals the directory when its window closes (renamed
 * to ".closed": no child finds it any more, and a reply written meanwhile is in it), reads
 * what is left and removes it. Directories whose collector died are removed by the next
 * collector of their kind and when the server starts or restarts (an old generation's
 * collector that still runs keeps its own).
 *
 * Processes: the collector's functions run on the request thread of the collecting child,
 * the agent's in a child that ends (its agent thread joined), the sweep in the parent.
 * Files are the server User's, mode 0600, in the ipc directory (mode 0700). */
#ifndef PPROF_HANDOVER_H
#define PPROF_HANDOVER_H

#include "httpd.h"

#include "pp_wire.h"

/* The largest reply frame a child leaves: files live in DefaultRuntimeDir (often a
 * tmpfs, memory), and many children may end at once. A larger reply is cut to fit (the
 * trace's records, its samples, then stacks), and the reply says how much in its
 * counters "handover_cut" (parts) and "handover_cut_bytes". */
#define PPROF_HANDOVER_MAX (16u * 1024 * 1024)

typedef struct pprof_handover pprof_handover;

/* --- the collector ----------------------------------------------------------------------- */

/* Open the hand-over of a window of kind (by name) in p: its directory exists when this
 * returns, so a child that sees the window from now on can leave its reply. Stale
 * directories of the kind (their collector is gone) are removed first. NULL when there is
 * no ipc directory or it cannot be made (logged PP0060): the window runs without. */
pprof_handover *pprof_handover_open(apr_pool_t *p, const char *kind, apr_uint32_t gen,
                                    apr_int64_t stamp);

/* The reply child pid left, if it left one: *body (the message without its frame head,
 * malloc'ed: the caller frees it) and *len; the file is removed. 0, or -1 when there is
 * none (or it is unreadable: then it is removed, logged PP0061). */
int pprof_handover_read(pprof_handover *h, pid_t pid, unsigned char **body, apr_size_t *len);

/* The pids whose replies are in the directory now, in p. */
apr_array_header_t *pprof_handover_pids(pprof_handover *h, apr_pool_t *p);

/* The window is over: no child finds the directory from now on. What was left in it
 * meanwhile is still read by pprof_handover_read/_pids. */
void pprof_handover_seal(pprof_handover *h);

/* Remove the directory and whatever is left in it. h is not used again. */
void pprof_handover_remove(pprof_handover *h);

/* --- a child that ends ------------------------------------------------------------------- */

/* The hand-over directories open for kind in this child's window: gen and stamp as the
 * child holds them (a window kind), or every one of the kind for gen 0 (a snapshot kind's
 * deltas). An array of const char *, in p; empty when there is none. */
apr_array_header_t *pprof_handover_find(apr_pool_t *p, const char *kind, apr_uint32_t gen,
                                        apr_int64_t stamp);

/* Leave reply (cut to PPROF_HANDOVER_MAX if need be; the cut counters are added to it,
 * allocated in p) in every directory of dirs. The number of files written. */
int pprof_handover_leave(apr_pool_t *p, const apr_array_header_t *dirs, pp_wire_reply *reply);

/* --- the parent -------------------------------------------------------------------------- */

/* Post_config: remove the hand-over directories whose collector is gone (an earlier run's,
 * or a killed child's). Those of an old generation's collectors that still run stay. */
void pprof_handover_sweep(apr_pool_t *p);

#endif
