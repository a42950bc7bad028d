// cleanup.go: how a Tensor's library reference is dropped when the program drops the Tensor
// without calling Release.

package autograd

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Cleanups are attached lazily. runtime.AddCleanup costs ~250 ns a tensor (a record inserted
// into its span's address-sorted list, under runtime locks), Cleanup.Stop about as much again
// (which Release once called, and no longer does: see cell), and the walks of those lists
// evict the caller's data (the scalar workload's
// backward, the same C code on the same graph, ran at 285 ns/node from Go against C's 170).
// Yet most tensors of a computation are released explicitly (Release, Tape.Release) soon
// after they are made. So a new Tensor only goes on a pending list, and after each garbage
// collection the pending tensors that are still unreleased get their cleanup, and the list
// is emptied: a tensor released before the next collection never pays for one (the scalar
// workload from Go: 1230-1255 -> 990-1030 ns/node, builds alternated). A tensor that did get
// one is released by Release without stopping it: see cell.
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
	mu    sync.Mutex
	ts    []*Tensor
	spare []*Tensor // ts's previous backing array, emptied by armPending, reused
	made  uint32    // tensors made here, for pace (pacing.go)
	_     [4]byte   // a shard per cache line (8 + 24 + 24 + 4 + 4 bytes)
}

// track puts a new tensor on the pending list, and counts it for pace under the same lock
// (every paceEvery tensors of a shard: see pacing.go for what that means overall).
func track(t *Tensor) {
	s := &pending[(uintptr(unsafe.Pointer(t))>>13)%pendingShards]
	s.mu.Lock()
	s.ts = append(s.ts, t)
	s.made++
	due := s.made%paceEvery == 0
	s.mu.Unlock()
	if due {
		pace()
	}
}

// armPending gives each pending, unreleased tensor its cleanup and empties the list. It runs
// on the runtime's cleanup goroutine, concurrently with Release: see arm.
func armPending() {
	for i := range pending {
		s := &pending[i]
		s.mu.Lock()
		ts := s.ts
		s.ts, s.spare = s.spare, nil
		s.mu.Unlock()
		// Last made first: see arm.
		for i := len(ts) - 1; i >= 0; i-- {
			ts[i].arm()
		}
		// The backing array is kept for the next round (the list regrew from nothing after
		// every collection), unless it is mostly unused: a burst of tensors does not pin
		// its size for good.
		clear(ts)
		if cap(ts) > 0 && len(ts) >= cap(ts)/4 {
			s.mu.Lock()
			if s.spare == nil {
				s.spare = ts[:0]
			}
			s.mu.Unlock()
		}
	}
}

// armedBit marks a Tensor's handle word once arm has moved the handle into a cell that its
// cleanup owns. Handles are pointers to the library's 16-byte aligned objects, so the bit is
// free.
const armedBit = 1

// cell holds an armed tensor's handle for its cleanup. Whichever of Release and the cleanup
// empties it releases the handle, so Release never has to stop the cleanup
// (runtime.Cleanup.Stop walks the span's list of cleanups under its lock, as AddCleanup does:
// it cost about as much as attaching one); a cleanup that finds the cell empty does nothing.
// The cell is kept alive by the cleanup itself, and t.cell points at it for Release.
type cell struct{ h atomic.Uintptr }

func (c *cell) drop() {
	if h := c.h.Swap(0); h != 0 {
		releaseTensor(h)
	}
}

// arm attaches t's cleanup unless t was released. Against a concurrent Release (which swaps
// the handle word to 0 and releases through the cell if armedBit was set): arm fills the
// cell and sets t.cell, then sets armedBit with a compare-and-swap that fails if the word
// turned 0 meanwhile; then Release released the handle itself, and the cell is dropped
// unused. Once the bit is set, the handle is released exactly once, by whichever empties
// the cell first: Release, or the cleanup, which runs only after t is unreachable. While arm
// runs, t is reachable (from the slice armPending holds), so the cleanup cannot run before
// the bit is set.
func (t *Tensor) arm() {
	h := t.h.Load()
	if h == 0 || h&armedBit != 0 {
		return
	}
	c := new(cell)
	c.h.Store(h)
	t.cell = c
	if !t.h.CompareAndSwap(h, h|armedBit) {
		return
	}
	runtime.AddCleanup(t, (*cell).drop, c)
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
