/* /proc/self/task/TID/syscall of our own threads (what a blocked thread waits in, and the
 * stack pointer and PC it blocked at: see pp_tasks_parse_syscall), also in a process that
 * changed its user at start, as every httpd child does.
 *
 * The kernel lets a thread read that file of any thread of its own process (the ptrace
 * check it makes when read passes for the same thread group), but a process that changed
 * its user is not "dumpable", and then /proc shows its files as owned by root: the mode
 * 0400 file cannot even be opened by the process itself (EACCES). Making the process
 * dumpable again, even for a moment, would let every other process of that user (CGI
 * scripts...) ptrace it or open its /proc/PID/mem: not done here.
 *
 * Instead a helper started while the program is still root (httpd's parent, before it
 * forks children) opens the file for a thread and passes the open descriptor over a
 * socket; the thread's process reads it as often as it likes. The helper:
 *   - answers only for the process asking: the kernel stamps each request with the
 *     sender's pid (SCM_CREDENTIALS), and the helper opens /proc/THAT-PID/task/TID/syscall
 *     only, read-only: a process learns what it could read if it were dumpable, of itself;
 *   - keeps no privilege but the one it needs: it runs as nobody with CAP_DAC_READ_SEARCH
 *     alone, no new privileges, in a session of its own, every descriptor closed but its
 *     socket;
 *   - is a grandchild re-parented to init (the program never reaps or sees it), and ends
 *     when every copy of the program's end of its socket is closed: the program exiting
 *     or unloading this library (a destructor closes it), and every child forked since.
 * Descriptors are kept per thread and dropped for threads that ended (pp_sysfd_retain),
 * and after a fork (they are the parent's threads').
 *
 * Not async-signal-safe. pp_sysfd_read and pp_sysfd_retain: one caller at a time
 * (pp_threads' capture). */
#ifndef PP_SYSFD_H
#define PP_SYSFD_H

#include <stddef.h>
#include <stdint.h>

/* Start the helper, in a process running as root that will later drop to another user
 * (call it again in a later generation: the earlier helper's socket is closed here, and
 * that helper ends with its last users). 1 started, 0 not needed (not root), -1 failed
 * (errno). */
int pp_sysfd_helper_start(void);

/* The text of /proc/self/task/TID/syscall (NUL-terminated, at most len - 1 bytes): its
 * length, or -1 with errno ESRCH (no such thread) or EACCES (it cannot be read: not
 * dumpable and no helper) or another. */
int pp_sysfd_read(uint32_t tid, char *buf, size_t len);

/* Close the descriptors of threads not in tids (n of them, ascending). */
void pp_sysfd_retain(const uint32_t *tids, size_t n);

#endif
