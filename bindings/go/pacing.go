// pacing.go: lets the collector see the library's memory, which the Go heap does not show.

package autograd

import (
	"runtime"
	"sync"
	"sync/atomic"

	"libautograd.dev/autograd/internal/capi"
)

// A Tensor is a few dozen bytes of Go heap in front of what may be megabytes of the
// library's memory. A loop that drops its tensors without Release barely grows the Go heap,
// so the collector seldom runs, and the library's memory grew without bound (a review
// measured 10 GB for a loop that kept one 256 KB tensor alive at a time). So every
// paceEvery tensors made, the package reads how much the library holds in large blocks
// (ag_memory_in_use, one cgo call), and when it has doubled since the last collection, and
// is at least paceMin, every pending tensor gets its cleanup (cleanup.go) and the collector
// runs: the tensors dropped by then are released by their cleanups. Go's own pacing rule
// (GOGC=100), applied to memory it cannot see. (Not the process's resident memory: memory
// freed by the library stays resident for reuse, so that measure only grows.) Coarse: the
// base is read at the first sample after a collection, when ~32 dropped tensors are pending
// already, so ~100 are alive at the peak whatever their size; and blocks under 64 KiB are
// not in ag_memory_in_use (README: Release what you make). "Every paceEvery tensors" is
// counted per shard of the pending list (cleanup.go, track: under the lock it takes anyway,
// where a counter of its own was a locked instruction per tensor). Tensors made one after
// another lie in one span and share a shard, so a loop samples every paceEvery tensors as
// before; tensors spread over the shards (many goroutines) can leave up to
// pendingShards*(paceEvery-1) uncounted between two samples.
const (
	paceEvery = 32
	paceMin   = 64 << 20
)

var (
	paceBase   atomic.Uint64 // in use after the last collection
	paceRebase atomic.Bool   // a collection ran: take the next reading as the base
	paceMu     sync.Mutex    // one forced collection at a time
)

// pace is called for every paceEvery tensors a shard of the pending list takes (track).
func pace() {
	inUse := capi.Ag_memory_in_use()
	// The base: the lowest reading since the last collection (its cleanups release what it
	// found dropped in the moments after it).
	if base := paceBase.Load(); paceRebase.Swap(false) || inUse < base {
		paceBase.Store(inUse)
		return
	} else if inUse < paceMin || inUse < 2*base || !paceMu.TryLock() {
		return
	}
	defer paceMu.Unlock()
	armPending()
	runtime.GC()
	paceRebase.Store(true)
}
