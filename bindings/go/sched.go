// sched.go: keeps the Go scheduler from fighting the library's OpenMP workers.

package autograd

import (
	"runtime"
	"sync"
	"time"
)

// yieldEvery bounds how long a goroutine driving the library goes without passing through
// the Go scheduler. It must stay well under the runtime's 10 ms preemption threshold.
const yieldEvery = 2 * time.Millisecond

// epoch anchors the yield clocks (monotonic clock).
var epoch = time.Now()

// yieldClocks holds when a goroutine last yielded in yieldIfDue, in nanoseconds since epoch,
// one clock per P in effect (a sync.Pool keeps an object per P). Per P, because what the
// yields prevent is per P (below); one clock for the process let each of several goroutines
// go 16-270 ms without a yield (measured with 2-8 goroutines).
var yieldClocks = sync.Pool{New: func() any { return new(int64) }}

// yieldIfDue lets the Go scheduler run after a long call (backward, grad, an optimizer
// step), at most once every yieldEvery.
//
// Why: a goroutine that only computes never passes through the scheduler, so its P's
// scheduling tick stops moving. After 10 ms of that, Go's sysmon treats the goroutine as
// hogging its P and, at every sysmon tick that finds it inside a cgo call, takes the P away
// and wakes an idle thread to hold it; that thread finds nothing to do and sleeps again.
// Measured on the mlp workload (2 cores, 2 OpenMP threads): ~10 000 such wakeups a second,
// each taking 10-20 us of a core from an OpenMP worker, which then stalls its team at the
// next barrier: the step ran 1.1-1.2x C's time. One yield resets the tick; done at most
// every 2 ms it costs a few microseconds per yield (two thread handoffs when the goroutine
// is locked to its thread) and brought the step back to C's time (docs/performance.md).
func yieldIfDue() {
	now := int64(time.Since(epoch))
	last := yieldClocks.Get().(*int64)
	due := now-*last >= int64(yieldEvery)
	if due {
		*last = now
	}
	yieldClocks.Put(last)
	if due {
		runtime.Gosched()
	}
}
