// cleanup.go: how a Tensor's library reference is dropped when the program drops the Tensor
// without calling Release.

package autograd

import (
	"runtime"
	"sync"
	"unsafe"
)

// Cleanups are attached lazily. runtime.AddCleanup costs ~250 ns a tensor (a record inserted
// into its span's address-sorted list, under runtime locks), Cleanup.Stop about as much again
// on Release, and the walks of those lists evict the caller's data (the scalar workload's
// backward, the same C code on the same graph, ran at 285 ns/node from Go against C's 170).
// Yet most tensors of a computation are released explicitly (Release, Tape.Release) soon
// after they are made. So a new Tensor only goes on a pending list, and after each garbage
// collection the pending tensors that are still unreleased get their cleanup, and the list
// is emptied: a tensor released before the next collection never pays for one (the scalar
// workload from Go: 1230-1255 -> 990-1030 ns/node, builds alternated).
//
// The price: a tensor dropped without Release is reachable from the list until the
// collection after it was made, so its reference is dropped one collection later than an
// immediately attached cleanup would drop it. Releasing large tensors explicitly, as the
// package documentation advises, is unaffected. With the collector off (GOGC=off) the list
// only grows, by a pointer per tensor made, as the heap itself does then.

// pendingShards spreads the list over several locks: tensors made on different Ps come from
// different spans, so their addresses pick different shards.
const pendingShards = 16

var pending [pendingShards]struct {
	mu sync.Mutex
	ts []*Tensor
	_  [32]byte // a shard per cache line (8 + 24 + 32 bytes)
}

// track puts a new tensor on the pending list.
func track(t *Tensor) {
	s := &pending[(uintptr(unsafe.Pointer(t))>>13)%pendingShards]
	s.mu.Lock()
	s.ts = append(s.ts, t)
	s.mu.Unlock()
}

// armPending gives each pending, unreleased tensor its cleanup and empties the list. It runs
// on the runtime's cleanup goroutine, concurrently with Release: see arm.
func armPending() {
	for i := range pending {
		s := &pending[i]
		s.mu.Lock()
		ts := s.ts
		s.ts = nil
		s.mu.Unlock()
		for _, t := range ts {
			t.arm()
		}
	}
}

// arm attaches t's cleanup unless t was released. Against a concurrent Release (which swaps
// the handle to 0, then stops the cleanup if armed is set): the cleanup is published through
// armed, and if the handle turned 0 meanwhile it is stopped here too; whichever of the two
// comes last stops it, and stopping twice is harmless. While arm runs, t is reachable (from
// the slice armPending holds), so the cleanup cannot run before the check.
func (t *Tensor) arm() {
	h := t.h.Load()
	if h == 0 {
		return
	}
	c := runtime.AddCleanup(t, releaseTensor, h)
	t.cleanup = c
	t.armed.Store(true)
	if t.h.Load() == 0 {
		c.Stop()
	}
}

// gcSentinel is dropped at once; its cleanup runs after the next collection. It holds a
// pointer so that it is not a tiny-allocator object (those may share a block, and their
// cleanups may never run).
type gcSentinel struct{ _ *byte }

// armAfterNextGC schedules armPending after the next collection, and itself again.
func armAfterNextGC() {
	runtime.AddCleanup(&gcSentinel{}, func(struct{}) {
		armPending()
		paceRebase.Store(true) // (pacing.go)
		armAfterNextGC()
	}, struct{}{})
}

func init() { armAfterNextGC() }
