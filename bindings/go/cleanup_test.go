// cleanup_test.go: the handoff of an armed tensor's handle between Release and its cleanup
// (package internals).

package autograd

import (
	"runtime"
	"testing"
	"time"

	"libautograd.dev/autograd/internal/capi"
)

// An armed tensor (one that got its cleanup) released by Release is released once: Release
// empties the cell, and the cleanup, run when the Tensor is collected, finds it empty
// (cleanup.go). The tensor is 1 MiB, so ag_memory_in_use counts it while it lives, and the
// test holds a reference of its own: after Release and the cleanup, dropping that reference
// must free the block (a second release by the cleanup would have freed it before, and this
// one would then drop a dead tensor).
func TestArmedTensorReleasedOnce(t *testing.T) {
	x, err := Zeros(Float32, 256, 1024)
	if err != nil {
		t.Fatal(err)
	}
	h := x.c()
	if !capi.Ag_tensor_retain(h).OK() { // the test's own reference
		t.Fatal("retain")
	}
	armPending() // as after a collection: x is pending, unreleased
	if x.h.Load()&armedBit == 0 || x.cell == nil || x.cell.h.Load() != uintptr(h) {
		t.Fatal("armPending did not arm the tensor")
	}
	c := x.cell
	x.Release()
	if x.h.Load() != 0 || c.h.Load() != 0 {
		t.Fatalf("Release left the handle word %#x and the cell %#x", x.h.Load(), c.h.Load())
	}
	x.Release() // twice: nothing
	// Wait for x to be collected (a cleanup of the test's own on it), then a little more for
	// x's cell cleanup, which runs on the same goroutine.
	collected := make(chan struct{})
	runtime.AddCleanup(x, func(ch chan struct{}) { close(ch) }, collected)
	x = nil
	deadline := time.Now().Add(20 * time.Second)
	for done := false; !done; {
		runtime.GC()
		select {
		case <-collected:
			done = true
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the released tensor was never collected")
			}
		}
	}
	for range 3 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	before := capi.Ag_memory_in_use()
	capi.Ag_tensor_release(h)
	if after := capi.Ag_memory_in_use(); before < after+1<<20 {
		t.Fatalf("dropping the last reference freed %d bytes, not the 1 MiB block: it was "+
			"released before", int64(before)-int64(after))
	}
}
