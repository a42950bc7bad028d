// sched.go: keeps the Go scheduler from fighting the library's OpenMP workers.

package autograd

import (
	"runtime"
	"sync/atomic"
	"time"
)

// yieldEvery bounds how long a goroutine driving the library goes without passing through
// the Go scheduler. It must stay well under the runtime's 10 ms preemption threshold.
const yieldEvery = 2 * time.Millisecond

// epoch anchors lastYield (monotonic clock).
var epoch = time.Now()

// lastYield is when a goroutine last yielded in yieldIfDue, in nanoseconds since epoch.
var lastYield atomic.Int64

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
//
// The clock is shared by all goroutines: with several driving the library at once, one
// goroutine's yield may postpone another's by up to yieldEvery, which is harmless.
func yieldIfDue() {
	now := int64(time.Since(epoch))
	last := lastYield.Load()
	if now-last < int64(yieldEvery) || !lastYield.CompareAndSwap(last, now) {
		return
	}
	runtime.Gosched()
}
