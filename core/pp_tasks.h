/* The threads of this process as /proc lists them: the one reader of the task directory
 * for the whole core (the CPU sampler's timers, the thread dump, the creation records).
 *
 * Every function takes the task directory to read. NULL means "/proc/self/task"; a test
 * passes a directory of its own instead (the seam, as pp_maps_read's path), laid out as
 * the kernel lays it out: one entry per thread named by its decimal id, holding the files
 * `stat`, `comm` and `status`.
 *
 * Not async-signal-safe (directory streams and malloc): never call it from a signal
 * handler. Thread-safe: no state of its own. */
#ifndef PP_TASKS_H
#define PP_TASKS_H

#include <stddef.h>
#include <stdint.h>

/* The kernel's ceiling for pid_max (PID_MAX_LIMIT on 64-bit): no thread id is larger. */
#define PP_TASKS_TID_MAX 4194304u

/* A thread's name with its NUL, as the kernel keeps it (TASK_COMM_LEN). */
#define PP_TASKS_COMM_LEN 16

/* The thread ids listed in dir, ascending, each once. Entries whose name is not a decimal
 * in 1..PP_TASKS_TID_MAX written without sign or leading zero are skipped (".", "..",
 * anything else). Returns 0 with *tids a malloc'ed array of *n ids, which the caller frees
 * with free() (NULL when *n is 0). Returns -1 when dir cannot be read (errno says why) or
 * memory runs out; *tids and *n are then untouched. Memory: that array only (4 bytes a
 * thread, grown by doubling, so bounded by the tid range), plus one directory stream while
 * reading, closed before returning. */
int pp_tasks_list(const char *dir, uint32_t **tids, size_t *n);

/* The scheduler state of one thread ('R' running, 'S' sleeping, 'D' disk, 't' stopped,
 * ...), from dir/TID/stat; '?' when that cannot be read (the thread is gone). */
char pp_tasks_state(const char *dir, uint32_t tid);

/* The state in the text of a stat file ("TID (NAME) S ...", len bytes, no NUL needed):
 * the character after the last ')' and a space, since NAME may itself hold spaces and
 * ')'. '?' when there is none. */
char pp_tasks_parse_state(const char *stat, size_t len);

/* The name of one thread (dir/TID/comm without its newline) into buf of len bytes, always
 * NUL-terminated (cut to len - 1 bytes). 0, or -1 with buf "" when it cannot be read. */
int pp_tasks_comm(const char *dir, uint32_t tid, char *buf, size_t len);

/* Whether signal sig (1..64) is pending for the thread itself, sent to it alone (the
 * SigPnd line of dir/TID/status): 1 if it is, 0 if not, -1 when that cannot be read. */
int pp_tasks_sig_pending(const char *dir, uint32_t tid, int sig);

/* What /proc/TID/syscall says of a thread: running (or runnable), blocked in system call
 * nr with its six arguments, or blocked outside any system call (nr -1: a page fault, a
 * stop). sp and pc are the user registers the kernel saved when the thread entered the
 * kernel: its stack pointer and the instruction after the `syscall` (or the faulting
 * one). The kernel takes them while the thread is off its CPU, so they are consistent. */
typedef struct {
    int running;                /* 1: "running"; the rest is then 0 */
    long nr;                    /* the system call, or -1 */
    uint64_t args[6];
    uint64_t sp, pc;
} pp_tasks_syscall;

/* Parse the text of a syscall file (len bytes, no NUL needed): "running", "-1 SP PC" or
 * "NR A1 A2 A3 A4 A5 A6 SP PC" (hex with 0x, NR decimal), each ended by a newline or the
 * end. 0, or -1 for anything else (a field missing, extra, or malformed). */
int pp_tasks_parse_syscall(const char *text, size_t len, pp_tasks_syscall *out);

/* The context switches of one thread so far, voluntary plus involuntary (the
 * voluntary_ctxt_switches and nonvoluntary_ctxt_switches lines of dir/TID/status): a
 * thread that blocked, was preempted or yielded since an earlier read has a larger count.
 * 0, or -1 when they cannot be read (the thread is gone). */
int pp_tasks_switches(const char *dir, uint32_t tid, uint64_t *out);

#endif
