/* The stack of another thread of this process, unwound from two registers and without
 * stopping or signalling it: for a thread blocked in the kernel, whose stack pointer and
 * program counter /proc/TID/syscall gives (pp_tasks_parse_syscall). A signal would end
 * its wait early (nanosleep, poll, epoll_wait, select... return EINTR after a handler
 * runs, SA_RESTART or not): this only reads memory.
 *
 * The walk is libunwind's DWARF unwinder (the eh_frame CFI of each object, so code
 * without frame pointers unwinds right), driven through its remote interface with
 * accessors of our own:
 *   - memory is read with process_vm_readv on our own pid, never by dereferencing: the
 *     thread may wake up and reuse or free (thread exit) its stack while we read, and a
 *     read of memory that is gone then fails instead of faulting. The caller must check
 *     that the thread did not move meanwhile (pp_threads compares /proc before and after)
 *     and drop the result if it did: a stack read while it changed may be wrong;
 *   - unwind tables come from the objects loaded now (dl_iterate_phdr, each object's
 *     PT_GNU_EH_FRAME binary search table), searched by libunwind's own table lookup;
 *   - registers: only sp and pc are known. The callee-saved ones (rbx, rbp, r12-r15 on
 *     x86-64) are recovered from the frames that saved them; a frame whose CFA rule
 *     needs one that no inner frame saved (code built with frame pointers whose inner
 *     frames leave rbp alone) ends the walk there: the stack is then cut short, never
 *     made up.
 * x86-64 only (elsewhere the return address of a leaf frame is in a register /proc does
 * not give): other targets get the pc alone.
 *
 * One caller at a time (pp_threads serializes its captures): the accessors' page cache
 * is static. Not async-signal-safe (libunwind allocates). */
#ifndef PP_REGUNWIND_H
#define PP_REGUNWIND_H

#include <stdint.h>

/* Unwind from (sp, pc) into pcs (capacity max): pcs[0] = pc, then return addresses.
 * Returns how many were written (0 when pc is 0 or max < 1). */
int pp_regunwind(uint64_t sp, uint64_t pc, uint64_t *pcs, int max);

#endif
