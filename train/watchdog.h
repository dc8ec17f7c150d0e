/* watchdog.h — ends the whole job when this rank stops making progress.
 *
 * A rank that hangs (SIGSTOP, a dead NFS mount, a GPU that stopped answering) leaves every
 * other rank waiting in the next collective forever. Each rank runs a watchdog thread; the
 * training loop marks progress (watchdog_mark) at every phase of a step. When no mark comes
 * within the deadline, the thread prints what the rank waited on, names the ranks that did not
 * arrive (from the heartbeat file every rank's watchdog rewrites once a second), and ends the
 * job on all ranks with comm->abort(XLMC_EXIT_HUNG).
 *
 * Deadline: max(train.watchdog_seconds, 20 x the median of the last 64 step times). The
 * state of the ranks still running is NOT saved when it fires: they are inside a collective
 * whose result they need, so no rank holds a step-boundary state the others agree on; the
 * requeued job resumes from the last checkpoint. */
#ifndef XLMC_WATCHDOG_H
#define XLMC_WATCHDOG_H

#include "core/comm.h"

/* The job's exit status when the watchdog ended it: requeue and resume (slurm/job-lib.sh). */
#define XLMC_EXIT_HUNG 76

struct watchdog;

/* Starts the thread. floor_seconds <= 0: no watchdog (returns NULL, all calls accept NULL).
 * heartbeat: a file every rank writes its own line of (NULL: none). fired: a file the
 * watchdog writes its message to before it ends the job (NULL: none), for job scripts whose
 * launcher cannot learn the exit status (srun waiting for a task on a dead node). */
struct watchdog *watchdog_start(struct comm *c, double floor_seconds, const char *heartbeat,
                                const char *fired);
/* Progress: this rank is now in `phase` (a string literal) of step `step`. */
void watchdog_mark(struct watchdog *w, const char *phase, long step);
/* A step finished after `seconds`: feeds the median behind the deadline. */
void watchdog_step_time(struct watchdog *w, double seconds);
/* The deadline now, in seconds. */
double watchdog_deadline(const struct watchdog *w);
void watchdog_stop(struct watchdog *w);

#endif
